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

from rag.generate import Generator


@dataclass(frozen=True)
class Throughput:
    questions: int
    batch_size: int  # the generator's config.generation_batch_size
    batched_qps: float  # questions per second, generation_batch_size prompts per call
    sequential_qps: float  # questions per second, one prompt per call
    speedup: float  # batched_qps / sequential_qps


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
