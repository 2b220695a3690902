"""Counting the host-side ATen calls a piece of code makes: the cost around a kernel that its own
time does not show (each call is dispatcher work, often an allocation, and on a GPU a launch).

    counts = count_aten_calls(fn)     # collections.Counter of outermost aten:: op names
    sum(counts.values()), counts["aten::item"]

"Outermost" means an ``aten::`` event with no ``aten::`` event above it in the profiler's tree:
the calls the code itself makes, not the ones those calls make inside (``aten::to`` calling
``aten::_to_copy`` counts once). Calls made by the autograd engine (e.g. ``aten::detach`` when
it stores a leaf's gradient) count too: they are part of a forward+backward step.
"""
from __future__ import annotations

import collections
from typing import Callable

from torch.profiler import ProfilerActivity, profile


def count_aten_calls(fn: Callable[[], object]) -> collections.Counter:
    """Runs ``fn()`` once under torch.profiler (CPU activity) and counts its outermost aten calls."""
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        fn()
    counts: collections.Counter = collections.Counter()
    for event in prof.events():
        if not event.name.startswith("aten::"):
            continue
        parent = event.cpu_parent
        while parent is not None and not parent.name.startswith("aten::"):
            parent = parent.cpu_parent
        if parent is None:
            counts[event.name] += 1
    return counts
