"""Timing and peak-memory measurement, CPU and CUDA.

Timing
    CPU: ``torch.utils.benchmark.Timer.blocked_autorange`` with a fixed thread count; the
    median and inter-quartile range are over the timed blocks.
    CUDA: ``triton.testing.do_bench`` (warm-up, L2 flushed between calls, CUDA events) with
    ``return_mode="all"``; median and IQR over its samples. Falls back to a CUDA-event loop
    only when triton is not importable, and says so in the returned ``method``.
    Either way the callable rotates over a few copies of its inputs (``Rotator``) so a
    working set small enough to stay in cache does not flatter the op.

Peak extra memory (bytes allocated at the peak, above what was allocated before the call)
    CUDA: ``torch.cuda.max_memory_allocated()`` after ``reset_peak_memory_stats()``, minus
    ``memory_allocated()`` before.
    CPU: torch's CPU allocator reports every allocation and free to the profiler when
    ``torch.profiler.profile(profile_memory=True)`` is on (the ``[memory]`` events, with
    signed byte counts). We replay them in time order and take the running sum's maximum.
    This counts everything allocated through torch's CPU allocator during the call (tensors,
    saved activations, outputs, the gradients of backward); it does not see scratch space
    that oneDNN/MKL or OpenMP allocate with their own allocators.
"""
from __future__ import annotations

import itertools
import math
import statistics
from typing import Callable, Sequence

import torch


class Rotator:
    """Calls ``fn(*args_sets[k])`` for k = 0, 1, 2, ... cycling through the input copies."""

    def __init__(self, fn: Callable, arg_sets: Sequence[Sequence]):
        self.fn = fn
        self.arg_sets = list(arg_sets)
        self._it = itertools.cycle(range(len(self.arg_sets)))

    def __call__(self):
        return self.fn(*self.arg_sets[next(self._it)])


def n_copies(bytes_per_set: int, target_bytes: int = 64 << 20, most: int = 8) -> int:
    """How many input copies make the rotated working set exceed ``target_bytes``."""
    return max(1, min(most, math.ceil(target_bytes / max(bytes_per_set, 1))))


def _quartiles(samples: Sequence[float]) -> tuple[float, float]:
    if len(samples) < 2:
        return samples[0], 0.0
    q = statistics.quantiles(samples, n=4, method="inclusive")
    return statistics.median(samples), q[2] - q[0]


def time_cpu(fn: Callable, threads: int, min_run_time: float, min_samples: int = 5) -> dict:
    """Median and IQR (seconds) of ``fn()`` on the CPU with ``threads`` threads.

    ``blocked_autorange`` picks the calls per block; slow ops get extra blocks until there
    are ``min_samples`` of them, so a median is never taken over one or two samples.
    """
    from torch.utils.benchmark import Timer

    fn()  # warm-up (lazy init, first-call allocations)
    timer = Timer(stmt="fn()", globals={"fn": fn}, num_threads=threads)
    m = timer.blocked_autorange(min_run_time=min_run_time)
    samples = list(m.times)
    while len(samples) < min_samples:
        samples.append(timer.timeit(m.number_per_run).median)
    med, iqr = _quartiles(samples)
    return {
        "median_s": med,
        "iqr_s": iqr,
        "samples": len(samples),
        "calls_per_sample": m.number_per_run,
        "method": f"torch.utils.benchmark.Timer.blocked_autorange(min_run_time={min_run_time}), "
                  f">= {min_samples} blocks, {threads} threads",
    }


def cuda_event_samples_ms(fn: Callable, reps: int, warmup: int) -> list[float]:
    """CUDA-event times (ms) of ``reps`` single calls of ``fn``, after ``warmup`` untimed calls."""
    for _ in range(warmup):
        fn()
    torch.cuda.synchronize()
    samples_ms = []
    for _ in range(reps):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        fn()
        end.record()
        end.synchronize()
        samples_ms.append(start.elapsed_time(end))
    return samples_ms


def time_cuda(fn: Callable, rep_ms: float) -> dict:
    """Median and IQR (seconds) of ``fn()`` on the current CUDA device."""
    try:
        from triton.testing import do_bench
    except ImportError:
        do_bench = None
    if do_bench is not None:
        samples_ms = do_bench(fn, warmup=max(25, rep_ms // 4), rep=rep_ms, return_mode="all")
        method = f"triton.testing.do_bench(rep={rep_ms} ms, L2 flushed per call)"
    else:
        samples_ms = cuda_event_samples_ms(fn, reps=max(10, int(rep_ms)), warmup=3)
        method = "CUDA events, no L2 flush (triton not importable)"
    med, iqr = _quartiles([s / 1e3 for s in samples_ms])
    return {"median_s": med, "iqr_s": iqr, "samples": len(samples_ms), "calls_per_sample": 1, "method": method}


def time_with_setup(setup: Callable, fn: Callable, device: torch.device, threads: int, min_time: float,
                    min_samples: int = 5) -> dict:
    """Median and IQR (seconds) of ``fn(setup())``, timing only ``fn``: one sample a call.

    For work that cannot be repeated on the same state, such as a backward pass (torch.compile's
    backward donates its saved buffers, so ``retain_graph=True`` is refused).
    """
    import time

    min_run_time = min_time
    for _ in range(2):
        fn(setup())
    cuda = device.type == "cuda"
    samples = []
    spent = 0.0
    prev_threads = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        while (spent < min_run_time or len(samples) < min_samples) and len(samples) < 10000:
            state = setup()
            if cuda:
                torch.cuda.synchronize(device)
                start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
                start.record()
                fn(state)
                end.record()
                end.synchronize()
                dt = start.elapsed_time(end) / 1e3
            else:
                t0 = time.perf_counter()
                fn(state)
                dt = time.perf_counter() - t0
            del state
            samples.append(dt)
            spent += dt
    finally:
        torch.set_num_threads(prev_threads)
    med, iqr = _quartiles(samples)
    how = "CUDA events" if cuda else f"time.perf_counter, {threads} threads"
    return {"median_s": med, "iqr_s": iqr, "samples": len(samples), "calls_per_sample": 1,
            "method": f"one call per sample ({how}), untimed set-up before each, >= {min_run_time} s timed"}


def time_fn(fn: Callable, device: torch.device, threads: int, min_time: float, min_samples: int = 5) -> dict:
    """Median and IQR of ``fn()``, measured for about ``min_time`` seconds (CUDA: at least 50 ms)."""
    if device.type == "cuda":
        return time_cuda(fn, rep_ms=max(50, int(min_time * 200)))
    return time_cpu(fn, threads, min_run_time=min_time, min_samples=min_samples)


def cpu_peak_extra_bytes(fn: Callable) -> int:
    """Peak bytes allocated by torch's CPU allocator during ``fn()``, above the level before it.

    Tensors ``fn`` returns are kept alive until the profile ends, so they count.
    """
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        out = fn()
    del out
    events = [e for e in prof.profiler.kineto_results.events()
              if e.name() == "[memory]" and e.device_type() == torch._C._autograd.DeviceType.CPU]
    if not events:
        raise RuntimeError("torch.profiler recorded no CPU memory events; cannot measure CPU memory")
    events.sort(key=lambda e: e.start_ns())
    level = peak = 0
    for e in events:
        level += e.nbytes()
        peak = max(peak, level)
    return peak


def cuda_peak_extra_bytes(fn: Callable, device: torch.device) -> int:
    torch.cuda.synchronize(device)
    torch.cuda.reset_peak_memory_stats(device)
    base = torch.cuda.memory_allocated(device)
    out = fn()
    torch.cuda.synchronize(device)
    peak = torch.cuda.max_memory_allocated(device) - base
    del out
    return peak


def peak_extra_bytes(fn: Callable, device: torch.device) -> int:
    """Peak extra bytes of one ``fn()`` call (after a warm-up call)."""
    fn()
    if device.type == "cuda":
        return cuda_peak_extra_bytes(fn, device)
    return cpu_peak_extra_bytes(fn)
