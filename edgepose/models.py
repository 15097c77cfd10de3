"""The mmpose MobileNetV2 top-down heatmap model, and the CenterNet-style person detector, in plain PyTorch.

Module names mirror mmcv/mmpose exactly (``backbone.layerN.i.conv.j.{conv,bn}``,
``keypoint_head.deconv_layers.i``, ``keypoint_head.final_layer``) so that a published mmpose
checkpoint loads with ``strict=True``. This module imports torch; the device side never imports it.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from .spec import ModelSpec, get_spec

# (expand ratio t, out channels c, blocks n, first stride s), mmpose's MobileNetV2.arch_settings
ARCH_SETTINGS = (
    (1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1), (6, 160, 3, 2), (6, 320, 1, 1),
)  # fmt: skip


class ConvModule(nn.Module):
    """mmcv ConvModule: conv (no bias) -> BatchNorm -> optional activation."""

    def __init__(self, cin: int, cout: int, k: int, stride: int = 1, groups: int = 1, act: bool = True):
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, k, stride, (k - 1) // 2, groups=groups, bias=False)
        self.bn = nn.BatchNorm2d(cout)
        self.activate = nn.ReLU6(inplace=True) if act else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.bn(self.conv(x))
        return self.activate(x) if self.activate is not None else x


class InvertedResidual(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int, expand_ratio: int):
        super().__init__()
        hidden = int(round(cin * expand_ratio))
        self.use_res_connect = stride == 1 and cin == cout
        layers = []
        if expand_ratio != 1:
            layers.append(ConvModule(cin, hidden, 1))
        layers += [ConvModule(hidden, hidden, 3, stride, groups=hidden), ConvModule(hidden, cout, 1, act=False)]
        self.conv = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv(x) if self.use_res_connect else self.conv(x)


class MobileNetV2(nn.Module):
    """mmpose MobileNetV2(widen_factor=1.0, out_indices=(7,)): returns the stride-32 conv2 feature map."""

    def __init__(self):
        super().__init__()
        self.conv1 = ConvModule(3, 32, 3, stride=2)
        cin = 32
        for i, (t, c, n, s) in enumerate(ARCH_SETTINGS, start=1):
            blocks = []
            for j in range(n):
                blocks.append(InvertedResidual(cin, c, s if j == 0 else 1, t))
                cin = c
            self.add_module(f"layer{i}", nn.Sequential(*blocks))
        self.conv2 = ConvModule(cin, 1280, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv1(x)
        for i in range(1, len(ARCH_SETTINGS) + 1):
            x = getattr(self, f"layer{i}")(x)
        return self.conv2(x)


class TopdownHeatmapSimpleHead(nn.Module):
    """Three stride-2 deconvolutions (k4, p1) with BN+ReLU, then a 1x1 conv to K heatmaps."""

    def __init__(self, in_channels: int, num_keypoints: int, channels: int = 256):
        super().__init__()
        layers: list[nn.Module] = []
        for i in range(3):
            layers += [
                nn.ConvTranspose2d(in_channels if i == 0 else channels, channels, 4, 2, 1, 0, bias=False),
                nn.BatchNorm2d(channels),
                nn.ReLU(inplace=True),
            ]
        self.deconv_layers = nn.Sequential(*layers)
        self.final_layer = nn.Conv2d(channels, num_keypoints, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.final_layer(self.deconv_layers(x))


class TopDownPoseModel(nn.Module):
    """Backbone + head, ``forward_dummy`` in mmpose terms: NCHW normalised image -> raw heatmaps."""

    def __init__(self, num_keypoints: int):
        super().__init__()
        self.backbone = MobileNetV2()
        self.keypoint_head = TopdownHeatmapSimpleHead(1280, num_keypoints)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.keypoint_head(self.backbone(x))

    def init_weights(self, seed: int | None = None) -> TopDownPoseModel:
        """mmpose's head init (normal std 0.001, BN 1/0); backbone keeps PyTorch defaults."""
        if seed is not None:
            torch.manual_seed(seed)
        for m in self.keypoint_head.modules():
            if isinstance(m, (nn.ConvTranspose2d, nn.Conv2d)):
                nn.init.normal_(m.weight, std=0.001)
                if m.bias is not None:
                    nn.init.constant_(m.bias, 0)
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.constant_(m.weight, 1)
                nn.init.constant_(m.bias, 0)
        return self


class CenterNetHead(nn.Module):
    """A shared light stem (depthwise 3x3 + pointwise, BN, ReLU) and three 1x1 outputs at stride 4.

    ``heatmap`` (1: person-centre logit), ``wh`` (2: box width and height as fractions of the input width and
    height) and ``offset`` (2: the centre's sub-cell offset, in cells). Every channel of the deployed output lies
    in about 0..1, so one per-tensor INT8 scale serves the whole concatenated output.
    """

    def __init__(self, in_channels: int = 96, channels: int = 64):
        super().__init__()
        self.stem = nn.Sequential(
            ConvModule(in_channels, in_channels, 3, groups=in_channels),
            nn.Conv2d(in_channels, channels, 1, bias=False),
            nn.BatchNorm2d(channels),
            nn.ReLU(inplace=True),
        )
        self.heatmap = nn.Conv2d(channels, 1, 1)
        self.wh = nn.Conv2d(channels, 2, 1)
        self.offset = nn.Conv2d(channels, 2, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Raw outputs ``[N, 5, H, W]``: centre logit, w, h, offset x, offset y."""
        f = self.stem(x)
        return torch.cat([self.heatmap(f), self.wh(f), self.offset(f)], dim=1)

    def init_weights(self, prior: float = 0.1) -> None:
        """CenterNet's init: heatmap bias at the focal-loss prior, small regression weights."""
        for m in (self.heatmap, self.wh, self.offset):
            nn.init.normal_(m.weight, std=0.001)
            nn.init.constant_(m.bias, 0.0)
        nn.init.constant_(self.heatmap.bias, -math.log((1 - prior) / prior))
        nn.init.constant_(self.wh.bias, 0.2)
        nn.init.constant_(self.offset.bias, 0.5)


class FPNLite(nn.Module):
    """Top-down feature pyramid from stride 32 to stride 4 on the backbone's own stages, light enough for a phone.

    Laterals (1x1 ConvModule) on the stride-4/8/16/32 features (``layer2``, ``layer3``, ``layer5``, ``conv2``),
    nearest 2x upsampling and addition, a depthwise-separable 3x3 after each merge. Every op is one every target
    converts and quantises (conv, add, nearest resize).
    """

    IN_CHANNELS = (24, 32, 96, 1280)  # strides 4, 8, 16, 32

    def __init__(self, channels: int = 96):
        super().__init__()
        self.lateral = nn.ModuleList(ConvModule(c, channels, 1) for c in self.IN_CHANNELS)
        self.smooth = nn.ModuleList(
            nn.Sequential(ConvModule(channels, channels, 3, groups=channels), ConvModule(channels, channels, 1))
            for _ in range(3)
        )

    def forward(self, feats: list[torch.Tensor]) -> torch.Tensor:
        x = self.lateral[3](feats[3])
        for i in (2, 1, 0):
            x = self.lateral[i](feats[i]) + nn.functional.interpolate(x, scale_factor=2.0, mode="nearest")
            x = self.smooth[i](x)
        return x


def backbone_features(backbone: MobileNetV2, x: torch.Tensor) -> list[torch.Tensor]:
    """The stride-4, 8, 16 and 32 feature maps of the MobileNetV2 (after layer2, layer3, layer5 and conv2)."""
    x = backbone.conv1(x)
    feats = []
    for i in range(1, len(ARCH_SETTINGS) + 1):
        x = getattr(backbone, f"layer{i}")(x)
        if i in (2, 3, 5):
            feats.append(x)
    feats.append(backbone.conv2(x))
    return feats


class CenterNetDetector(nn.Module):
    """Person detector: MobileNetV2 backbone -> FPN-lite neck (stride 4) -> CenterNet head; mmdet-like key layout
    (``backbone.`` / ``neck.`` / ``bbox_head.``).

    ``forward`` is the deployed graph: NCHW normalised letterboxed image -> ONE tensor ``[N, 5, H/4, W/4]``
    (channel 0 the sigmoid centre heatmap, 1-2 box w, h as fractions of the input, 3-4 the centre offset in
    cells), so every engine and the one-output runtime face carry it unchanged. No peak finding and no NMS in
    the graph: :mod:`edgepose.detection` decodes it. ``forward_raw`` keeps the heatmap as logits (training).
    """

    def __init__(self):
        super().__init__()
        self.backbone = MobileNetV2()
        self.neck = FPNLite(96)
        self.bbox_head = CenterNetHead(96, 64)

    def forward_raw(self, x: torch.Tensor) -> torch.Tensor:
        return self.bbox_head(self.neck(backbone_features(self.backbone, x)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        raw = self.forward_raw(x)
        return torch.cat([torch.sigmoid(raw[:, :1]), raw[:, 1:]], dim=1)

    def init_from_pose(self, pose: TopDownPoseModel) -> CenterNetDetector:
        """The backbone from a (strictly loaded) pose model: the same MobileNetV2, every key."""
        self.backbone.load_state_dict(pose.backbone.state_dict(), strict=True)
        self.bbox_head.init_weights()
        return self


def build_model(spec: ModelSpec | str) -> nn.Module:
    """An untrained model for a spec (or spec name), in eval mode: the pose model, or the detector."""
    if isinstance(spec, str):
        spec = get_spec(spec)
    if spec.task == "detection":
        return CenterNetDetector().eval()
    return TopDownPoseModel(spec.num_keypoints).eval()


def load_model(spec: ModelSpec | str, checkpoint: str | None = None, progress: bool = True) -> nn.Module:
    """Build a model and load its checkpoint strictly (``checkpoint`` defaults to the spec's URL/file)."""
    from .checkpoint import load_state_dict_strict, resolve_checkpoint

    if isinstance(spec, str):
        spec = get_spec(spec)
    model = build_model(spec)
    source = checkpoint or spec.checkpoint
    path = resolve_checkpoint(source, progress=progress)
    # The shipped demo weights carry a recorded sha256; a user's own checkpoint is taken as given.
    sha = spec.checkpoint_sha256 if source == spec.checkpoint else None
    load_state_dict_strict(model, path, sha256=sha or None)
    return model.eval()
