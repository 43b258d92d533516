"""Training sequences and the loss for the generator modes (lora, prompt-tuning, full).

Three objectives:

- ``supervised``: the exact chat prompt ``rag ask`` builds (:func:`rag.prompt.build_prompt`,
  same preprompt, passage headers and token budget) with the gold passage among
  ``passages - 1`` distractors in a seeded random order, and the target
  ``"<answer> [n]"`` where n numbers the gold passage. The loss covers the answer
  tokens only (labels -100 on the prompt). The distractors are drawn at random
  from the corpus, or with ``--distractors-from bm25`` are the passages BM25
  ranks highest for the question (none holding an answer), as a BM25 eval
  retrieves them: the model then learns to pick the answer among passages
  about the same thing, which is what it is tested on. With ``--distractors P`` a fraction P
  of the examples carries distractors only and keeps the answer as target, as in
  RAFT (Zhang et al. 2024), which teaches the model to answer from what it learnt
  and to ignore irrelevant passages. With ``--unanswerable`` the QA set's
  unanswerable questions join, each with ``passages`` distractors and the
  preprompt's way of declining as target ("I don't know.").
- ``unsupervised``: continued training on the corpus text itself (knowledge
  injection), optionally with generated paraphrases of each chunk (Ovadia et
  al. 2024 found facts need repeating in varied wording). Chunks are split into
  training and validation by the same seeded hash as questions.
- ``closed-book``: the generator absorbs the corpus to answer without retrieval.
  Each epoch first trains on every chunk of the corpus, its ``--paraphrases`` and
  its ``--cloze`` fill-in-the-blank questions (rag.finetune.cloze), then on the
  training questions in the closed-book prompt (no passages, the closed-book
  preprompt ``rag ask --no-retrieval`` uses), target the answer alone (an
  unanswerable question's: the decline).
  Validation is closed-book answering of the validation questions, the task the
  artifact is scored on. Ovadia et al. 2024 fine-tune on documents alone; Jiang et
  al. 2024 ("Instruction-tuned language models are better knowledge learners")
  show that question-answer training is what makes the absorbed facts retrievable
  by questions.
- ``preprompt``: each training question after the whole corpus of ``--index``,
  exactly the prompt the eval's ``corpus`` retriever builds (every chunk in
  reading order, as much as ``corpus_context_tokens`` holds: the user's document
  000's preprompt, cache-augmented), target the answer citing the gold chunk's
  number where the prompt holds it. Every prompt opens with the same ~7.8k
  tokens; their keys and values are computed once per weight update, without
  gradient (:class:`SharedPrefix`), so a step costs one corpus prefill and the
  questions' own tokens, not ~7.8k tokens of back-propagation per question.

    >>> train, val = generator_sequences(settings, Config(), data, model, tokenizer)  # doctest: +SKIP
    >>> sum(label != IGNORE for label in train[0].labels)   # the answer's tokens      # doctest: +SKIP
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import random
from dataclasses import dataclass
from pathlib import Path

import torch

from rag.config import CLOSED_BOOK, WHOLE_CORPUS, Config
from rag.finetune.cloze import cloze_questions
from rag.finetune.config import CLOSED_BOOK_OBJECTIVE, PREPROMPT_OBJECTIVE, FinetuneConfig
from rag.finetune.data import Data
from rag.finetune.examples import Example
from rag.finetune.synthetic import paraphrase
from rag.finetune.trainer import Task, shuffled_batches, training_dtype
from rag.generate import cache_of, common_prefix, prefix_layers
from rag.index import Index
from rag.models import load_generator, resolve_device
from rag.passage import Passage
from rag.prompt import Prompt, build_prompt, prompt_language, prompt_text
from rag.qa import is_validation, split
from rag.retrieve import bm25_passages

IGNORE = -100  # label value the cross-entropy skips
logger = logging.getLogger(__name__)


DOCUMENTS, QUESTIONS = 0, 1  # closed-book phases: each epoch trains on the documents, then on the questions
# --distractors-from bm25 searches this many hits past --passages, to skip the gold one and those holding an answer.
DISTRACTOR_SEARCH_MARGIN = 20


@dataclass(frozen=True)
class Sequence:
    input_ids: list[int]
    labels: list[int]  # IGNORE where no loss is taken
    phase: int = DOCUMENTS  # batches of a lower phase come first in every epoch
    # Opening tokens every prompt of the objective shares (the whole corpus of the preprompt objective): their keys and
    # values are computed once per weight update, without gradient (SharedPrefix). 0: the sequence runs whole.
    shared: int = 0


def phased_batches(sequences: list[Sequence], size: int, rng: random.Random) -> list[list[Sequence]]:
    """An epoch's batches phase by phase, shuffled within each (one phase: exactly :func:`shuffled_batches`)."""
    phases = sorted({sequence.phase for sequence in sequences})
    return [batch for phase in phases for batch in shuffled_batches([s for s in sequences if s.phase == phase], size, rng)]


def answered(prompt_ids: list[int], answer: str, tokenizer, phase: int = DOCUMENTS) -> Sequence:
    """The prompt, then ``answer`` and end of turn, with the loss on the answer tokens only."""
    spaced = answer if tokenizer.chat_template else " " + answer  # a plain-text prompt ends "Answer:"
    target = tokenizer(spaced + tokenizer.eos_token, add_special_tokens=False)["input_ids"]  # eos = <|im_end|>: stop there
    return Sequence(prompt_ids + target, [IGNORE] * len(prompt_ids) + target, phase)


def decline(question: str, config: Config) -> str:
    """What the preprompt asks the model to say when it cannot answer, in the question's prompt language."""
    return prompt_text(prompt_language(question, config)).decline


def distractors(example: Example, pool: list[Passage], ranked: list[Passage], count: int, rng: random.Random) -> list[Passage]:
    """``count`` passages that are not the gold one and hold no answer: ``ranked``'s first, then drawn from ``pool``."""
    chosen = [passage for passage in ranked if example.distracts(passage.text)][:count]
    rest = [passage for passage in pool if example.distracts(passage.text) and passage not in chosen]
    return chosen + rng.sample(rest, min(count - len(chosen), len(rest)))


def ranked_distractors(examples: list[Example], pool: list[Passage], config: Config, settings: FinetuneConfig) -> dict[str, list[Passage]]:
    """question -> the pool passages BM25 ranks for it, best first, under ``--distractors-from bm25`` (else none):
    the passages the eval's BM25 puts beside the gold one, which the model must learn to read past."""
    if settings.distractors_from != "bm25":
        return {}
    # Deep enough to skip the gold passage and those holding an answer; a question with fewer matches draws the rest.
    depth = settings.passages + DISTRACTOR_SEARCH_MARGIN
    rankings = bm25_passages(pool, [e.query for e in examples], depth, config)
    return {e.query: [pool[i] for i, _ in ranking] for e, ranking in zip(examples, rankings)}


def supervised_sequence(example: Example, pool: list[Passage], tokenizer, config: Config, settings: FinetuneConfig,
                        ranked: list[Passage] = ()) -> Sequence:
    """The example's prompt with its gold passage among distractors (``ranked`` first, else random), target the
    answer citing the gold passage; an unanswerable question's passages are all distractors, target the decline."""
    # Seeded by the question, so an example looks the same in every epoch and after --resume.
    rng = random.Random(hashlib.sha256(f"{settings.seed}:{example.query}".encode()).digest())
    if example.unanswerable:  # nothing in the corpus answers it: passages that do not, and the decline
        prompt = build_prompt(example.query, distractors(example, pool, ranked, settings.passages, rng), tokenizer, config)
        return answered(prompt.input_ids, decline(example.query, config), tokenizer)
    passages = distractors(example, pool, ranked, settings.passages - 1, rng)
    # The same seeded hash as the validation split picks the oracle-free fraction deterministically.
    if not (settings.distractors and is_validation(f"distractors:{example.query}", settings.distractors, settings.seed)):
        passages.append(Passage(example.positive, example.source, example.page))
    rng.shuffle(passages)
    prompt = build_prompt(example.query, passages, tokenizer, config)
    return answered(prompt.input_ids, cited_answer(example, prompt), tokenizer)


def cited_answer(example: Example, prompt: Prompt) -> str:
    """The example's answer citing the number of its gold passage in ``prompt``; nothing to cite where the prompt lacks it."""
    gold = [n for n, passage in enumerate(prompt.passages, 1) if passage.text == example.positive]
    return example.answers[0] + (f" [{gold[0]}]" if gold else "")


def preprompt_sequences(examples: list[Example], corpus: list[Passage], tokenizer, config: Config) -> list[Sequence]:
    """Each question after ``corpus`` (the index in reading order) as the eval's corpus retriever prompts it, target its
    answer citing the gold chunk where the budget kept it (an unanswerable question's: the decline); ``shared`` marks
    the opening all the prompts have in common."""
    whole_corpus = config.override({"retriever": WHOLE_CORPUS})
    prompts = [build_prompt(e.query, corpus, tokenizer, whole_corpus) for e in examples]
    targets = [decline(e.query, config) if e.unanswerable else cited_answer(e, p) for e, p in zip(examples, prompts)]
    # Every prompt keeps its last token out of the opening, so that each runs at least one position with gradient.
    shared = min(len(common_prefix([p.input_ids for p in prompts])), *(len(p.input_ids) - 1 for p in prompts))
    return [dataclasses.replace(answered(p.input_ids, target, tokenizer), shared=shared) for p, target in zip(prompts, targets)]


def closed_book_sequence(example: Example, tokenizer, config: Config, phase: int = QUESTIONS) -> Sequence:
    """The question in the prompt ``rag ask --no-retrieval`` builds, target its answer (nothing to cite)."""
    prompt = build_prompt(example.query, [], tokenizer, config.override({"retriever": CLOSED_BOOK}))
    answer = decline(example.query, config) if example.unanswerable else example.answers[0]
    return answered(prompt.input_ids, answer, tokenizer, phase)


def text_sequence(text: str, tokenizer, max_tokens: int) -> Sequence:
    ids = tokenizer(text, add_special_tokens=False)["input_ids"][: max_tokens - 1] + [tokenizer.eos_token_id]
    return Sequence(ids, ids)


def generator_sequences(settings: FinetuneConfig, config: Config, data: Data, model, tokenizer) -> tuple[list[Sequence], list[Sequence]]:
    """(train, validation) sequences for the configured objective; ``model`` is the base, for paraphrases."""
    if settings.objective != "unsupervised" and any(not (e.answers or e.unanswerable) for e in data.train + data.val):
        raise ValueError(f"the {settings.objective} objective needs reference answers: use --qa FILE (pairs carry none), "
                         "or --objective unsupervised")
    if settings.objective == PREPROMPT_OBJECTIVE:
        index = Index.open(settings.index)
        corpus = index.chunks(index.chunk_ids_in_reading_order())
        # One call for both, so that training and validation prompts share one opening (one prefill a step).
        sequences = preprompt_sequences(data.train + data.val, corpus, tokenizer, config)
        return sequences[: len(data.train)], sequences[len(data.train) :]
    if settings.objective == "supervised":
        ranked = ranked_distractors(data.train + data.val, data.corpus, config, settings)
        make = lambda examples: [  # noqa: E731
            supervised_sequence(e, data.corpus, tokenizer, config, settings, ranked.get(e.query, ())) for e in examples
        ]
        return make(data.train), make(data.val)
    texts = [passage.text for passage in data.corpus]
    train_texts, val_texts = split(texts, settings.val_fraction, settings.seed, key=lambda text: text)
    if settings.objective == CLOSED_BOOK_OBJECTIVE:  # the questions are held out, not the documents: train on all of them
        train_texts = texts
    train_texts, val_texts = settings.limited(train_texts, val_texts)
    chunks = train_texts
    if settings.paraphrases:
        added = paraphrase(model, tokenizer, config, chunks, settings.paraphrases)
        logger.info("added %d paraphrases of %d training chunks", len(added), len(chunks))
        train_texts = chunks + added
    make = lambda texts: [text_sequence(t, tokenizer, config.context_tokens) for t in texts]  # noqa: E731
    if settings.objective == CLOSED_BOOK_OBJECTIVE:
        questions = lambda examples: [closed_book_sequence(e, tokenizer, config) for e in examples]  # noqa: E731
        cloze = cloze_questions(chunks, settings.cloze, config.language, settings.seed) if settings.cloze else []
        if cloze:
            logger.info("added %d fill-in-the-blank questions from %d chunks", len(cloze), len(chunks))
        # In the documents phase: recalling a document's facts is part of reading it, before the real questions.
        recall = [closed_book_sequence(e, tokenizer, config, DOCUMENTS) for e in cloze]
        return make(train_texts) + recall + questions(data.train), questions(data.val)
    return make(train_texts), make(val_texts)


def collate(batch: list[Sequence], pad_id: int, device) -> dict[str, torch.Tensor]:
    """Right-padded tensors, each (B, T): input_ids, attention_mask, labels (IGNORE on padding)."""
    width = max(len(s.input_ids) for s in batch)
    input_ids = torch.full((len(batch), width), pad_id, dtype=torch.long)
    labels = torch.full((len(batch), width), IGNORE, dtype=torch.long)
    mask = torch.zeros((len(batch), width), dtype=torch.long)
    for row, sequence in enumerate(batch):
        n = len(sequence.input_ids)
        input_ids[row, :n] = torch.tensor(sequence.input_ids)
        labels[row, :n] = torch.tensor(sequence.labels)
        mask[row, :n] = 1
    return {"input_ids": input_ids.to(device), "attention_mask": mask.to(device), "labels": labels.to(device)}


def scored_tokens(sequence: Sequence) -> int:
    """Labels the loss covers: the model predicts token t+1 from position t, so the first label is never scored."""
    return sum(label != IGNORE for label in sequence.labels[1:])


def scored_tail(labels: torch.Tensor) -> int:
    """How many final positions the loss reads: from the one that predicts the first labelled token to the end.

    A supervised prompt labels only its answer, so the output layer (a 49k-word vocabulary, a fifth of SmolLM2's
    compute) and the loss run on a few positions instead of the whole ~800-token prompt.
    """
    labelled = (labels != IGNORE).any(dim=0).nonzero()
    first = int(labelled[0]) if len(labelled) else 0
    return labels.shape[1] - max(first - 1, 0)


def next_token_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Mean cross-entropy of each position's logits against the next position's label (IGNORE skipped), in fp32 as
    transformers computes it; ``logits`` and ``labels`` cover the same final positions."""
    return torch.nn.functional.cross_entropy(
        logits[:, :-1].flatten(0, 1).float(), labels[:, 1:].flatten(), ignore_index=IGNORE
    )


class SharedPrefix:
    """The keys and values of the opening a batch's sequences share, computed once per weight update and reused.

    Computed in eval mode (no dropout) and without gradient, with the current weights: the forward pass is the
    eval's, whose generator prefills the corpus once with the trained weights, while the gradient reaches the
    trained weights through each sequence's own tokens only (the opening's keys and values are constants, as in
    truncated back-propagation). On the 2-core CPU the 7.8k-token corpus opening of the sample corpus took 9.7 s
    to prefill in bf16, and a question and answer 1.2 s forward and backward over its cache.
    """

    def __init__(self, model):
        self.model = model
        self.trained = [p for p in model.parameters() if p.requires_grad]
        self.key: tuple | None = None
        self.layers: list[tuple[torch.Tensor, torch.Tensor]] = []

    def cache(self, ids: list[int], batch: int) -> tuple[object, int]:
        """A cache of ``ids``' keys and values for ``batch`` rows, recomputed only when ``ids`` or the weights changed,
        and the tokens this call ran to make it (``len(ids)``, or 0 when it was kept)."""
        # An optimizer step or a checkpoint load writes the trained parameters in place, which bumps their versions.
        key = (tuple(ids), tuple(p._version for p in self.trained))
        computed = 0
        if key != self.key:
            training = self.model.training
            self.model.eval()
            with torch.no_grad():
                self.layers = prefix_layers(self.model, ids)
            self.model.train(training)
            self.key, computed = key, len(ids)
        return cache_of(self.layers, batch, self.model, len(ids)), computed


def causal_task(model, tokenizer, sequences: tuple[list[Sequence], list[Sequence]], save, merge=None) -> Task:
    """A Task whose loss is the causal LM cross-entropy over the labelled tokens, computed on their positions alone.

    On a CPU each sequence runs forward and backward alone (:attr:`Task.parts`),
    its loss weighted by its scored tokens, which sums exactly to the padded
    batch's mean. Attention over a padded batch takes SDPA's masked path, with no
    fused CPU kernel: on four ~730-token SQuAD prompts (LoRA, one thread) one by
    one took 13 s to evaluate and 30 s to train against 16 s and 38 s padded. And
    only one sequence's activations are held at a time: a padded batch of four
    1,536-token prompts took 17 GB resident with SmolLM2 and was killed for memory.
    On a GPU the padded batch is the fast path.

    The opening the batch's sequences share (:attr:`Sequence.shared`) comes from a :class:`SharedPrefix`; the input
    tokens counted are those run: each sequence's own, and the opening's where it was prefilled.
    """
    device = next(model.parameters()).device
    prefix = SharedPrefix(model)

    def loss(batch: list[Sequence]):
        inputs = collate(batch, tokenizer.pad_token_id, device)
        labels = inputs.pop("labels")
        tail = scored_tail(labels)
        shared = len(common_prefix([sequence.input_ids[: sequence.shared] for sequence in batch]))
        prefilled = 0
        if shared:  # the attention mask still spans the opening, which the rows attend to in the cache
            inputs["past_key_values"], prefilled = prefix.cache(batch[0].input_ids[:shared], len(batch))
            inputs["input_ids"] = inputs["input_ids"][:, shared:]
        logits = model(**inputs, logits_to_keep=tail).logits
        return next_token_loss(logits, labels[:, -tail:]), prefilled + int(inputs["attention_mask"][:, shared:].sum())

    def one_by_one(batch: list[Sequence]) -> list[tuple[list[Sequence], float]]:
        weights = [scored_tokens(sequence) for sequence in batch]
        return [([sequence], weight / max(1, sum(weights))) for sequence, weight in zip(batch, weights)]

    train, val = sequences
    return Task(model=model, train=train, val=val, loss=loss, save=save, merge=merge, batches=phased_batches,
                parts=one_by_one if device.type == "cpu" else None,
                weight=lambda batch: sum(scored_tokens(sequence) for sequence in batch))


def frozen_generator(settings: FinetuneConfig, config: Config):
    """(model, tokenizer) whose weights stay frozen, held in the training dtype (bf16 halves their memory and skips
    autocast's copies); PEFT then adds its trained parameters in fp32."""
    model, tokenizer = load_generator(config, for_training=True)
    return model.to(training_dtype(settings, resolve_device(config.device))), tokenizer


def save_with_tokenizer(model, tokenizer, folder: Path) -> None:
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
