"""Inference speed settings for GLAMOR-Net models (measured in bench/model.py, bench/RESULTS.md).

``fold_batchnorm(model)``: a copy of an eval-mode model in which every Conv2d directly
followed by a BatchNorm2d becomes one Conv2d carrying the BatchNorm's affine transform
(``torch.nn.utils.fusion.fuse_conv_bn_eval``), the BatchNorm replaced by Identity.
Pairs found: adjacent (Conv2d, BatchNorm2d) children of an nn.Sequential (conv5 encoder,
CAER-Net's attention scorer, ResNet downsample branches) and attribute pairs named
``conv<k>``/``bn<k>`` on one module (ResNet stem and BasicBlocks). GLA's hidden-layer
BatchNorm is already folded by the op in eval mode. A fused encoder block
(``FusedBNReLUPool2d``) after a Conv2d folds the same way and leaves its ReLU and 2x2 max-pool
as one ``ReLUMaxPool2d`` (glamor_fast.ops.relu_pool: one pass, no indices).

``fuse_relu_pool(model)``: a copy in which every nn.ReLU directly followed by an
nn.MaxPool2d(2) in an nn.Sequential becomes one ``ReLUMaxPool2d`` (and an Identity).
``fuse_stem(model)``: a copy in which a 3x3 conv over 1-4 channels directly followed by a
``ReLUMaxPool2d`` becomes one ``Conv3x3ReLUPool2d`` (glamor_fast.ops.stem_conv: the encoders'
first layer in one pass). ``optimize_for_inference`` does all three.
"""
from __future__ import annotations

import copy

import torch
from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_eval

from glamor_fast.ops.relu_pool import ReLUMaxPool2d
from glamor_fast.ops.stem_conv import Conv3x3ReLUPool2d, conv_fits

from .encoders import FusedBNReLUPool2d


def _foldable(conv: nn.Module, bn: nn.Module) -> bool:
    return (type(conv) is nn.Conv2d and type(bn) in (nn.BatchNorm2d, FusedBNReLUPool2d)
            and bn.track_running_stats and bn.num_features == conv.out_channels)


def _after_fold(bn: nn.Module) -> nn.Module:
    """What stays of ``bn`` once folded into its conv: nothing, or a fused block's ReLU and pool."""
    if isinstance(bn, FusedBNReLUPool2d):
        return ReLUMaxPool2d()
    return nn.Identity()


def _sequential_pairs(model: nn.Module):
    """(sequential, name_a, name_b) for every two children of every nn.Sequential that follow
    each other with at most nn.Identity children between them (what earlier fusions leave)."""
    for module in list(model.modules()):
        if isinstance(module, nn.Sequential):
            names = list(module._modules)
            for i, a in enumerate(names):
                later = [b for b in names[i + 1:] if type(module._modules[b]) is not nn.Identity]
                if later:
                    yield module, a, later[0]


def _fold_batchnorm_(model: nn.Module) -> int:
    """Folds ``model``'s Conv2d+BatchNorm2d pairs in place; returns how many."""
    folded = 0
    for module, a, b in _sequential_pairs(model):
        conv, bn = module._modules[a], module._modules[b]
        if _foldable(conv, bn):
            module._modules[a] = fuse_conv_bn_eval(conv, bn)
            module._modules[b] = _after_fold(bn)
            folded += 1
    for module in model.modules():
        for name, child in list(module._modules.items()):
            if name.startswith("conv"):
                bn_name = "bn" + name[len("conv"):]
                bn = module._modules.get(bn_name)
                if bn is not None and _foldable(child, bn):
                    module._modules[name] = fuse_conv_bn_eval(child, bn)
                    module._modules[bn_name] = _after_fold(bn)
                    folded += 1
    return folded


def fold_batchnorm(model: nn.Module) -> tuple[nn.Module, int]:
    """(folded copy of ``model``, number of Conv2d+BatchNorm2d pairs folded). ``model`` must be in eval mode."""
    if model.training:
        raise ValueError("fold_batchnorm: the model must be in eval mode (call model.eval()); "
                         "training-mode BatchNorm uses batch statistics and cannot be folded")
    model = copy.deepcopy(model)
    return model, _fold_batchnorm_(model)


def _is_pool2(m: nn.Module) -> bool:
    """nn.MaxPool2d(2) exactly: 2x2 windows, stride 2, no padding or dilation, floor, no indices."""
    pair = lambda v: v if isinstance(v, tuple) else (v, v)  # noqa: E731
    return (type(m) is nn.MaxPool2d and pair(m.kernel_size) == (2, 2) and pair(m.stride) == (2, 2)
            and pair(m.padding) == (0, 0) and pair(m.dilation) == (1, 1) and not m.ceil_mode
            and not m.return_indices)


def _fuse_pairs_(model: nn.Module, fuses, fused_module) -> int:
    """Replaces, in place, every pair (a, b) of ``_sequential_pairs`` with ``fuses(a, b)`` true by
    ``fused_module(a)`` and an Identity; returns how many."""
    count = 0
    for module, a, b in _sequential_pairs(model):
        if fuses(module._modules[a], module._modules[b]):
            module._modules[a], module._modules[b] = fused_module(module._modules[a]), nn.Identity()
            count += 1
    return count


def _fuse_relu_pool_(model: nn.Module) -> int:
    return _fuse_pairs_(model, lambda a, b: type(a) is nn.ReLU and _is_pool2(b), lambda a: ReLUMaxPool2d())


def _fuse_stem_(model: nn.Module) -> int:
    return _fuse_pairs_(model, lambda a, b: type(a) is nn.Conv2d and conv_fits(a) and type(b) is ReLUMaxPool2d,
                        Conv3x3ReLUPool2d.from_conv)


def fuse_relu_pool(model: nn.Module) -> tuple[nn.Module, int]:
    """(copy of ``model`` with ReLU -> MaxPool2d(2) pairs fused into ReLUMaxPool2d, pairs fused)."""
    model = copy.deepcopy(model)
    return model, _fuse_relu_pool_(model)


def fuse_stem(model: nn.Module) -> tuple[nn.Module, int]:
    """(copy of ``model`` with Conv2d (3x3, 1-4 input channels) -> ReLUMaxPool2d pairs as one
    Conv3x3ReLUPool2d, pairs fused)."""
    model = copy.deepcopy(model)
    return model, _fuse_stem_(model)


def optimize_for_inference(model: nn.Module, channels_last: bool = True) -> nn.Module:
    """An eval-mode copy of ``model`` with Conv2d+BatchNorm2d pairs folded, ReLU+MaxPool2d(2)
    pairs as one ``ReLUMaxPool2d``, a first 3x3 conv with its ReLU and pool as one
    ``Conv3x3ReLUPool2d`` and, by default, channels_last weights (feed it channels_last images too:
    ``img.contiguous(memory_format=torch.channels_last)``). Same logits up to rounding.
    """
    fast = copy.deepcopy(model).eval()  # one copy: the caller's model keeps its weights and mode
    _fold_batchnorm_(fast)
    _fuse_relu_pool_(fast)
    _fuse_stem_(fast)
    if channels_last:
        fast = fast.to(memory_format=torch.channels_last)
    return fast
