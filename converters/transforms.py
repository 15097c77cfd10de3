"""Exact graph rewrites of the PyTorch model, applied before ONNX export (workstation side; torch imported lazily).

The head's three ``ConvTranspose2d(k=4, s=2, p=1)`` + ``BatchNorm2d`` + ``ReLU`` blocks hold ~81 % of the
model's MACs, and the engines run transposed convolutions slowly or not at all (XNNPACK's TRANSPOSE_CONV at
~12 GMAC/s; ONNX Runtime keeps ConvTranspose in float between Q/DQ pairs; the TFLite GPU delegate and NNAPI
reject TRANSPOSE_CONV v4). A stride-2 transposed convolution is four ordinary convolutions, one per output
phase (sub-pixel convolution), whose outputs interleave by a depth-to-space. Per axis, with ``W`` the 4-tap
transposed kernel and ``x`` the input (``o = 2 i - 1 + k``)::

    y[2m]     = W[3] x[m-1] + W[1] x[m]      (phase 0: 2-tap kernel [W3, W1], padding 1 before, 0 after)
    y[2m + 1] = W[2] x[m]   + W[0] x[m+1]    (phase 1: 2-tap kernel [W2, W0], padding 0 before, 1 after)

Forms (``HEAD_FORMS``):

* ``deconv``: no rewrite (the mmpose graph as it is).
* ``subpixel2x2``: per block, four 2x2 convolutions (asymmetric padding; BatchNorm folded into weights and
  bias), a ReLU on **each** branch (XNNPACK keeps a quantised graph in one delegate partition only then),
  Concat in phase order ``(dy, dx)`` = (0,0), (0,1), (1,0), (1,1), then ``DepthToSpace(2, mode=DCR)``.
* ``subpixel3x3``: per block, one 3x3 convolution (padding 1) with ``4 C`` outputs, the four 2x2 phase kernels
  embedded in it with zeros elsewhere (2.25x the MACs of the 2x2 form, one operator), ReLU, ``DepthToSpace``.

The depth-to-space is DCR (TensorFlow's channel order: output ``(c, 2h+dy, 2w+dx)`` reads input channel
``(dy*2 + dx)*C + c``), not PyTorch's ``pixel_shuffle`` (CRD, channel ``c*4 + dy*2 + dx``): onnx2tf turns DCR
into one DEPTH_TO_SPACE and CRD into a 6-D Reshape/Transpose/Reshape. PyTorch has no DCR operator, so a small
autograd Function computes it (view/permute) and exports as ``DepthToSpace(mode="DCR")``.

Every form gives the original heatmaps to float rounding (~1e-6 relative; tests/test_transforms.py). Parity of
every artifact is still checked against the original, unrewritten model.
"""

from __future__ import annotations

import copy
import functools
from typing import Any

from edgepose.errors import EdgeposeError

HEAD_FORMS = ("deconv", "subpixel2x2", "subpixel3x3")
AUTO = "auto"

# what the metadata (conversion.graph_rewrites) says was applied, per form
REWRITES: dict[str, list[str]] = {
    "deconv": [],
    "subpixel2x2": [
        "head: ConvTranspose(4,2,1)+BN+ReLU (x3) -> 4x (Conv2x2+ReLU) + Concat + DepthToSpace(DCR), BN folded"
    ],
    "subpixel3x3": [
        "head: ConvTranspose(4,2,1)+BN+ReLU (x3) -> Conv3x3 (4C out, phase kernels embedded)+ReLU + "
        "DepthToSpace(DCR), BN folded"
    ],
}

# per phase (0 = even output index, 1 = odd): the transposed-kernel taps in 2x2 order, and padding (before, after)
TAPS = {0: (3, 1), 1: (2, 0)}
PADS = {0: (1, 0), 1: (0, 1)}
PHASES = ((0, 0), (0, 1), (1, 0), (1, 1))  # (dy, dx), in DCR channel-block order


def check_form(form: str, allow_auto: bool = False) -> str:
    forms = (AUTO, *HEAD_FORMS) if allow_auto else HEAD_FORMS
    f = (form or "").strip().lower()
    if f not in forms:
        raise EdgeposeError(f"unknown head form {form!r}; choose from {', '.join(forms)}")
    return f


def folded_phase_kernels(deconv: Any, bn: Any | None) -> tuple[Any, Any]:
    """``(kernels, bias)``: kernels ``[4, C_out, C_in, 2, 2]`` (phases in :data:`PHASES` order) and bias
    ``[C_out]`` of ``deconv`` (ConvTranspose2d k4 s2 p1) with ``bn`` (eval-mode BatchNorm2d) folded in, float32."""
    import torch

    w = deconv.weight.detach().double()  # [C_in, C_out, 4, 4]
    c_out = w.shape[1]
    scale = torch.ones(c_out, dtype=torch.float64)
    shift = deconv.bias.detach().double() if deconv.bias is not None else torch.zeros(c_out, dtype=torch.float64)
    if bn is not None:
        s = bn.weight.detach().double() / torch.sqrt(bn.running_var.detach().double() + bn.eps)
        shift = (shift - bn.running_mean.detach().double()) * s + bn.bias.detach().double()
        scale = s
    kernels = []
    for dy, dx in PHASES:
        k = w[:, :, list(TAPS[dy]), :][:, :, :, list(TAPS[dx])]  # [C_in, C_out, 2, 2]
        kernels.append(k.permute(1, 0, 2, 3) * scale[:, None, None, None])
    return torch.stack(kernels).float(), shift.float()


@functools.cache
def _modules() -> dict[str, type]:
    """The nn.Module classes of the rewritten blocks (built on first use: torch is imported only here)."""
    import torch
    import torch.nn.functional as F
    from torch import nn

    class DepthToSpaceDCR(torch.autograd.Function):
        """TensorFlow-order depth-to-space; exported by the TorchScript exporter as ONNX DepthToSpace(DCR)."""

        @staticmethod
        def forward(ctx: Any, x: torch.Tensor, block: int) -> torch.Tensor:
            n, c, h, w = x.shape
            c //= block * block
            y = x.reshape(n, block, block, c, h, w).permute(0, 3, 4, 1, 5, 2)
            return y.reshape(n, c, h * block, w * block)

        @staticmethod
        def symbolic(g: Any, x: Any, block: int) -> Any:
            return g.op("DepthToSpace", x, blocksize_i=block, mode_s="DCR")

    class SubPixel2x2(nn.Module):
        """Four 2x2 phase convolutions (+ReLU each), Concat, DepthToSpace(DCR)."""

        def __init__(self, kernels: torch.Tensor, bias: torch.Tensor, relu: bool):
            super().__init__()
            c_out, c_in = kernels.shape[1:3]
            self.relu = relu
            self.pads = [(PADS[dx][0], PADS[dx][1], PADS[dy][0], PADS[dy][1]) for dy, dx in PHASES]
            self.phases = nn.ModuleList()
            for k in kernels:
                conv = nn.Conv2d(c_in, c_out, 2, bias=True)
                conv.weight.data.copy_(k)
                conv.bias.data.copy_(bias)
                self.phases.append(conv)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            outs = []
            for conv, pad in zip(self.phases, self.pads):
                y = conv(F.pad(x, pad))  # onnxsim folds the Pad into the Conv's (asymmetric) pads
                outs.append(F.relu(y) if self.relu else y)
            return DepthToSpaceDCR.apply(torch.cat(outs, 1), 2)

    class SubPixel3x3(nn.Module):
        """One 3x3 convolution with 4*C outputs (phase kernels embedded), ReLU, DepthToSpace(DCR)."""

        def __init__(self, kernels: torch.Tensor, bias: torch.Tensor, relu: bool):
            super().__init__()
            c_out, c_in = kernels.shape[1:3]
            self.relu = relu
            self.conv = nn.Conv2d(c_in, 4 * c_out, 3, padding=1, bias=True)
            weight = torch.zeros(4 * c_out, c_in, 3, 3)
            for p, (dy, dx) in enumerate(PHASES):
                # a 2x2 phase kernel sits where its taps fall in the 3x3 window (rows/cols m-1, m, m+1)
                y0, x0 = 1 - PADS[dy][0], 1 - PADS[dx][0]
                weight[p * c_out : (p + 1) * c_out, :, y0 : y0 + 2, x0 : x0 + 2] = kernels[p]
            self.conv.weight.data.copy_(weight)
            self.conv.bias.data.copy_(bias.repeat(4))

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            y = self.conv(x)
            return DepthToSpaceDCR.apply(F.relu(y) if self.relu else y, 2)

    return {"subpixel2x2": SubPixel2x2, "subpixel3x3": SubPixel3x3, "d2s": DepthToSpaceDCR}


def _rewrite_sequential(seq: Any, form: str, where: str) -> Any:
    from torch import nn

    cls = _modules()[form]
    layers = list(seq)
    out: list[nn.Module] = []
    i = 0
    while i < len(layers):
        m = layers[i]
        if not isinstance(m, nn.ConvTranspose2d):
            out.append(m)
            i += 1
            continue
        geometry = (m.kernel_size, m.stride, m.padding, m.output_padding, m.dilation, m.groups)
        if geometry != ((4, 4), (2, 2), (1, 1), (0, 0), (1, 1), 1):
            raise EdgeposeError(f"{where}.{i}: head rewrite supports ConvTranspose2d(k=4, s=2, p=1) only, got {m}")
        bn = layers[i + 1] if i + 1 < len(layers) and isinstance(layers[i + 1], nn.BatchNorm2d) else None
        j = i + 1 + (bn is not None)
        relu = j < len(layers) and isinstance(layers[j], nn.ReLU)
        if bn is not None and not bn.track_running_stats:
            raise EdgeposeError(f"{where}.{i + 1}: BatchNorm without running statistics cannot be folded")
        kernels, bias = folded_phase_kernels(m, bn)
        out.append(cls(kernels, bias, relu))
        i = j + relu
    return nn.Sequential(*out)


def rewrite_head(model: Any, form: str) -> Any:
    """A copy of ``model`` (eval mode) whose ``keypoint_head.deconv_layers`` take ``form``; ``model`` is untouched.

    ``"deconv"`` returns ``model`` itself (nothing rewritten). BatchNorm is folded with its running statistics,
    i.e. the result computes what ``model.eval()`` computes.
    """
    form = check_form(form)
    if form == "deconv":
        return model
    head = getattr(model, "keypoint_head", None)
    if head is None or not hasattr(head, "deconv_layers"):
        raise EdgeposeError(f"{type(model).__name__}: no keypoint_head.deconv_layers to rewrite")
    new = copy.deepcopy(model).eval()
    new.keypoint_head.deconv_layers = _rewrite_sequential(
        model.keypoint_head.deconv_layers, form, "keypoint_head.deconv_layers"
    )
    return new.eval()


# The person detector's one rewrite (its task asks for it, converters/tasks.py): its forward concatenates the three
# 1x1 head outputs (centre logit, w/h, offset), then slices the logit back out for the sigmoid. In an INT8 graph a
# Concat has ONE scale for all its inputs, so the logits (about -15..+5) set the scale of w, h and the offsets
# (0..1): TFLite INT8 fell to 6 dB SNR, box AP 0.17 of 0.37. Applying the sigmoid before the one Concat computes the
# same numbers (each channel goes through the very same ops) and leaves a Concat whose inputs all lie in 0..1.
DETECTOR_REWRITES = ["head: Concat(logit, wh, offset) -> Slice -> Sigmoid -> Concat rewritten as "
                     "Concat(Sigmoid(logit), wh, offset) (exact; the logits keep their own INT8 scale)"]


def rewrite_detector(model: Any) -> Any:
    """A module computing ``model``'s deployed output (a ``CenterNetDetector``) with the sigmoid before the one
    Concat (see :data:`DETECTOR_REWRITES`); ``model`` is untouched and shared (no copy of the weights)."""
    import torch

    head = getattr(model, "bbox_head", None)
    if head is None or not all(hasattr(head, n) for n in ("stem", "heatmap", "wh", "offset")):
        raise EdgeposeError(f"{type(model).__name__}: no CenterNet bbox_head (stem, heatmap, wh, offset) to rewrite")

    class SigmoidFirst(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.model = model

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            from edgepose.models import backbone_features

            m = self.model
            f = m.bbox_head.stem(m.neck(backbone_features(m.backbone, x)))
            return torch.cat([torch.sigmoid(m.bbox_head.heatmap(f)), m.bbox_head.wh(f), m.bbox_head.offset(f)], 1)

    return SigmoidFirst().eval()


__all__ = ["HEAD_FORMS", "AUTO", "REWRITES", "check_form", "rewrite_head", "folded_phase_kernels",
           "DETECTOR_REWRITES", "rewrite_detector"]
