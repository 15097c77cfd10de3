"""The mmpose MobileNetV2 top-down heatmap model in plain PyTorch.

Module names mirror mmcv/mmpose exactly (``backbone.layerN.i.conv.j.{conv,bn}``,
``keypoint_head.deconv_layers.i``, ``keypoint_head.final_layer``) so that a published mmpose
checkpoint loads with ``strict=True``. This module imports torch; the device side never imports it.
"""

from __future__ import annotations

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


def build_model(spec: ModelSpec | str) -> TopDownPoseModel:
    """An untrained model for a spec (or spec name), in eval mode."""
    if isinstance(spec, str):
        spec = get_spec(spec)
    return TopDownPoseModel(spec.num_keypoints).eval()


def load_model(spec: ModelSpec | str, checkpoint: str | None = None, progress: bool = True) -> TopDownPoseModel:
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
