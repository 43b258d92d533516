"""FinetuneConfig: everything one fine-tuning run needs besides the shared ``rag.config.Config``.

Hyper-parameters left ``None`` take the mode's default from :data:`MODE_DEFAULTS`
(low learning rates for the embedder and the full model, higher ones for the
few parameters of LoRA and a soft prompt), so ``run.json`` always records the
values actually used.

    >>> settings = FinetuneConfig("lora", "runs/lora", qa="corpora/vellmar-qa.jsonl", index="indexes/vellmar")
    >>> settings.resolved().lr
    0.0002
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from rag.config import check_minimums
from rag.qa import check_split_unit


CLOSED_BOOK_OBJECTIVE = "closed-book"  # the corpus, then questions without passages: to answer without retrieval
PREPROMPT_OBJECTIVE = "preprompt"  # questions with the whole corpus in the prompt, as the eval's corpus retriever gives it
OBJECTIVES = ("supervised", "unsupervised", CLOSED_BOOK_OBJECTIVE, PREPROMPT_OBJECTIVE)
DISTRACTOR_SOURCES = ("random", "bm25")  # where a supervised prompt's distractors come from
GRADIENT_CHECKPOINTING = ("auto", "on", "off")


@dataclass(frozen=True)
class ModeDefaults:
    lr: float
    batch_size: int
    epochs: int
    objective: str = "supervised"  # generator modes


MODE_DEFAULTS = {
    # sentence-transformers' own recipes use 2e-5 with batches of 16 or more: a low rate keeps the
    # pre-trained geometry (the embedding guides: 100-1,000 pairs, a few epochs, low learning rate).
    "embeddings": ModeDefaults(lr=2e-5, batch_size=16, epochs=3),
    "lora": ModeDefaults(lr=2e-4, batch_size=4, epochs=1),  # Hu et al. 2021 use 2e-4 for GPT-2
    "prompt-tuning": ModeDefaults(lr=3e-2, batch_size=4, epochs=1),  # Lester et al. 2021 use 0.3 with Adafactor
    "full": ModeDefaults(lr=2e-5, batch_size=4, epochs=1),
    # From random weights: a rate 50x full's (nanoGPT trains its small models at 1e-3) and many passes.
    "scratch": ModeDefaults(lr=1e-3, batch_size=8, epochs=10, objective=CLOSED_BOOK_OBJECTIVE),
}


@dataclass(frozen=True)
class FinetuneConfig:
    mode: str  # embeddings | lora | prompt-tuning | full
    out: str  # the artifact folder; checkpoints go under out/checkpoints

    # --- data: exactly one of pairs, qa, synthetic (unsupervised generator runs may use the index alone)
    pairs: str | None = None  # JSONL {"query", "positive", "negative"?}
    qa: str | None = None  # SQuAD v1.1 JSON or JSONL {"question", "answers", "context"? | "source"}
    synthetic: bool = False  # generate questions for the index's chunks with the local generator
    index: str | None = None  # gold passages for QA without context, distractors, synthetic questions
    val_fraction: float = 0.25  # the eval stage holds out the same questions (rag.qa.split, same defaults)
    seed: int = 0
    limit: int | None = None  # at most this many examples in all, split like the data (short runs; see limited)
    # Cross-validation (rag.qa.fold_of, seeded by seed): train on every fold but fold, whose questions
    # rag.eval --folds scores with this artifact; the validation slice comes from the training folds.
    folds: int | None = None
    fold: int | None = None
    # What the split and the folds keep on one side (rag.qa.SPLIT_UNITS): "document" holds out whole documents
    # (SQuAD paragraphs, source files), so the held-out questions are about text the model never saw.
    split_by: str = "question"

    # --- optimisation (None = the mode's default)
    epochs: int | None = None
    lr: float | None = None
    batch_size: int | None = None
    max_steps: int | None = None  # stop after this many optimizer steps in total
    warmup_ratio: float = 0.1
    weight_decay: float = 0.01
    max_grad_norm: float = 1.0
    checkpoint_every: int = 50  # steps; a checkpoint is also written at each validation and at the end
    # Steps between validations besides each epoch end (None: epoch ends only). The run keeps the weights
    # of the validation with the lowest loss (rag.finetune.trainer), so validating within an epoch lets it
    # stop where the loss turned, whatever the epoch budget.
    validate_every: int | None = None
    # Learning-rate sweep (rag.finetune.sweep): train one trial per rate, for sweep_steps steps (None: the whole
    # budget), and train the artifact with the rate of the lowest validation loss. Replaces lr.
    lr_sweep: tuple[float, ...] = ()
    sweep_steps: int | None = None
    resume: bool = False
    # The loss runs under autocast to this dtype (rag.models.resolve_dtype): "auto" is bf16 where the device computes
    # it natively (AVX512-BF16 or AMX CPUs, CUDA with bf16), else fp32. Trained weights and the optimizer stay fp32;
    # lora and prompt-tuning also hold their frozen weights in bf16. fp32 by default: on this project's 2-core CPU
    # one epoch of the lab's LoRA took 957 s in bf16 instead of 1,284 s, but ended 0.03 higher in validation loss
    # (README, "Precision").
    precision: str = "fp32"
    # Full mode: recompute activations in the backward pass, for less memory at about a quarter more compute. "auto":
    # on where a batch runs padded in one pass (a GPU), off where each sequence runs alone (a CPU, which then holds one
    # sequence's activations: a full step on an 820-token prompt took 2.03 s and 3.4 GB without, 2.53 s and 2.9 GB with).
    gradient_checkpointing: str = "auto"

    # --- embeddings
    hard_negatives: bool = False  # mine one per pair from the corpus with the base encoder

    # --- generator modes (lora, prompt-tuning, full)
    # supervised: question + passages -> answer; unsupervised: corpus text; closed-book: corpus text, then question -> answer;
    # preprompt: the whole index in reading order (as much as corpus_context_tokens holds) + question -> answer
    objective: str | None = None  # None: the mode's default (closed-book for scratch, else supervised)
    passages: int = 3  # passages per supervised prompt: the gold one and passages - 1 distractors
    distractors: float = 0.0  # fraction of supervised examples given distractors only (RAFT)
    distractors_from: str = "random"  # supervised: "random" corpus passages, or those "bm25" ranks highest for the question
    # supervised, closed-book: also train on the QA set's unanswerable questions (no answer: distractors only, or no
    # passage), with the preprompt's way of declining as target ("I don't know."), so that the model learns to say it.
    unanswerable: bool = False
    paraphrases: int = 0  # unsupervised: paraphrases of each chunk added by the local generator
    cloze: int = 0  # closed-book: fill-in-the-blank questions made from each chunk (rag.finetune.cloze)
    lora_r: int = 8
    lora_alpha: int = 16
    # 0: drawing the dropout masks took a fifth of a CPU step, and at 0.05 fold 2 of the lab ended one epoch at the
    # same validation loss (lora 0.4704 against 0.4715, lora-cb 2.6675 against 2.6691) in 1.2x the time (bench/README.md)
    lora_dropout: float = 0.0
    # "auto": every linear projection of the attention and MLP blocks, found by name in the model
    # (rag.finetune.lora.lora_target_modules), whatever the architecture; or comma-separated names, or "all-linear".
    lora_targets: str = "auto"
    virtual_tokens: int = 20  # Lester et al. 2021: gains flatten past about 20 tokens
    init_text: str | None = None  # soft prompt initialisation; None = the preprompt
    merge: bool = False  # lora: also write out/merged, the adapter folded into the weights
    scratch_width: int = 256  # scratch: the small model's hidden size (attention heads of 64)
    scratch_layers: int = 4

    def resolved(self) -> FinetuneConfig:
        """A copy with every ``None`` hyper-parameter replaced by the mode default; checks values."""
        if self.mode not in MODE_DEFAULTS:
            raise ValueError(f"unknown mode {self.mode!r}; choose one of {', '.join(MODE_DEFAULTS)}")
        if self.objective is not None and self.objective not in OBJECTIVES:
            raise ValueError(f"unknown objective {self.objective!r}; choose one of {', '.join(OBJECTIVES)}")
        check_split_unit(self.split_by)
        if not 0 <= self.distractors <= 1:
            raise ValueError(f"--distractors is a fraction between 0 and 1, got {self.distractors}")
        names = ("limit", "max_steps", "epochs", "batch_size", "passages", "virtual_tokens", "checkpoint_every", "validate_every",
                 "sweep_steps", "scratch_width", "scratch_layers")
        check_minimums(self, dict.fromkeys(names, 1))
        check_minimums(self, {"paraphrases": 0, "cloze": 0})
        if self.lr_sweep and self.lr is not None:
            raise ValueError(f"--lr {self.lr:g} and --lr-sweep: the sweep chooses the rate; give one of them")
        if any(rate <= 0 for rate in self.lr_sweep) or len(set(self.lr_sweep)) < len(self.lr_sweep):
            raise ValueError(f"--lr-sweep takes distinct positive rates, got {','.join(f'{rate:g}' for rate in self.lr_sweep)}")
        if self.sweep_steps is not None and not self.lr_sweep:
            raise ValueError("--sweep-steps is the length of each --lr-sweep trial: give --lr-sweep too")
        if self.mode == "embeddings" and self.batch_size == 1:
            raise ValueError(
                "embeddings trains with in-batch negatives: a batch of one pair has none and teaches nothing; "
                "use --batch-size 2 or more"
            )
        if (self.folds is None) != (self.fold is None):
            raise ValueError("--folds K and --fold I go together: train on every fold of K but I")
        if self.folds is not None and not (self.folds >= 2 and 0 <= self.fold < self.folds):
            raise ValueError(f"--folds must be at least 2 and --fold between 0 and folds - 1, got --folds {self.folds} --fold {self.fold}")
        defaults = MODE_DEFAULTS[self.mode]
        objective = self.objective or defaults.objective
        if self.cloze and objective != CLOSED_BOOK_OBJECTIVE:
            raise ValueError(f"--cloze adds fill-in-the-blank questions to the {CLOSED_BOOK_OBJECTIVE} objective, and this "
                             f"run's is {objective}: add --objective {CLOSED_BOOK_OBJECTIVE}, or leave --cloze out")
        if self.gradient_checkpointing not in GRADIENT_CHECKPOINTING:
            raise ValueError(f"unknown --gradient-checkpointing {self.gradient_checkpointing!r}; choose one of "
                             f"{', '.join(GRADIENT_CHECKPOINTING)}")
        if self.distractors_from not in DISTRACTOR_SOURCES:
            raise ValueError(f"unknown --distractors-from {self.distractors_from!r}; choose one of {', '.join(DISTRACTOR_SOURCES)}")
        if self.distractors_from != "random" and (self.mode == "embeddings" or objective != "supervised"):
            raise ValueError(f"--distractors-from {self.distractors_from} chooses the passages of supervised prompts, and this "
                             f"run has none ({self.mode}, {objective} objective): use the supervised objective, or leave it out")
        if self.unanswerable and (self.mode == "embeddings" or objective == "unsupervised" or not self.qa):
            raise ValueError("--unanswerable trains a generator to decline the unanswerable questions of a QA set: it takes "
                             "--qa FILE and the supervised, closed-book or preprompt objective")
        if objective == PREPROMPT_OBJECTIVE and self.mode not in ("lora", "full"):
            # A soft prompt's virtual tokens (and a scratch model's short window) come before the corpus it would reuse.
            raise ValueError(f"the {PREPROMPT_OBJECTIVE} objective trains lora or full, not {self.mode}")
        if objective == PREPROMPT_OBJECTIVE and self.gradient_checkpointing == "on":
            raise ValueError(f"--gradient-checkpointing on recomputes each layer without the cache the {PREPROMPT_OBJECTIVE} "
                             "objective prefills the corpus into: use auto or off")
        if objective == PREPROMPT_OBJECTIVE and not (self.qa and self.index):
            raise ValueError(f"the {PREPROMPT_OBJECTIVE} objective puts the whole corpus of an index before each question of a "
                             "QA set: give --qa FILE and --index INDEX_DIR")
        return dataclasses.replace(
            self,
            lr=self.lr if self.lr is not None else defaults.lr,
            batch_size=self.batch_size or defaults.batch_size,
            epochs=self.epochs or defaults.epochs,
            objective=objective,
        )

    def limited(self, train: list, val: list) -> tuple[list, list]:
        """The first of ``train`` and ``val``: ``limit`` in all, ``val_fraction`` of them (at least one of each) held out.

        So a short run's evaluation costs in proportion to its size: with
        ``--limit 32`` the loss is validated on 8 examples, not on 32 or on all.

            >>> FinetuneConfig("lora", "x", limit=32).limited(list(range(100)), list(range(100, 200)))[1][-1]
            107
        """
        if not self.limit:
            return train, val
        held_out = max(1, round(self.limit * self.val_fraction))
        return train[: max(1, self.limit - held_out)], val[:held_out]

    def hyperparameters(self) -> dict:
        """The values that shape training (recorded in run.json); paths and flags about the run itself are left out."""
        skip = {"mode", "out", "pairs", "qa", "synthetic", "index", "resume", "seed", "merge", "folds", "fold"}
        return {k: v for k, v in dataclasses.asdict(self).items() if k not in skip}
