"""Batched versus one-at-a-time generation throughput, same model, same prompts, same run.

Batching shares each decoding step's weight reads across the batch; left
padding keeps every row ending at the same position so all rows continue
together (rag.generate). The eval's performance goal is a 3x speed-up.

    >>> from rag import Config, Generator
    >>> from rag.prompt import build_prompt
    >>> generator = Generator.load(Config(max_new_tokens=32))                    # doctest: +SKIP
    >>> prompts = [build_prompt(q, [], generator.tokenizer, Config(retriever="none")) for q in questions]  # doctest: +SKIP
    >>> result = throughput(generator, [p.input_ids for p in prompts])            # doctest: +SKIP
    >>> result.speedup                                                           # doctest: +SKIP
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import torch

from rag.config import Config
from rag.generate import Generator

DECODE_TOKENS = 32


@dataclass(frozen=True)
class Throughput:
    questions: int
    batch_size: int  # the generator's config.generation_batch_size
    batched_qps: float  # questions per second, generation_batch_size prompts per call
    sequential_qps: float  # questions per second, one prompt per call
    speedup: float  # batched_qps / sequential_qps


@dataclass(frozen=True)
class ModelCost:
    """What a generator model costs to run, whatever it is asked: the eval report's model columns."""

    model: str  # the generator spec: package:NAME or a folder
    parameters: int
    load_seconds: float  # Generator.load, from the cached float weights once the GGUF was dequantized
    decode_tokens_per_s: float  # greedy decoding after a one-token prompt (see decode_speed)


@torch.inference_mode()
def decode_speed(generator: Generator, tokens: int = DECODE_TOKENS) -> float:
    """Tokens per second decoding ``tokens`` tokens greedily after a one-token prompt: prefill costs nothing there."""
    prompt = torch.tensor([[generator.tokenizer.bos_token_id or generator.tokenizer.eos_token_id]], device=generator.device)
    kwargs = {"max_new_tokens": tokens, "min_new_tokens": tokens, "do_sample": False, "pad_token_id": generator.tokenizer.pad_token_id}
    generator.model.generate(prompt, attention_mask=torch.ones_like(prompt), **kwargs | {"max_new_tokens": 2, "min_new_tokens": 2})  # warm-up
    began = time.perf_counter()
    generator.model.generate(prompt, attention_mask=torch.ones_like(prompt), **kwargs)
    return tokens / (time.perf_counter() - began)


def load_measured(config: Config, adapter: str | None = None) -> tuple[Generator, ModelCost]:
    """``Generator.load`` timed, with the model's parameter count and decode speed."""
    began = time.perf_counter()
    generator = Generator.load(config, adapter=adapter)
    seconds = time.perf_counter() - began
    parameters = sum(p.numel() for p in generator.model.parameters())
    return generator, ModelCost(config.generator, parameters, round(seconds, 2), round(decode_speed(generator), 1))


def throughput(generator: Generator, prompts: list[list[int]]) -> Throughput:
    """Time ``generator.generate`` on ``prompts`` (token ids) batched, then one by one."""
    if not prompts:
        raise ValueError("throughput needs at least one prompt")
    generator.generate(prompts[:1])  # warm-up: the first call pays one-off allocation and kernel setup
    began = time.perf_counter()
    generator.generate(prompts)
    batched = time.perf_counter() - began
    began = time.perf_counter()
    for prompt in prompts:
        generator.generate([prompt])
    sequential = time.perf_counter() - began
    return Throughput(
        questions=len(prompts),
        batch_size=generator.config.generation_batch_size,
        batched_qps=len(prompts) / batched,
        sequential_qps=len(prompts) / sequential,
        speedup=sequential / batched,
    )
