"""Optimiser and per-epoch learning-rate schedule from a TrainConfig."""
from __future__ import annotations

import math

import torch
from torch import nn

from .config import TrainConfig


def build_optimizer(model: nn.Module, cfg: TrainConfig) -> torch.optim.Optimizer:
    params = [p for p in model.parameters() if p.requires_grad]
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(params, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)
    if cfg.optimizer == "adamw":
        return torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    raise ValueError(f"optimizer={cfg.optimizer!r}: choose sgd or adamw")


def lr_factor(epoch: int, cfg: TrainConfig) -> float:
    """Multiplier of cfg.lr during epoch ``epoch`` (0-based).

    step: gamma ** (number of milestones <= epoch), the authors' MultiStepLR(25, 40; 0.1);
    cosine: half-cosine from 1 to 0 over cfg.epochs; none: 1. A linear warm-up over the first
    cfg.warmup_epochs epochs multiplies either.
    """
    if cfg.scheduler == "step":
        factor = cfg.gamma ** sum(1 for m in cfg.milestones if epoch >= m)
    elif cfg.scheduler == "cosine":
        factor = 0.5 * (1.0 + math.cos(math.pi * min(epoch, cfg.epochs) / cfg.epochs))
    else:
        factor = 1.0
    if cfg.warmup_epochs and epoch < cfg.warmup_epochs:
        factor *= (epoch + 1) / (cfg.warmup_epochs + 1)
    return factor


def build_scheduler(optimizer: torch.optim.Optimizer, cfg: TrainConfig) -> torch.optim.lr_scheduler.LambdaLR:
    """A LambdaLR stepped once per epoch; its state dict is plain numbers (checkpoint-safe)."""
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda epoch: lr_factor(epoch, cfg))
