"""Test set-up. TRITON_INTERPRET must be set before any @triton.jit function is defined."""
import os

import torch

if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")

import pytest  # noqa: E402

_skip_without_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
# `pytest -m gpu` selects exactly these: the marker and the skip travel together.
GPU_MARKS = [pytest.mark.gpu, _skip_without_cuda]


def requires_cuda(obj):
    """Marks a test (function or class) ``gpu`` and skips it without a CUDA device."""
    for mark in GPU_MARKS:
        obj = mark(obj)
    return obj


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)
    yield
