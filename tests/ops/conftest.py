"""Fixtures shared by the op tests."""
from __future__ import annotations

import pytest
import torch


@pytest.fixture
def two_threads():
    """Two threads (this machine's cores), so the group / tile-split paths really run."""
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    yield
    torch.set_num_threads(before)
