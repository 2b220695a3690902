"""Image encoders: the paper's 5-layer conv encoder and a ResNet-18 trunk.

Both map (B, 3, h, w) images to (B, C, h', w') feature maps; ``out_channels`` is C.
"""
from __future__ import annotations

import os

import torch
import torch.nn.functional as F
from torch import nn

from glamor_fast.ops.bn_relu_pool import bn_relu_pool


class FusedBNReLUPool2d(nn.BatchNorm2d):
    """BatchNorm2d -> ReLU -> MaxPool2d(2) as one fused op (glamor_fast.ops.bn_relu_pool).

    A BatchNorm2d subclass: same arguments (``eps``, ``momentum`` incl. None, ``affine``,
    ``track_running_stats``), parameters, buffers and ``state_dict`` keys, and the same running
    statistics updates. (N, C, H, W) -> (N, C, H//2, W//2). ``backend`` picks the block's kernel
    ("auto", "cpp", "triton", "reference"). Training mode (batch statistics) runs fused; eval
    mode runs the reference ops (fold it away with ``optimize_for_inference``).
    ``nn.SyncBatchNorm.convert_sync_batchnorm`` would replace it by a plain SyncBatchNorm and
    drop the ReLU and pool: use ``Conv5Encoder(fused_blocks=False)`` for SyncBatchNorm.
    """

    def __init__(self, num_features: int, eps: float = 1e-5, momentum=0.1, affine: bool = True,
                 track_running_stats: bool = True, backend: str = "auto", device=None, dtype=None):
        super().__init__(num_features, eps, momentum, affine, track_running_stats, device, dtype)
        self.backend = backend

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self._check_input_dim(x)
        eaf = 0.0 if self.momentum is None else self.momentum
        if self.training and self.track_running_stats and self.num_batches_tracked is not None:
            self.num_batches_tracked.add_(1)
            eaf = 1.0 / float(self.num_batches_tracked) if self.momentum is None else self.momentum
        use_batch_stats = self.training or (self.running_mean is None and self.running_var is None)
        if not use_batch_stats:
            return F.max_pool2d(F.relu(F.batch_norm(
                x, self.running_mean, self.running_var, self.weight, self.bias, False, eaf, self.eps)), 2)
        weight, bias = self.weight, self.bias
        if weight is None:
            weight = torch.ones(self.num_features, dtype=x.dtype, device=x.device)
            bias = torch.zeros(self.num_features, dtype=x.dtype, device=x.device)
        track = not self.training or self.track_running_stats
        return bn_relu_pool(x, weight, bias, self.running_mean if track else None,
                            self.running_var if track else None, eaf, self.eps, self.backend)

    def unfused(self) -> nn.Sequential:
        """The literal BatchNorm2d -> ReLU -> MaxPool2d(2) with a copy of this module's state."""
        like = self.weight if self.weight is not None else self.running_mean
        factory = {} if like is None else dict(device=like.device, dtype=like.dtype)
        bn = nn.BatchNorm2d(self.num_features, self.eps, self.momentum, self.affine, self.track_running_stats,
                            **factory)
        bn.load_state_dict(self.state_dict())
        bn.train(self.training)
        return nn.Sequential(bn, nn.ReLU(inplace=True), nn.MaxPool2d(2))


def set_block_backend(model: nn.Module, backend: str) -> int:
    """Sets the kernel of every FusedBNReLUPool2d in ``model`` ("reference" runs the literal
    batch_norm -> relu -> max_pool2d ops, i.e. switches fusion off); returns how many."""
    blocks = [m for m in model.modules() if isinstance(m, FusedBNReLUPool2d)]
    for m in blocks:
        m.backend = backend
    return len(blocks)


def _conv_bn_relu(cin: int, cout: int, eps: float = 1e-5, momentum=0.1) -> list[nn.Module]:
    return [nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout, eps, momentum),
            nn.ReLU(inplace=True)]


class Conv5Encoder(nn.Sequential):
    """Five conv3x3-BN-ReLU blocks (32, 64, 128, 256, 256 filters), a 2x2 max-pool after the first four.

    Face 96x96 -> (B, 256, 6, 6); context 112x112 -> (B, 256, 7, 7).
    ``fused_blocks`` (default) runs each BN-ReLU-pool of the first four blocks as one
    FusedBNReLUPool2d (children: conv, FusedBNReLUPool2d, Identity, Identity), so the
    ``state_dict`` keys are the same as with ``fused_blocks=False`` (conv, BatchNorm2d, ReLU,
    MaxPool2d). ``bn_eps``/``bn_momentum`` go to every BatchNorm; ``block_backend`` to the fused op.
    """

    widths = (32, 64, 128, 256, 256)

    def __init__(self, in_channels: int = 3, fused_blocks: bool = True, bn_eps: float = 1e-5,
                 bn_momentum=0.1, block_backend: str = "auto"):
        layers: list[nn.Module] = []
        cin = in_channels
        for i, cout in enumerate(self.widths):
            pool = i < len(self.widths) - 1
            if fused_blocks and pool:
                layers += [nn.Conv2d(cin, cout, 3, padding=1, bias=False),
                           FusedBNReLUPool2d(cout, bn_eps, bn_momentum, backend=block_backend),
                           nn.Identity(), nn.Identity()]
            else:
                layers += _conv_bn_relu(cin, cout, bn_eps, bn_momentum)
                if pool:
                    layers.append(nn.MaxPool2d(2))
            cin = cout
        super().__init__(*layers)
        self.out_channels = self.widths[-1]
        self.fused_blocks = fused_blocks


class BasicBlock(nn.Module):
    """torchvision's ResNet BasicBlock, with the same parameter names."""

    def __init__(self, cin: int, cout: int, stride: int = 1, bn_eps: float = 1e-5, bn_momentum: float = 0.1):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout, bn_eps, bn_momentum)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout, bn_eps, bn_momentum)
        self.downsample = None
        if stride != 1 or cin != cout:
            self.downsample = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False),
                                            nn.BatchNorm2d(cout, bn_eps, bn_momentum))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + identity)


class ResNet18Encoder(nn.Module):
    """A ResNet-18 trunk (no avgpool/fc) with torchvision's ``resnet18`` state-dict keys.

    112x112 context -> (B, 512, 4, 4); 96x96 face -> (B, 512, 3, 3).
    """

    out_channels = 512

    def __init__(self, in_channels: int = 3, bn_eps: float = 1e-5, bn_momentum: float = 0.1):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, 64, 7, 2, 3, bias=False)
        self.bn1 = nn.BatchNorm2d(64, bn_eps, bn_momentum)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, 2, 1)
        cin = 64
        for i, (cout, stride) in enumerate(((64, 1), (128, 2), (256, 2), (512, 2)), start=1):
            setattr(self, f"layer{i}", nn.Sequential(BasicBlock(cin, cout, stride, bn_eps, bn_momentum),
                                                     BasicBlock(cout, cout, 1, bn_eps, bn_momentum)))
            cin = cout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        return self.layer4(self.layer3(self.layer2(self.layer1(x))))

    def load_torchvision_checkpoint(self, path: str | os.PathLike) -> None:
        """Load a torchvision ``resnet18`` checkpoint file (its ``fc.*`` head is dropped).

        Loads with ``weights_only=True``; a mismatch raises ValueError naming the keys or shapes.
        """
        state = torch.load(path, map_location="cpu", weights_only=True)
        if isinstance(state, dict) and "state_dict" in state:
            state = state["state_dict"]
        state = {k: v for k, v in state.items() if not k.startswith("fc.")}
        try:
            self.load_state_dict(state, strict=True)
        except RuntimeError as exc:
            raise ValueError(f"{path} is not a torchvision resnet18 checkpoint: {exc}") from None


ENCODERS = {"conv5": Conv5Encoder, "resnet18": ResNet18Encoder}


def build_encoder(name: str, **kwargs) -> nn.Module:
    """An encoder by name; ``kwargs`` go to its constructor (e.g. ``fused_blocks=False`` for conv5)."""
    if name not in ENCODERS:
        raise ValueError(f"unknown encoder {name!r}; choose one of {', '.join(ENCODERS)}")
    return ENCODERS[name](**kwargs)
