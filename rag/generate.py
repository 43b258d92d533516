"""Generate: greedy decoding with the local generator, streamed or in left-padded batches.

Prefix reuse: the prompts of one eval or one server share their opening tokens (system
preprompt, few-shot turns). The key/value cache of the longest token prefix the prompts of a
batch share (at least ``config.min_prefix_tokens``) is computed once and kept; later prompts
that start with it prefill only their own tokens. A cached prefix only shrinks (cropped to what
a new batch still shares) until a batch shares too little of it, which computes a new one.
Causal attention makes a prefix's keys and values independent of what follows, so the answers
are those of a full prefill (in fp32, token for token: tests/test_prompt.py).

The generator is the base model, the base model with a PEFT adapter (LoRA or
a soft prompt; without ``adapter`` the base model answers, the adapter
"unplugged"), or a fully fine-tuned folder given as ``config.generator``.

    >>> generator = Generator.load(Config(), adapter="runs/lora")   # doctest: +SKIP
    >>> for piece in generator.stream(prompt.input_ids): print(piece, end="")  # doctest: +SKIP
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from itertools import takewhile

import torch
import torch.nn.functional as F

from rag.config import WHOLE_CORPUS, Config, prompt_budget
from rag.models import load_generator

PREFILLS = ("auto", "batched", "separate")
PLAIN_TEXT_STOP = "\n\n"


@dataclass(frozen=True)
class Generation:
    text: str
    new_tokens: int
    seconds: float


def common_prefix(rows: list[list[int]]) -> list[int]:
    """The longest list of token ids every row starts with.

    >>> common_prefix([[1, 2, 3], [1, 2, 4], [1, 2]])
    [1, 2]
    """
    return [column[0] for column in takewhile(lambda column: len(set(column)) == 1, zip(*rows))]


def prefix_layers(model, ids: list[int]) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Each layer's (keys, values) for the token ids ``ids``, each (1, heads, len(ids), head_dim): an opening that
    many prompts share, computed once (with gradients only if the caller allows them)."""
    device = next(model.parameters()).device
    cache = model(input_ids=torch.tensor([ids], device=device), use_cache=True).past_key_values
    return [(layer.keys, layer.values) for layer in cache.layers]


def cache_of(layers: list[tuple[torch.Tensor, torch.Tensor]], batch: int, model, length: int):
    """A fresh cache holding :func:`prefix_layers`' ``layers`` of ``length`` positions for ``batch`` rows; the kept
    tensors are never written (a DynamicCache appends with torch.cat, which makes new tensors), so no copy is needed.

    A sliding-window layer (Gemma 3's local attention) holds only the last keys of its window. Left-padded back to
    ``length``, the cache counts every position of the prefix (which the next tokens' positions and masks follow)
    and keeps the same last keys; filled with the window alone it would place the next token at the window's length.
    """
    from transformers import DynamicCache

    def rows(tensor: torch.Tensor) -> torch.Tensor:  # (1, heads, n <= length, head_dim) -> (batch, heads, length, head_dim)
        if tensor.shape[2] < length:  # only a sliding window's: padding copies, and the other layers are used as they are
            tensor = F.pad(tensor, (0, 0, length - tensor.shape[2], 0))
        return tensor.expand(batch, -1, -1, -1)

    return DynamicCache([(rows(k), rows(v)) for k, v in layers], config=model.config)


class Generator:
    def __init__(self, model, tokenizer, config: Config):
        self.model, self.tokenizer, self.config = model, tokenizer, config
        self._prefix: list[int] = []  # the token ids whose key/value cache is kept
        self._prefix_layers: list[tuple[torch.Tensor, torch.Tensor]] = []  # per layer (1, heads, len(_prefix), head_dim)
        self.window = getattr(model.config, "max_position_embeddings", None)
        budget = prompt_budget(config)
        if self.window and budget + config.max_new_tokens > self.window:
            name = "corpus_context_tokens" if config.retriever == WHOLE_CORPUS else "context_tokens"
            raise ValueError(
                f"{name} ({budget}) + max_new_tokens ({config.max_new_tokens}) exceed the generator's window of {self.window} tokens"
            )
        if config.generation_prefill not in PREFILLS:
            raise ValueError(f"generation_prefill must be one of {', '.join(PREFILLS)}, got {config.generation_prefill!r}")

    @classmethod
    def load(cls, config: Config, adapter: str | None = None) -> Generator:
        model, tokenizer = load_generator(config, adapter=adapter)
        return cls(model, tokenizer, config)

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    @property
    def virtual_tokens(self) -> int:
        """Soft-prompt positions the model prepends to every prompt (0 without prompt tuning): they cost compute too."""
        config = getattr(self.model, "active_peft_config", None)
        return getattr(config, "num_virtual_tokens", 0) if getattr(config, "is_prompt_learning", False) else 0

    def _generate_kwargs(self) -> dict:
        kwargs = {
            "max_new_tokens": self.config.max_new_tokens,
            "do_sample": False,
            "pad_token_id": self.tokenizer.pad_token_id,
            "eos_token_id": self.tokenizer.eos_token_id,
        }
        if self.tokenizer.chat_template is None:
            # A base model given a plain-text prompt writes its answer, then a blank line and a made-up next
            # "Context:" or "Question:": the blank line ends its turn, as the end-of-turn token ends a chat model's.
            kwargs |= {"stop_strings": [PLAIN_TEXT_STOP], "tokenizer": self.tokenizer}
        return kwargs

    @property
    def separate_prefill(self) -> bool:
        # A soft prompt's virtual tokens are prepended inside the PEFT model's own generate: no manual prefill.
        if self.virtual_tokens or self.config.generation_prefill == "batched":
            return False
        return self.config.generation_prefill == "separate" or self.device.type == "cpu"

    @property
    def reuses_prefix(self) -> bool:
        # A soft prompt's virtual tokens come before any prompt token, inside the PEFT model's own forward.
        return self.config.min_prefix_tokens > 0 and not self.virtual_tokens

    @property
    def kept_prefix_tokens(self) -> int:
        """Length of the prompt prefix whose key/value cache is kept (0 before any batch shared one)."""
        return len(self._prefix)

    def _shared_prefix(self, rows: list[list[int]]) -> int:
        """How many opening tokens of ``rows`` the kept prefix cache covers (0: none), updating it first.

        Every row keeps at least its last token out of the prefix: ``generate`` needs one to run.
        """
        if not self.reuses_prefix:
            return 0
        longest_usable = min(map(len, rows)) - 1
        shared = len(common_prefix([self._prefix[:longest_usable], *rows]))
        if self._pays(shared, rows):
            self._crop_prefix(shared)
            return shared
        if len(rows) > 1:  # a new prefix, from what this batch shares
            candidate = common_prefix(rows)[:longest_usable]
            if self._pays(len(candidate), rows):
                self._store_prefix(candidate)
                return len(candidate)
        return 0

    def _pays(self, shared: int, rows: list[list[int]]) -> bool:
        """Whether reusing ``shared`` opening tokens beats prefilling ``rows`` whole.

        A row prefilled over a kept cache takes attention's masked path, slower on a CPU than the
        causal one of a whole prompt, so a prefix pays only where it is a large part of the prompt
        (``min_prefix_share``): on the 2-core CPU, reusing 5% of a RAG prompt took the first token
        0.79-0.98x as fast, 22% (few-shot turns) 0.89-1.14x, 57% 2.5x, and a whole corpus (99%) 30x.
        """
        return shared >= self.config.min_prefix_tokens and shared >= self.config.min_prefix_share * max(map(len, rows))

    def _store_prefix(self, ids: list[int]) -> None:
        self._prefix, self._prefix_layers = ids, prefix_layers(self.model, ids)

    def _crop_prefix(self, length: int) -> None:
        if length < len(self._prefix) and any(keys.shape[2] < len(self._prefix) for keys, _ in self._prefix_layers):
            # A sliding-window layer kept only the last keys of the longer prefix: the shorter one's are computed anew.
            self._store_prefix(self._prefix[:length])
            return
        self._prefix = self._prefix[:length]
        self._prefix_layers = [(keys[:, :, :length], values[:, :, :length]) for keys, values in self._prefix_layers]

    def _prefix_cache(self, batch: int):
        return cache_of(self._prefix_layers, batch, self.model, len(self._prefix))

    def _prefilled_cache(self, rows: list[list[int]], reused: int):
        """Each prompt but its last token run alone, the key/value caches left-padded into one batch.

        The first ``reused`` tokens of every row come from the kept prefix cache. ``generate``
        then sees the cache covers all but the last position and runs only the last prompt token
        and the decoding steps batched; the padded slots are masked by the attention mask, as
        left padding would be.
        """
        from transformers import DynamicCache

        caches = [self._row_cache(row[:-1], reused) for row in rows]
        longest = max(map(len, rows)) - 1

        def left_padded(tensors: list[torch.Tensor]) -> torch.Tensor:  # each (1, heads, length, head_dim)
            return torch.cat([F.pad(t, (0, 0, longest - t.shape[2], 0)) for t in tensors])  # (B, heads, longest, head_dim)

        layers = [
            (left_padded([c.layers[n].keys for c in caches]), left_padded([c.layers[n].values for c in caches]))
            for n in range(len(caches[0].layers))
        ]
        return DynamicCache(layers, config=self.model.config)

    def _row_cache(self, ids: list[int], reused: int):
        """The key/value cache of one row's ``ids``, its first ``reused`` tokens taken from the kept prefix."""
        cache = self._prefix_cache(1) if reused else None
        if len(ids) == reused:
            return cache
        return self.model(input_ids=torch.tensor([ids[reused:]], device=self.device), past_key_values=cache, use_cache=True).past_key_values

    def generate(self, prompts: list[list[int]]) -> list[Generation]:
        """Answers for token-id prompts, ``config.generation_batch_size`` at a time, left-padded.

        Prompts are batched by length, so little compute goes to padding; results keep input order.
        """
        results: list[Generation | None] = [None] * len(prompts)
        order = sorted(range(len(prompts)), key=lambda i: len(prompts[i]))
        size = self.config.generation_batch_size
        for start in range(0, len(order), size):
            batch = order[start : start + size]
            for i, generation in zip(batch, self.generate_batch([prompts[i] for i in batch])):
                results[i] = generation
        return results

    @torch.inference_mode()
    def generate_batch(
        self,
        rows: list[list[int]],
        *,
        max_new_tokens: int | None = None,
        streamer=None,
        stopping_criteria=None,
    ) -> list[Generation]:
        """One left-padded batch, as given and in order.

        ``streamer`` (a transformers ``BaseStreamer``) gets the prompt ids, then each step's new
        tokens, shape (B,); ``stopping_criteria`` may stop rows one by one (the server stops a row
        at its own token limit or when its client has gone). ``max_new_tokens`` defaults to the config's.
        """
        began = time.perf_counter()
        new_tokens = max_new_tokens or self.config.max_new_tokens
        if self.window and max(map(len, rows)) + new_tokens > self.window:
            raise ValueError(
                f"a prompt of {max(map(len, rows))} tokens + {new_tokens} new ones exceed the generator's window of {self.window} "
                "tokens: lower context_tokens (or corpus_context_tokens with the whole corpus as context)"
            )
        padded = self.tokenizer.pad({"input_ids": rows}, padding=True, return_tensors="pt").to(self.device)
        # Without padding one forward pass is the fast path anyway; a one-token prompt has nothing to prefill.
        uneven = len({len(row) for row in rows}) > 1 and min(map(len, rows)) > 1
        reused = self._shared_prefix(rows)
        if uneven and self.separate_prefill:
            prefilled = {"past_key_values": self._prefilled_cache(rows, reused)}
        elif reused and not uneven:  # equal lengths: no padding, so the prefix sits at the same positions in every row
            prefilled = {"past_key_values": self._prefix_cache(len(rows))}
        else:  # left padding shifts each row's prefix to its own positions: a shared cache cannot serve them
            prefilled = {}
        kwargs = self._generate_kwargs() | ({"max_new_tokens": max_new_tokens} if max_new_tokens else {})
        output = self.model.generate(
            **padded, **prefilled, **kwargs, streamer=streamer, stopping_criteria=stopping_criteria
        )  # (B, T_prompt + T_new)
        new = output[:, padded["input_ids"].shape[1] :]  # (B, T_new)
        seconds = (time.perf_counter() - began) / len(rows)
        return [
            Generation(self.tokenizer.decode(row, skip_special_tokens=True).strip(), int((row != self.tokenizer.pad_token_id).sum()), seconds)
            for row in new
        ]

    def stream(self, prompt: list[int]) -> Iterator[str]:
        """Yield text pieces as they are decoded (generation runs in a background thread)."""
        from transformers import TextIteratorStreamer

        streamer = TextIteratorStreamer(self.tokenizer, skip_prompt=True, skip_special_tokens=True)
        inputs = torch.tensor([prompt], device=self.device)
        kwargs = {"input_ids": inputs, "attention_mask": torch.ones_like(inputs), "streamer": streamer, **self._generate_kwargs()}
        if self._shared_prefix([prompt]):
            kwargs["past_key_values"] = self._prefix_cache(1)
        worker = threading.Thread(target=torch.inference_mode()(self.model.generate), kwargs=kwargs, daemon=True)
        worker.start()
        yield from streamer
        worker.join()
