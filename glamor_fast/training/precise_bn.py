"""Precise BatchNorm: re-estimate every BatchNorm's running statistics with the weights fixed.

During training a BatchNorm's running mean and variance are an exponential average of batch
statistics computed with *older* weights. With a small momentum (Keras's 0.99, torch's 0.01)
that average spans hundreds of steps, so while the weights still move fast the statistics
used at evaluation describe a network that no longer exists. The remedy of pycls and
detectron2 (``PreciseBN``, Wu & Johnson, "Rethinking 'Batch' in BatchNorm", 2021): before an
evaluation, run N training batches forward with the current weights and no gradient, and set
each BatchNorm's statistics to the plain average of those batches' statistics.

``recompute_bn_stats`` does exactly that through each BatchNorm's own cumulative-average mode
(momentum=None): running_mean becomes the mean over the N batches of the batch means, and
running_var the mean of the batch (unbiased) variances, the same quantities a
``momentum=None`` pass from reset statistics produces. The model runs in training mode (so
that modules which compute a BatchNorm's statistics themselves, like GlobalLocalAttention's
hidden-layer norm, do so) except its Dropout layers, which run in eval mode so that the
statistics describe the activations evaluation will see. The batches come as the loader
yields them (the training augmentation is not changed).
"""
from __future__ import annotations

import itertools
from typing import Callable, Iterable, Optional

import torch
from torch import nn

# Batches used when TrainConfig.precise_bn is None (auto) and some BatchNorm lags.
PRECISE_BN_AUTO_BATCHES = 64
# A momentum (torch convention) below this makes the running statistics average over more
# than ~100 steps: Keras's default (0.01 here) is below it, torch's default (0.1) is not.
LAGGING_MOMENTUM = 0.05


def batchnorms(model: nn.Module) -> list[nn.modules.batchnorm._BatchNorm]:
    """Every BatchNorm of ``model`` that keeps running statistics (the fused encoder blocks included)."""
    return [m for m in model.modules()
            if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.track_running_stats]


def statistics_lag(model: nn.Module) -> bool:
    """True when some BatchNorm's momentum is small enough that its statistics lag the weights."""
    return any(m.momentum is not None and m.momentum < LAGGING_MOMENTUM for m in batchnorms(model))


def precise_bn_batches(requested: Optional[int], model: nn.Module) -> int:
    """TrainConfig.precise_bn resolved: the number of batches, 0 for off (None: auto)."""
    if requested is not None:
        return int(requested)
    return PRECISE_BN_AUTO_BATCHES if statistics_lag(model) else 0


@torch.no_grad()
def recompute_bn_stats(model: nn.Module, batches: Iterable, num_batches: int,
                       forward: Callable[[nn.Module, object], object]) -> int:
    """Replace every BatchNorm's running statistics by their average over ``num_batches`` batches.

    ``forward(model, batch)`` runs one batch through the model. Returns how many batches were
    used (fewer when ``batches`` runs out). The model's train/eval modes and every BatchNorm's
    momentum are restored afterwards; with no batch at all the statistics are left untouched.
    """
    bns = batchnorms(model)
    if not bns or num_batches < 1:
        return 0
    modes = {m: m.training for m in model.modules()}
    saved = [(bn, bn.momentum, bn.running_mean.clone(), bn.running_var.clone(), bn.num_batches_tracked.clone())
             for bn in bns]
    used = 0
    try:
        model.train()
        for m in model.modules():
            if isinstance(m, nn.modules.dropout._DropoutNd):
                m.eval()
        for bn in bns:
            bn.reset_running_stats()
            bn.momentum = None  # cumulative average: after k batches, the mean of their statistics
        for batch in itertools.islice(batches, num_batches):
            forward(model, batch)
            used += 1
    finally:
        for bn, momentum, mean, var, tracked in saved:
            bn.momentum = momentum
            if used == 0:
                bn.running_mean.copy_(mean)
                bn.running_var.copy_(var)
            bn.num_batches_tracked.copy_(tracked)  # training's step count, not this pass's
        for m, mode in modes.items():
            m.training = mode
    return used
