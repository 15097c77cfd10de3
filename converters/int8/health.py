"""Calibration health check: does a calibration set look like what the model saw in training?

Format-free and before any quantisation: the PyTorch model runs on the calibration crops (forward hooks) and each
BatchNorm layer's *input* statistics, per channel (mean and std over the crops and positions), are compared with
the layer's own running statistics (what training fed it) and, when given, with the control split's (evaluation
data). Per layer and channel the distance is the mean shift in units of the reference std plus the log ratio of
the stds, ``sqrt(((mu - mu_ref) / sd_ref)^2 + ln(sd / sd_ref)^2)``; a layer's figure is the RMS over its
channels; the set's figure is the mean over layers (the worst layers are listed). Verdict on the larger of the
two set figures (vs running statistics, vs control): ``ok`` below :data:`DOUBTFUL`, ``doubtful`` below
:data:`UNREPRESENTATIVE`, else ``unrepresentative``, which convert and calibrate refuse unless told otherwise.

Thresholds: measured by ``benchmarks/calibration_health.py`` (``benchmarks/results/calibration_health.json``)
on the bundled set, crops of the synthetic val split and poor sets made from the sample images (washed out,
darkened, colour cast, noisy, tiny crops), beside each set's plain INT8 drop on the control split.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from edgepose.errors import EdgeposeError
from edgepose.processing import normalize

DOUBTFUL = 0.15  # doubtful from here: 3x the bundled set's figure (0.045; synthetic val crops 0.037)
UNREPRESENTATIVE = 0.50  # refused from here: real photos (0.46) quantise well, int8_control's hard case (0.56) not
EPS = 1e-5  # BatchNorm's own eps
BATCH = 16  # crops per forward pass
WORST = 5  # layers shown in the table
VERDICTS = ("ok", "doubtful", "unrepresentative")
MEND = ("use images like the deployment's (same camera, lighting, framing: 'edgepose calibrate --images DIR'), "
        "or calibrate without images: --calib distill")  # fmt: skip


def bn_layers(model: Any) -> list[tuple[str, Any]]:
    """(name, module) of every BatchNorm layer, in model order."""
    import torch

    return [(n, m) for n, m in model.named_modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]


def input_statistics(model: Any, inputs: np.ndarray, batch: int = BATCH) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Per BatchNorm layer, the per-channel (mean, std) of its input over ``inputs`` (float32 NCHW, normalised
    as the model takes them), accumulated in float64 over batches of ``batch``."""
    import torch

    layers = bn_layers(model)
    acc: dict[str, list] = {n: [0.0, 0.0, 0] for n, _ in layers}

    def hook(name: str):
        def pre(_module, args):
            x = args[0].detach().to(torch.float64)
            a = acc[name]
            a[0] = a[0] + x.sum(dim=(0, 2, 3)).numpy()
            a[1] = a[1] + (x * x).sum(dim=(0, 2, 3)).numpy()
            a[2] += x.shape[0] * x.shape[2] * x.shape[3]

        return pre

    handles = [m.register_forward_pre_hook(hook(n)) for n, m in layers]
    was_training = model.training
    model.eval()
    try:
        with torch.inference_mode():
            for a in range(0, len(inputs), batch):
                model(torch.from_numpy(np.ascontiguousarray(inputs[a : a + batch], dtype=np.float32)))
    finally:
        for h in handles:
            h.remove()
        model.train(was_training)
    out = {}
    for n, (s, ss, k) in acc.items():
        mean = s / k
        out[n] = (mean, np.sqrt(np.maximum(ss / k - mean * mean, 0.0)))
    return out


def running_statistics(model: Any) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Per BatchNorm layer, its running (mean, std): what the layer saw in training."""
    return {n: (m.running_mean.detach().double().numpy(), np.sqrt(m.running_var.detach().double().numpy()))
            for n, m in bn_layers(model)}  # fmt: skip


def layer_distance(stats: tuple[np.ndarray, np.ndarray], ref: tuple[np.ndarray, np.ndarray]) -> float:
    """RMS over channels of ``sqrt(((mu - mu_ref) / sd_ref)^2 + ln(sd / sd_ref)^2)`` (stds with BN's eps)."""
    mu, sd = stats
    mu_r, sd_r = ref
    sd_r = np.sqrt(sd_r**2 + EPS)
    z = (mu - mu_r) / sd_r
    r = np.log(np.sqrt(sd**2 + EPS) / sd_r)
    return float(np.sqrt(np.mean(z * z + r * r)))


def distances(stats: dict, ref: dict) -> dict[str, float]:
    return {n: layer_distance(stats[n], ref[n]) for n in stats if n in ref}


def verdict_of(figure: float) -> str:
    return VERDICTS[0] if figure < DOUBTFUL else VERDICTS[1] if figure < UNREPRESENTATIVE else VERDICTS[2]


@dataclass
class Health:
    """The check's result: per-layer distances to the running statistics (and to the control split's)."""

    layers: dict[str, float]  # vs running statistics
    control_layers: dict[str, float] = field(default_factory=dict)  # vs the control split's statistics
    num_crops: int = 0
    num_control: int = 0

    @property
    def figure(self) -> float:
        return float(np.mean(list(self.layers.values())))

    @property
    def control_figure(self) -> float | None:
        return float(np.mean(list(self.control_layers.values()))) if self.control_layers else None

    @property
    def verdict(self) -> str:
        return verdict_of(max(self.figure, self.control_figure or 0.0))

    def worst(self, k: int = WORST) -> list[str]:
        key = (lambda n: max(self.layers[n], self.control_layers.get(n, 0.0)))
        return sorted(self.layers, key=key, reverse=True)[:k]

    def summary(self) -> dict[str, Any]:
        """What the artifact metadata records (rounded: the embedded metadata must not change between runs)."""
        out: dict[str, Any] = {
            "verdict": self.verdict,
            "figure": round(self.figure, 3),
            "crops": self.num_crops,
            "thresholds": {"doubtful": DOUBTFUL, "unrepresentative": UNREPRESENTATIVE},
            "worst_layers": {n: round(self.layers[n], 3) for n in self.worst()},
        }
        if self.control_layers:
            out["control_figure"] = round(self.control_figure, 3)
            out["control_crops"] = self.num_control
            out["worst_layers_vs_control"] = {n: round(self.control_layers[n], 3) for n in self.worst()}
        return out

    def table(self) -> str:
        """A short console table: the set figures, the verdict and the worst layers."""
        ctl = self.control_figure
        head = (f"calibration health: {self.verdict} (figure {self.figure:.3f} vs BatchNorm running statistics"
                + (f", {ctl:.3f} vs the control split" if ctl is not None else "")
                + f"; doubtful from {DOUBTFUL:g}, unrepresentative from {UNREPRESENTATIVE:g}; {self.num_crops} crops)")
        rows = [f"  {'layer (BatchNorm input)':<44} {'vs running':>10}" + (f" {'vs control':>10}" if ctl else "")]
        for n in self.worst():
            rows.append(f"  {n:<44} {self.layers[n]:>10.3f}"
                        + (f" {self.control_layers.get(n, math.nan):>10.3f}" if ctl else ""))  # fmt: skip
        return "\n".join([head, *rows])

    def refusal(self, name: str) -> str:
        worst = ", ".join(f"{n} {self.layers[n]:.2f}" for n in self.worst(3))
        fig = max(self.figure, self.control_figure or 0.0)
        return (f"{name}: calibration set is unrepresentative (health figure {fig:.2f}"
                f" >= {UNREPRESENTATIVE:g}; worst BatchNorm inputs: {worst}); {MEND}; "
                "--allow-poor-calib uses it anyway")  # fmt: skip


def assess(model: Any, spec: Any, crops: np.ndarray, control_crops: np.ndarray | None = None,
           max_control: int = 64) -> Health:  # fmt: skip
    """The health of ``crops`` (uint8 NHWC RGB) for ``model``; with ``control_crops``, also against the control
    split's statistics (its first ``max_control`` crops)."""
    if len(crops) == 0:
        raise EdgeposeError("calibration health: no crops to check")
    stats = input_statistics(model, normalize(crops, spec.mean, spec.std))
    h = Health(distances(stats, running_statistics(model)), num_crops=int(len(crops)))
    if control_crops is not None and len(control_crops):
        ctl = control_crops[:max_control]
        h.control_layers = distances(stats, input_statistics(model, normalize(ctl, spec.mean, spec.std)))
        h.num_control = int(len(ctl))
    return h


def enforce(h: Health, name: str, allow: bool = False, source: dict | None = None) -> None:
    """Refuse an unrepresentative set with one line (unless ``allow``). A distilled set (``source`` kind
    ``distilled``) is reported, never refused: it holds no images to replace, it is the mend."""
    if h.verdict == VERDICTS[2] and not allow and (source or {}).get("kind") != "distilled":
        raise EdgeposeError(h.refusal(name))


__all__ = ["Health", "assess", "enforce", "input_statistics", "running_statistics", "layer_distance", "bn_layers",
           "DOUBTFUL", "UNREPRESENTATIVE", "MEND"]  # fmt: skip
