"""The one timing helper of every benchmark: interleaved rounds, medians, one device sync.

The machine the benchmarks run on may be shared and noisy (runs differ by up to 60%). Two habits make the
numbers of one run comparable with each other: the variants are timed round-robin (every round calls each
variant once, the order rotating by one each round, so a burst of load hits them all alike), and the median of
the rounds is reported. A CUDA device is synchronised once before the clock stops, so the time covers the
queued work; on the CPU :func:`sync` does nothing.

    seconds = interleaved_medians({"relu": run_relu, "dyrelu": run_dyrelu}, repeats=10, warmup=2)
    model, seconds = timed(lambda: build_and_compile())          # a one-off cost (first start, a loader pass)
"""
from __future__ import annotations

import statistics
import time
from typing import Callable, Mapping, Sequence, TypeVar

import torch

T = TypeVar("T")
Clock = Callable[[], float]


def sync(device: torch.device | str | None = None) -> None:
    """Wait for the work queued on ``device`` (CUDA); a no-op for the CPU and for ``None``."""
    if device is not None and torch.device(device).type == "cuda":
        torch.cuda.synchronize(device)


def rotated(names: Sequence[str], round_index: int) -> list[str]:
    """The calling order of round ``round_index``: ``names`` rotated left by that many places."""
    if not names:
        return []
    k = round_index % len(names)
    return list(names[k:]) + list(names[:k])


def interleaved_medians(fns: Mapping[str, Callable[[], object]], repeats: int = 5, warmup: int = 1, *,
                        device: torch.device | str | None = None, clock: Clock = time.perf_counter
                        ) -> dict[str, float]:
    """Median seconds per call of each function of ``fns``, over ``repeats`` interleaved rounds.

    ``warmup`` untimed rounds come first, each calling the functions in their given order (so a function may
    rely on the results an earlier one stores). Every timed call is followed by :func:`sync` of ``device``.
    ``clock`` returns seconds (injectable for tests)."""
    if repeats < 1:
        raise ValueError(f"repeats must be at least 1, got {repeats}")
    names = list(fns)
    for _ in range(warmup):
        for name in names:
            fns[name]()
    sync(device)
    times: dict[str, list[float]] = {name: [] for name in names}
    for r in range(repeats):
        for name in rotated(names, r):
            start = clock()
            fns[name]()
            sync(device)
            times[name].append(clock() - start)
    return {name: statistics.median(t) for name, t in times.items()}


def timed(fn: Callable[[], T], *, device: torch.device | str | None = None,
          clock: Clock = time.perf_counter) -> tuple[T, float]:
    """``(fn(), seconds)`` of one call: for one-off costs (building, exporting or compiling a model; one pass
    through a data loader), which have no rounds to interleave."""
    start = clock()
    result = fn()
    sync(device)
    return result, clock() - start
