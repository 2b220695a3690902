"""Keep freed memory in the process for reuse (glibc): a large speed-up for CPU training.

A training step allocates and frees the same large activations (tens of MB each) every step.
glibc serves blocks above its mmap threshold (at most 32 MB) with fresh ``mmap`` calls and
returns them on ``free``, so every step pays the kernel to map and zero those pages again: on
this project's 2-core machine that was about a quarter of GLAMOR-Net's training step
(bench/RESULTS-archive.md, "Allocator"). ``keep_freed_memory()`` tells glibc to serve large blocks from the heap
(``M_MMAP_MAX = 0``) and not to give freed heap back (``M_TRIM_THRESHOLD``), the same as running
with ``MALLOC_MMAP_MAX_=0 MALLOC_TRIM_THRESHOLD_=2147483647``. The process then keeps its peak
memory until it exits. It affects the whole process, so the library never calls it on import:
``train()`` calls it when ``TrainConfig.keep_freed_memory`` is true (the default) on the CPU.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import logging
import sys

log = logging.getLogger("glamor_fast")

_M_TRIM_THRESHOLD = -1
_M_MMAP_MAX = -4
_applied = False


def keep_freed_memory() -> bool:
    """Applies the glibc settings above once per process; True if they are in effect.

    Returns False (and changes nothing) where the C library is not glibc (macOS, musl, Windows).
    """
    global _applied
    if _applied:
        return True
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
    mallopt.restype = ctypes.c_int
    if mallopt(_M_MMAP_MAX, 0) != 1 or mallopt(_M_TRIM_THRESHOLD, 2**31 - 1) != 1:
        return False
    _applied = True
    log.info("glibc: large blocks from the heap, freed memory kept (keep_freed_memory)")
    return True
