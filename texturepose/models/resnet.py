"""ResNet-18/34/50 written in the project, with torchvision's exact module and state-dict names.

``state_dict()`` keys are torchvision's (``conv1.weight``, ``bn1.*``, ``layer1.0.conv1.weight``,
``layer2.0.downsample.0.weight``, ..., ``fc.*``), so a torchvision ImageNet weights file (e.g.
``resnet50-0676ba61.pth``) loads with :func:`load_torchvision_weights`. ResNet-50 is the "v1.5"
variant torchvision ships: the stride sits on the 3x3 convolution of each bottleneck.

The network is used as a feature extractor: :meth:`ResNet.features` returns the globally pooled
``(B, feature_dim)`` vector; the classifier ``fc`` exists only when ``num_classes`` is given, so a
regressor does not carry 2M unused parameters (which DDP would also complain about).
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import torch
from torch import nn

log = logging.getLogger(__name__)

#: Official torchvision ImageNet weight files (IMAGENET1K_V1), for error messages and docs.
TORCHVISION_URLS = {
    "resnet18": "https://download.pytorch.org/models/resnet18-f37072fd.pth",
    "resnet34": "https://download.pytorch.org/models/resnet34-b627a593.pth",
    "resnet50": "https://download.pytorch.org/models/resnet50-0676ba61.pth",
}


class WeightsError(RuntimeError):
    """A weights file that is absent, unreadable or does not fit the architecture."""


def _conv3x3(cin: int, cout: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False)


def _conv1x1(cin: int, cout: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, 1, stride=stride, bias=False)


class BasicBlock(nn.Module):
    expansion = 1

    def __init__(self, cin: int, width: int, stride: int = 1, downsample: nn.Module | None = None):
        super().__init__()
        self.conv1 = _conv3x3(cin, width, stride)
        self.bn1 = nn.BatchNorm2d(width)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = _conv3x3(width, width)
        self.bn2 = nn.BatchNorm2d(width)
        self.downsample = downsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + identity)


class Bottleneck(nn.Module):
    expansion = 4

    def __init__(self, cin: int, width: int, stride: int = 1, downsample: nn.Module | None = None):
        super().__init__()
        self.conv1 = _conv1x1(cin, width)
        self.bn1 = nn.BatchNorm2d(width)
        self.conv2 = _conv3x3(width, width, stride)  # v1.5: stride on the 3x3
        self.bn2 = nn.BatchNorm2d(width)
        self.conv3 = _conv1x1(width, width * self.expansion)
        self.bn3 = nn.BatchNorm2d(width * self.expansion)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.relu(out + identity)


ARCHS: dict[str, tuple[type[BasicBlock] | type[Bottleneck], tuple[int, int, int, int]]] = {
    "resnet18": (BasicBlock, (2, 2, 2, 2)),
    "resnet34": (BasicBlock, (3, 4, 6, 3)),
    "resnet50": (Bottleneck, (3, 4, 6, 3)),
}


class ResNet(nn.Module):
    """torchvision-compatible ResNet. ``num_classes=None`` drops the classifier."""

    def __init__(self, arch: str, num_classes: int | None = None):
        super().__init__()
        if arch not in ARCHS:
            raise ValueError(f"unknown ResNet architecture {arch!r}; expected one of {list(ARCHS)}")
        block, layers = ARCHS[arch]
        self.arch = arch
        self.conv1 = nn.Conv2d(3, 64, 7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, stride=2, padding=1)
        cin = 64
        for i, (width, n) in enumerate(zip((64, 128, 256, 512), layers, strict=True)):
            stride = 1 if i == 0 else 2
            downsample = None
            if stride != 1 or cin != width * block.expansion:
                downsample = nn.Sequential(
                    _conv1x1(cin, width * block.expansion, stride),
                    nn.BatchNorm2d(width * block.expansion),
                )
            blocks = [block(cin, width, stride, downsample)]
            cin = width * block.expansion
            blocks += [block(cin, width) for _ in range(n - 1)]
            setattr(self, f"layer{i + 1}", nn.Sequential(*blocks))
        self.feature_dim = cin
        e = block.expansion
        #: channels of the stride-4, -8, -16 and -32 maps of :meth:`feature_maps`
        self.map_channels = {"s4": 64 * e, "s8": 128 * e, "s16": 256 * e, "s32": 512 * e}
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(cin, num_classes) if num_classes else None
        self._init_weights()

    def _init_weights(self) -> None:
        # torchvision's initialisation, so training from scratch behaves as there.
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, 3, H, W)`` normalised images -> ``(B, feature_dim)`` pooled features."""
        return self.feature_maps(x)["pooled"]

    def feature_maps(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """The stride-4, -8, -16 and -32 maps (``s4`` ... ``s32``) and the pooled vector."""
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        s4 = self.layer1(x)
        s8 = self.layer2(s4)
        s16 = self.layer3(s8)
        s32 = self.layer4(s16)
        return {"s4": s4, "s8": s8, "s16": s16, "s32": s32,
                "pooled": torch.flatten(self.avgpool(s32), 1)}

    def frozen_prefix(self, count: int) -> list[nn.Module]:
        """The first ``count`` stages (stem, layer1, ...), for freezing early layers."""
        stages = [nn.ModuleList([self.conv1, self.bn1]), self.layer1, self.layer2, self.layer3,
                  self.layer4]
        return stages[:count]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        f = self.features(x)
        return f if self.fc is None else self.fc(f)


def read_state_dict(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """Read a ``.pth`` state dict (plain, or wrapped in ``state_dict``/``model``, DDP prefixes)."""
    path = Path(path)
    if not path.is_file():
        raise WeightsError(f"weights file {path} does not exist")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # torch raises many exception types for bad files
        raise WeightsError(f"weights file {path} is not a readable PyTorch file: {e}") from e
    for key in ("state_dict", "model"):
        if isinstance(obj, dict) and isinstance(obj.get(key), dict):
            obj = obj[key]
    if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise WeightsError(f"weights file {path} does not hold a state dict of tensors")
    return {k.removeprefix("module."): v for k, v in obj.items()}


def load_torchvision_weights(model: ResNet, path: str | os.PathLike) -> None:
    """Load a torchvision ResNet ``.pth`` into ``model``: strict on the backbone, ``fc`` ignored."""
    src = {k: v for k, v in read_state_dict(path).items() if not k.startswith("fc.")}
    dst = {k: v for k, v in model.state_dict().items() if not k.startswith("fc.")}
    missing = sorted(set(dst) - set(src))
    unexpected = sorted(set(src) - set(dst))
    wrong = sorted(k for k in set(src) & set(dst) if src[k].shape != dst[k].shape)
    if missing or unexpected or wrong:
        hint = TORCHVISION_URLS.get(model.arch, "")
        raise WeightsError(
            f"weights file {path} does not fit torchvision {model.arch}: "
            f"missing {len(missing)} keys {missing[:5]}, unexpected {len(unexpected)} keys "
            f"{unexpected[:5]}, wrong shape {wrong[:5]}. Expected torchvision's {model.arch} "
            f"weights, e.g. {hint}"
        )
    model.load_state_dict(src, strict=False)
    log.info("loaded torchvision %s weights from %s", model.arch, path)
