"""Timing helpers shared by the benchmark scripts."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable


def timed(function: Callable, *args, **kwargs) -> tuple[object, float]:
    began = time.perf_counter()
    result = function(*args, **kwargs)
    return result, time.perf_counter() - began


def percentiles_ms(seconds: list[float]) -> tuple[float, float]:
    # statistics.quantiles with n=100 interpolates; index 49 is p50 and 94 is p95.
    cuts = statistics.quantiles(seconds, n=100, method="inclusive")
    return round(cuts[49] * 1000, 3), round(cuts[94] * 1000, 3)
