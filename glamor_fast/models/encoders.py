"""Image encoders: the paper's 5-layer conv encoder and a ResNet-18 trunk.

Both map (B, 3, h, w) images to (B, C, h', w') feature maps; ``out_channels`` is C.
"""
from __future__ import annotations

import os

import torch
from torch import nn


def _conv_bn_relu(cin: int, cout: int, bn_eps: float = 1e-5, bn_momentum: float = 0.1) -> list[nn.Module]:
    return [nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout, bn_eps, bn_momentum),
            nn.ReLU(inplace=True)]


class Conv5Encoder(nn.Sequential):
    """Five conv3x3-BN-ReLU blocks (32, 64, 128, 256, 256 filters), a 2x2 max-pool after the first four.

    Face 96x96 -> (B, 256, 6, 6); context 112x112 -> (B, 256, 7, 7).
    ``bn_eps``/``bn_momentum``: every BatchNorm2d's (torch's defaults; Keras's are 1e-3 and 0.01).
    """

    widths = (32, 64, 128, 256, 256)

    def __init__(self, in_channels: int = 3, bn_eps: float = 1e-5, bn_momentum: float = 0.1):
        layers: list[nn.Module] = []
        cin = in_channels
        for i, cout in enumerate(self.widths):
            layers += _conv_bn_relu(cin, cout, bn_eps, bn_momentum)
            if i < len(self.widths) - 1:
                layers.append(nn.MaxPool2d(2))
            cin = cout
        super().__init__(*layers)
        self.out_channels = self.widths[-1]


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


def build_encoder(name: str, bn_eps: float = 1e-5, bn_momentum: float = 0.1) -> nn.Module:
    if name not in ENCODERS:
        raise ValueError(f"unknown encoder {name!r}; choose one of {', '.join(ENCODERS)}")
    return ENCODERS[name](bn_eps=bn_eps, bn_momentum=bn_momentum)
