"""The fused block's spec: BatchNorm2d -> ReLU -> MaxPool2d(2) with the literal torch ops."""
from __future__ import annotations

import torch.nn.functional as F


def bn_relu_pool_reference(x, weight, bias, running_mean=None, running_var=None, training=True,
                           momentum=0.1, eps=1e-5):
    """The unfused block with torch ops; updates the running statistics in place like F.batch_norm.

    x (N, C, H, W), weight/bias (C,) -> (N, C, H//2, W//2)."""
    z = F.batch_norm(x, running_mean, running_var, weight, bias, training, momentum, eps)
    return F.max_pool2d(F.relu(z), 2)
