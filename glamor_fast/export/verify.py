"""An exported file's outputs against the PyTorch network's, on random inputs."""
from __future__ import annotations

from typing import Callable, Sequence

import torch

from .model import ExportNet, example_inputs

VERIFY_BATCHES = (1, 5)


@torch.inference_mode()
def max_abs_diff(net: ExportNet, run: Callable, batches: Sequence[int] = VERIFY_BATCHES, seed: int = 0) -> float:
    """Largest |exported - PyTorch| over every output at each batch size in ``batches``.

    ``run(face, context)`` runs the exported file and returns its outputs as tensors, in the
    order of ``net``'s (None for an output it lacks). Raises ValueError when an output's count or shape differs.
    """
    gen = torch.Generator().manual_seed(seed)
    worst = 0.0
    for batch in batches:
        face, context = example_inputs(batch, gen)
        want, got = net(face, context), tuple(t for t in run(face, context) if t is not None)
        if len(got) != len(want):
            raise ValueError(f"the exported file returns {len(got)} outputs, the network {len(want)}")
        for w, g in zip(want, got):
            if tuple(g.shape) != tuple(w.shape):
                raise ValueError(f"at batch {batch} the exported file returns shape {tuple(g.shape)}, "
                                 f"the network {tuple(w.shape)}")
            worst = max(worst, (g.float() - w.float()).abs().max().item())
    return worst


TOLERANCE = 1e-4  # float32: the exports measure below 1e-6 (README "Export")


def checked_max_abs_diff(net: ExportNet, run: Callable) -> float:
    """:func:`max_abs_diff`, raising ValueError when it exceeds TOLERANCE (the file is then not published)."""
    diff = max_abs_diff(net, run)
    if not diff <= TOLERANCE:
        raise ValueError(f"the exported file's outputs differ from PyTorch's by {diff:.2e} (> {TOLERANCE:.0e}); "
                         f"nothing was written")
    return diff
