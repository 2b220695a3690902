"""Where the GPU time of one call goes: CUDA-event medians and torch.profiler's per-kernel table.

Used by ``python -m bench.gla --probe`` (the GLA op at one shape) and ``python -m bench.block
--profile`` (the encoder block, Triton against cuDNN). CUDA only: ``require_cuda`` turns a
missing device into a one-line error before anything runs.
"""
from __future__ import annotations

import statistics
import time
from typing import Callable

import torch

from .timing import cuda_event_samples_ms


def require_cuda(prog: str, option: str) -> None:
    """Exit with a one-line error naming ``option`` when no CUDA device is present."""
    if not torch.cuda.is_available():
        raise SystemExit(f"{prog}: {option} needs a CUDA device (torch.cuda.is_available() is False)")


def event_median_ms(fn: Callable[[], object], reps: int = 50, warmup: int = 5) -> float:
    """Median over ``reps`` calls of the CUDA-event time around one call of ``fn``, in ms."""
    return statistics.median(cuda_event_samples_ms(fn, reps, warmup))


def wall_ms(fn: Callable[[], object], calls: int) -> float:
    """Mean wall time of ``calls`` back-to-back calls of ``fn`` (host overhead included), in ms."""
    torch.cuda.synchronize()
    t0 = time.perf_counter()
    for _ in range(calls):
        fn()
    torch.cuda.synchronize()
    return (time.perf_counter() - t0) / calls * 1e3


def kernel_table(fn: Callable[[], object], calls: int = 3, rows: int = 10, with_cpu: bool = False) -> str:
    """torch.profiler over ``calls`` calls of ``fn``: the ``rows`` ops with the most CUDA time
    (totals over the calls; divide by ``calls`` for one call)."""
    from torch.profiler import ProfilerActivity, profile

    activities = [ProfilerActivity.CUDA] + ([ProfilerActivity.CPU] if with_cpu else [])
    with profile(activities=activities) as prof:
        for _ in range(calls):
            fn()
        torch.cuda.synchronize()
    return prof.key_averages().table(sort_by="cuda_time_total", row_limit=rows, max_name_column_width=48)
