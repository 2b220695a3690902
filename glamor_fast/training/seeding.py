"""Seeding: every random draw of a run is a function of (seed, epoch, rank, first batch)."""
from __future__ import annotations

import random

import numpy as np
import torch


def seed_everything(seed: int, *salt: int) -> int:
    """Seed Python, NumPy and torch (CPU and CUDA) from ``seed`` mixed with ``salt``; returns the seed used."""
    mixed = int(np.random.SeedSequence([int(seed), *(int(s) for s in salt)]).generate_state(1)[0])
    random.seed(mixed)
    np.random.seed(mixed)
    torch.manual_seed(mixed)
    return mixed
