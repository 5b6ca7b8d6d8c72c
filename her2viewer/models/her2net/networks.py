"""HER2Net networks: the pixel-level tumor detector and the tile-level classifier (seed 002).

Tumor detector (two classes per pixel, background/tumor): U-Net (default), SegNet
(max-pooling indices reused by the decoder) and DeepLabv3+ (torchvision ResNet
backbone and torchvision's ASPP, with the v3+ low-level-feature decoder). The
U-Net and SegNet take a base ``width`` so that the demo can shrink them.

Tile classifier (strong vs weak): torchvision ResNet-18/34/50/101/152 or
DenseNet-121 with a two-class head. All weights start random; nothing is downloaded.
"""

from __future__ import annotations

import torch
from torch import nn
from torchvision import models as tvm
from torchvision.models._utils import IntermediateLayerGetter
from torchvision.models.segmentation.deeplabv3 import ASPP

from her2viewer.errors import ModelError
from her2viewer.models.her2net.choices import (
    CLASSIFIERS,
    DEFAULT_CLASSIFIER,
    DEFAULT_SEGMENTER,
    SEGMENTERS,
)


def _conv_block(c_in: int, c_out: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(c_in, c_out, 3, padding=1, bias=False),
        nn.BatchNorm2d(c_out),
        nn.ReLU(inplace=True),
        nn.Conv2d(c_out, c_out, 3, padding=1, bias=False),
        nn.BatchNorm2d(c_out),
        nn.ReLU(inplace=True),
    )


class UNet(nn.Module):
    """U-Net (Ronneberger 2015) with ``depth`` poolings and base ``width`` channels."""

    def __init__(self, width: int = 64, depth: int = 4, n_classes: int = 2) -> None:
        super().__init__()
        widths = [width * 2**i for i in range(depth + 1)]
        self.down = nn.ModuleList(
            [_conv_block(3, widths[0])]
            + [_conv_block(widths[i], widths[i + 1]) for i in range(depth)]
        )
        self.up = nn.ModuleList(
            [nn.ConvTranspose2d(widths[i + 1], widths[i], 2, stride=2) for i in range(depth)]
        )
        self.merge = nn.ModuleList([_conv_block(2 * widths[i], widths[i]) for i in range(depth)])
        self.head = nn.Conv2d(widths[0], n_classes, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        skips = []
        for i, block in enumerate(self.down):
            x = block(x if i == 0 else nn.functional.max_pool2d(x, 2))
            skips.append(x)
        x = skips.pop()
        for i in reversed(range(len(self.up))):
            x = self.merge[i](torch.cat([skips[i], self.up[i](x)], 1))
        return self.head(x)


class SegNet(nn.Module):
    """SegNet (Badrinarayanan 2017): the decoder unpools with the encoder's pooling indices."""

    def __init__(self, width: int = 64, depth: int = 4, n_classes: int = 2) -> None:
        super().__init__()
        widths = [width * 2 ** min(i, 3) for i in range(depth)]
        ins = [3, *widths[:-1]]
        self.encoder = nn.ModuleList([_conv_block(a, b) for a, b in zip(ins, widths, strict=True)])
        outs = [widths[0], *widths[:-1]]
        self.decoder = nn.ModuleList([_conv_block(b, a) for a, b in zip(outs, widths, strict=True)])
        self.head = nn.Conv2d(widths[0], n_classes, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        record = []
        for block in self.encoder:
            x = block(x)
            size = x.shape[-2:]
            x, indices = nn.functional.max_pool2d(x, 2, return_indices=True)
            record.append((indices, size))
        for i in reversed(range(len(self.decoder))):
            indices, size = record[i]
            x = self.decoder[i](nn.functional.max_unpool2d(x, indices, 2, output_size=size))
        return self.head(x)


class DeepLabV3Plus(nn.Module):
    """DeepLabv3+ (Chen 2018): ResNet backbone, torchvision ASPP, low-level-feature decoder."""

    def __init__(self, backbone: str = "resnet50", n_classes: int = 2) -> None:
        super().__init__()
        if backbone not in ("resnet18", "resnet34", "resnet50", "resnet101"):
            raise ModelError(f"DeepLabv3+ needs a ResNet-18/34/50/101 backbone, got '{backbone}'.")
        deep = backbone in ("resnet50", "resnet101")
        kwargs = {"replace_stride_with_dilation": [False, False, True]} if deep else {}
        net = getattr(tvm, backbone)(weights=None, **kwargs)
        self.backbone = IntermediateLayerGetter(net, {"layer1": "low", "layer4": "out"})
        low_ch, high_ch = (256, 2048) if deep else (64, 512)
        self.aspp = ASPP(high_ch, [6, 12, 18], 256)
        self.project = nn.Sequential(
            nn.Conv2d(low_ch, 48, 1, bias=False), nn.BatchNorm2d(48), nn.ReLU(inplace=True)
        )
        self.decode = nn.Sequential(
            nn.Conv2d(304, 256, 3, padding=1, bias=False),
            nn.BatchNorm2d(256),
            nn.ReLU(inplace=True),
            nn.Conv2d(256, n_classes, 1),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        size = x.shape[-2:]
        feats = self.backbone(x)
        low = self.project(feats["low"])
        high = nn.functional.interpolate(
            self.aspp(feats["out"]), size=low.shape[-2:], mode="bilinear", align_corners=False
        )
        out = self.decode(torch.cat([low, high], 1))
        return nn.functional.interpolate(out, size=size, mode="bilinear", align_corners=False)


def build_segmenter(config: dict) -> nn.Module:
    """Build the tumor detector described by ``config`` (random weights, eval mode).

    Parameters
    ----------
    config : dict
        ``arch`` (one of :data:`SEGMENTERS`), ``width`` and ``depth`` (U-Net/SegNet),
        ``backbone`` (DeepLabv3+), ``seed``.

    Returns
    -------
    torch.nn.Module
        Maps ``(N, 3, H, W)`` to two-class logits ``(N, 2, H, W)``; ``H`` and ``W``
        must be multiples of ``2**depth``.
    """
    arch = str(config.get("arch", DEFAULT_SEGMENTER)).lower()
    torch.manual_seed(int(config.get("seed", 0)))
    if arch == "unet":
        model = UNet(int(config.get("width", 64)), int(config.get("depth", 4)))
    elif arch == "segnet":
        model = SegNet(int(config.get("width", 64)), int(config.get("depth", 4)))
    elif arch == "deeplabv3plus":
        model = DeepLabV3Plus(str(config.get("backbone", "resnet50")))
    else:
        raise ModelError(f"Unknown tumor detector '{arch}'; choose from {', '.join(SEGMENTERS)}.")
    return model.eval()


class SlimResNet(tvm.ResNet):
    """torchvision's ResNet with base width ``width`` instead of 64 (same blocks and forward)."""

    def __init__(self, block, layers: list[int], width: int, n_classes: int = 2) -> None:
        nn.Module.__init__(self)
        self._norm_layer = nn.BatchNorm2d
        self.inplanes, self.dilation, self.groups, self.base_width = width, 1, 1, 64
        self.conv1 = nn.Conv2d(3, width, kernel_size=7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        self.layer1 = self._make_layer(block, width, layers[0])
        self.layer2 = self._make_layer(block, width * 2, layers[1], stride=2)
        self.layer3 = self._make_layer(block, width * 4, layers[2], stride=2)
        self.layer4 = self._make_layer(block, width * 8, layers[3], stride=2)
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.fc = nn.Linear(width * 8 * block.expansion, n_classes)


_RESNET_LAYOUT = {
    "resnet18": (tvm.resnet.BasicBlock, [2, 2, 2, 2]),
    "resnet34": (tvm.resnet.BasicBlock, [3, 4, 6, 3]),
    "resnet50": (tvm.resnet.Bottleneck, [3, 4, 6, 3]),
    "resnet101": (tvm.resnet.Bottleneck, [3, 4, 23, 3]),
    "resnet152": (tvm.resnet.Bottleneck, [3, 8, 36, 3]),
}


def build_tile_classifier(config: dict) -> nn.Module:
    """Build a strong/weak tile classifier (random weights, eval mode).

    Parameters
    ----------
    config : dict
        ``arch`` (one of :data:`CLASSIFIERS`), ``width`` (64 is the standard network;
        smaller widths shrink every layer for demos: ResNet base channels, DenseNet
        initial features with growth rate ``width / 2``) and ``seed``.
    """
    arch = str(config.get("arch", DEFAULT_CLASSIFIER)).lower()
    if arch not in CLASSIFIERS:
        raise ModelError(f"Unknown tile classifier '{arch}'; choose from {', '.join(CLASSIFIERS)}.")
    width = int(config.get("width", 64))
    if width < 2:
        raise ModelError(f"Tile classifier width must be at least 2, got {width}.")
    torch.manual_seed(int(config.get("seed", 0)))
    if arch == "densenet121":
        model = tvm.DenseNet(
            growth_rate=max(1, width // 2), block_config=(6, 12, 24, 16), num_init_features=width
        )
        model.classifier = nn.Linear(model.classifier.in_features, 2)
    elif width == 64:
        model = getattr(tvm, arch)(weights=None)
        model.fc = nn.Linear(model.fc.in_features, 2)
    else:
        model = SlimResNet(*_RESNET_LAYOUT[arch], width=width)
    return model.eval()
