"""Calibration without images: distilled data (ZeroQ / data-free quantisation).

Input tensors start as seeded Gaussian noise and are optimised with Adam so that, layer by layer, the batch
statistics of every BatchNorm layer's input match the layer's running statistics (what it saw in training):
``sum over BN layers of ||mu - mu_bn||^2 + ||sigma - sigma_bn||^2``. The inputs live in the model's normalised
space and are kept inside what a uint8 crop can give (clamped after each step); the result is rounded to uint8
RGB crops, so that a distilled set is an ordinary calibration set (``.npz``, read by
:func:`edgepose.calibration.read_calibration`, fed as uint8 to ``--input uint8`` artifacts).

Bounded in time on a small CPU: most steps run at half the input resolution (4x cheaper; coarse structure and
the per-channel statistics of the later layers), then a few at full resolution on the upsampled result. Seeded:
the same model, count, steps and seed give identical crops (one thread, deterministic kernels).
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

import numpy as np

from edgepose.calibration import FORMAT_VERSION, CalibrationSet, read_calibration, write_calibration
from edgepose.errors import EdgeposeError
from edgepose.files import cache_dir
from edgepose.processing import normalize

from .health import bn_layers

log = logging.getLogger(__name__)

NUM = 32  # distilled calibration crops (default)
HOLDOUT = 0  # distilled parity crops (0: convert checks parity on its synthetic crops)
STEPS = 40  # Adam steps at half resolution
FINE_STEPS = 5  # Adam steps at full resolution
LR = 0.1
BATCH = 16  # crops optimised together (the statistics matched are this batch's)
SEED = 0


def _bn_loss(model: Any, x: Any) -> Any:
    """Forward ``x``; the sum over BatchNorm layers of the squared distances of the batch input statistics."""
    import torch

    terms: list = []

    def pre(module, args):
        a = args[0]
        mu = a.mean(dim=(0, 2, 3))
        sd = torch.sqrt(a.var(dim=(0, 2, 3), unbiased=False) + module.eps)
        terms.append(((mu - module.running_mean) ** 2).sum()
                     + ((sd - torch.sqrt(module.running_var + module.eps)) ** 2).sum())  # fmt: skip

    handles = [m.register_forward_pre_hook(pre) for _, m in bn_layers(model)]
    try:
        model(x)
    finally:
        for h in handles:
            h.remove()
    return torch.stack(terms).sum()


def distill_inputs(model: Any, spec: Any, num: int, seed: int = SEED, steps: int = STEPS,
                   fine_steps: int = FINE_STEPS, batch: int = BATCH, lr: float = LR) -> np.ndarray:  # fmt: skip
    """``num`` distilled crops (uint8 NHWC RGB) for ``model``; the same arguments give the same crops."""
    import torch
    import torch.nn.functional as F

    if num < 1:
        raise EdgeposeError(f"distilled data: the count must be at least 1, got {num}")
    w, h = spec.input_size
    mean = torch.tensor(spec.mean, dtype=torch.float32).view(1, 3, 1, 1)
    std = torch.tensor(spec.std, dtype=torch.float32).view(1, 3, 1, 1)
    lo, hi = (0 - mean) / std, (255 - mean) / std
    was_training, grads = model.training, [p.requires_grad for p in model.parameters()]
    threads = torch.get_num_threads()
    model.eval()
    for p in model.parameters():
        p.requires_grad_(False)
    out = np.empty((num, h, w, 3), np.uint8)
    try:
        for a in range(0, num, batch):
            n = min(batch, num - a)
            g = torch.Generator().manual_seed(int(seed) * 1_000_003 + a)
            x = F.interpolate(torch.randn(n, 3, h // 8, w // 8, generator=g), size=(h // 2, w // 2), mode="bilinear",
                              align_corners=False)  # smooth noise: image-like low frequencies
            for size, k in (((h // 2, w // 2), steps), ((h, w), fine_steps)):
                if x.shape[2:] != size:
                    x = F.interpolate(x.detach(), size=size, mode="bilinear", align_corners=False)
                x = torch.max(torch.min(x.detach(), hi), lo).requires_grad_(True)
                opt = torch.optim.Adam([x], lr=lr)
                for _ in range(k):
                    opt.zero_grad()
                    _bn_loss(model, x).backward()
                    opt.step()
                    with torch.no_grad():
                        x.copy_(torch.max(torch.min(x, hi), lo))
            pix = (x.detach() * std + mean).round().clamp(0, 255).to(torch.uint8)
            out[a : a + n] = pix.permute(0, 2, 3, 1).numpy()
    finally:
        torch.set_num_threads(threads)
        model.train(was_training)
        for p, r in zip(model.parameters(), grads):
            p.requires_grad_(r)
    return out


def bn_loss_of(model: Any, spec: Any, crops: np.ndarray) -> float:
    """The distillation objective of ``crops`` (uint8 NHWC), for comparing sets (mean over batches of 16)."""
    import torch

    x = normalize(crops, spec.mean, spec.std)
    with torch.inference_mode():
        losses = [float(_bn_loss(model, torch.from_numpy(x[a : a + BATCH]))) for a in range(0, len(x), BATCH)]
    return float(np.mean(losses))


def distilled_set(model: Any, spec: Any, num: int = NUM, holdout: int = HOLDOUT, seed: int = SEED, steps: int = STEPS,
                  fine_steps: int = FINE_STEPS, source: dict | None = None) -> CalibrationSet:  # fmt: skip
    """A calibration set of distilled crops (``holdout`` more, with another seed, for the parity check)."""
    t0 = time.perf_counter()
    crops = distill_inputs(model, spec, num, seed, steps, fine_steps)
    held = (distill_inputs(model, spec, holdout, seed + 7919, steps, fine_steps) if holdout
            else np.zeros((0,) + crops.shape[1:], np.uint8))  # fmt: skip
    meta = {"format_version": FORMAT_VERSION, "model": spec.name, "input_size": list(spec.input_size),
            "layout": "NHWC", "color": "RGB", "num": num, "holdout": holdout, "seed": seed,
            "source": {"kind": "distilled", "method": "BatchNorm statistics matching (ZeroQ)", "steps": steps,
                       "fine_steps": fine_steps, "lr": LR, "batch": BATCH, **(source or {})},
            "images": [], "holdout_images": []}  # fmt: skip
    log.info("distilled %d + %d crops in %.1f s", num, holdout, time.perf_counter() - t0)
    return CalibrationSet(crops, held, meta)


def cached_distilled_set(spec: Any, checkpoint: str | Path | None, sha256: str, num: int = NUM,
                         seed: int = SEED) -> CalibrationSet:  # fmt: skip
    """``convert --calib distill``: the distilled set of this checkpoint, made once and cached
    (``~/.cache/edgepose/calibration/distill_<sha256>_<num>_<seed>.npz``; reproducible, so the cache is exact)."""
    path = cache_dir("calibration") / f"distill_{sha256[:16]}_{num}_{seed}_{STEPS}_{FINE_STEPS}.npz"
    if path.is_file():
        return read_calibration(path, spec)
    from edgepose.models import load_model

    model = load_model(spec, str(checkpoint) if checkpoint else None, progress=False)
    log.info("distilling %d calibration crops from %s's BatchNorm statistics (once, cached)", num, spec.name)
    cset = distilled_set(model, spec, num, HOLDOUT, seed, source={"checkpoint_sha256": sha256})
    write_calibration(path, cset)
    return read_calibration(path, spec)


__all__ = ["distill_inputs", "distilled_set", "cached_distilled_set", "bn_loss_of", "NUM", "HOLDOUT", "SEED"]
