"""Parity of an artifact against PyTorch on held-out crops: heatmap error, SNR and decoded-keypoint agreement.

Figures (all on raw heatmaps, no flip, both sides run on the same float32 NCHW inputs):

* ``max_abs_err`` / ``mean_abs_err``: over every heatmap value; ``rel_max_err`` = max_abs_err / max |reference|.
* ``snr_db`` = 10 log10(sum ref^2 / sum (out - ref)^2), capped at 200.
* keypoints: both sides decoded with mmpose's 'default' rule in heatmap pixels (argmax + quarter offset,
  :mod:`edgepose.processing`). ``kp_mean_px`` and ``kp_within`` (share within 0.5 px) are taken over the
  *confident* keypoints (reference peak >= 0.2, mmpose's ``vis_thr``): an untrained or absent joint has no
  peak to agree on, and its argmax is noise. ``kp_count`` says how many there were.

The figures are measured with the engine computing in float32 where it can be told to (OpenVINO's
``inference_precision="f32"``: its CPU plugin otherwise picks bf16 on AMX CPUs, where 1e-4 cannot hold);
the figures of the engine's default precision are recorded beside them under ``default`` (not checked).

Tolerances (a precision outside its tolerance fails the conversion unless ``--allow-parity-failure``):

* fp32: rel_max_err <= 1e-4.
* fp16: snr_db >= 40 and, over >= 20 confident keypoints, kp_within >= 0.95.
* int8: snr_db >= 15 and, over >= 20 confident keypoints, kp_within >= 0.80.

The keypoint criteria apply only when there are enough confident keypoints (a trained model); with random
weights only the heatmap criteria decide.

What the trained demo model gives (16 holdout crops, 249 confident keypoints, 32-100 calibration crops, this
x86 machine): fp32 rel 6e-7..1e-6 (SNR ~125 dB); fp16 SNR 65-66 dB, 100 % of keypoints within 0.5 px;
int8 SNR 18.0-18.2 dB (TFLite), 19.0-19.2 dB (ONNX Runtime QDQ), 20.5-20.8 dB (OpenVINO/NNCF), 94-96 % of
keypoints within 0.5 px. The int8 bounds leave ~3 dB and ~14 points of margin for other checkpoints and
calibration sets; the accuracy that matters (AP, PCK) is measured by ``edgepose bench``.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from edgepose.processing import box_to_center_scale, crop, get_max_preds, quarter_offset
from edgepose.spec import ModelSpec
from edgepose.synthetic import render_image

PARITY_SEED = 4242  # synthetic parity crops when a calibration file has no holdout (train 777, val 20241)
CONFIDENT = 0.2
MIN_KEYPOINTS = 20
KP_PX = 0.5


@dataclass(frozen=True)
class Tolerance:
    max_rel_err: float | None = None
    min_snr_db: float | None = None
    min_kp_within: float | None = None

    def describe(self) -> str:
        parts = []
        if self.max_rel_err is not None:
            parts.append(f"rel<={self.max_rel_err:g}")
        if self.min_snr_db is not None:
            parts.append(f"SNR>={self.min_snr_db:g}dB")
        if self.min_kp_within is not None:
            parts.append(f"kp<=0.5px>={self.min_kp_within:.0%}")
        return ", ".join(parts)


TOLERANCES: dict[str, Tolerance] = {
    "fp32": Tolerance(max_rel_err=1e-4),
    "fp16": Tolerance(min_snr_db=40.0, min_kp_within=0.95),
    "int8": Tolerance(min_snr_db=15.0, min_kp_within=0.80),
}


def decode_hm(heatmaps: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Keypoints in heatmap pixels (N, K, 2) and peak values (N, K) with mmpose's 'default' rule."""
    coords, maxvals = get_max_preds(heatmaps)
    return quarter_offset(heatmaps, coords), maxvals[..., 0]


def _tensor_figures(reference: np.ndarray, output: np.ndarray, what: str) -> dict[str, Any]:
    """The tensor figures every task's parity starts from: errors, relative max error, SNR (capped at 200 dB)."""
    ref = np.asarray(reference, dtype=np.float64)
    out = np.asarray(output, dtype=np.float64)
    if ref.shape != out.shape:
        raise ValueError(f"{what} shapes differ: reference {ref.shape}, artifact {out.shape}")
    err = out - ref
    ref_max = float(np.abs(ref).max())
    noise = float((err**2).sum())
    snr = 200.0 if noise == 0 else min(200.0, 10 * math.log10(max(float((ref**2).sum()), 1e-300) / noise))
    return {
        "n": int(ref.shape[0]),
        "max_abs_err": float(np.abs(err).max()),
        "mean_abs_err": float(np.abs(err).mean()),
        "ref_max_abs": ref_max,
        "rel_max_err": float(np.abs(err).max() / ref_max) if ref_max > 0 else float(np.abs(err).max()),
        "snr_db": round(snr, 3),
    }


def _tensor_failures(parity: dict[str, Any], tol: Tolerance) -> list[str]:
    """The tensor criteria of ``tol`` that ``parity`` misses."""
    failed = []
    if tol.max_rel_err is not None and not parity["rel_max_err"] <= tol.max_rel_err:
        failed.append(f"relative max error {parity['rel_max_err']:.2e} > {tol.max_rel_err:g}")
    if tol.min_snr_db is not None and not parity["snr_db"] >= tol.min_snr_db:
        failed.append(f"SNR {parity['snr_db']:.1f} dB < {tol.min_snr_db:g} dB")
    return failed


def compare(reference: np.ndarray, output: np.ndarray) -> dict[str, Any]:
    """The parity figures of ``output`` against ``reference`` heatmaps (both N, K, H, W)."""
    figures = _tensor_figures(reference, output, "heatmap")
    kp_ref, val_ref = decode_hm(reference.astype(np.float32))
    kp_out, _ = decode_hm(output.astype(np.float32))
    dist = np.linalg.norm(kp_out - kp_ref, axis=-1)
    conf = val_ref >= CONFIDENT
    return {
        **figures,
        "kp_count": int(conf.sum()),
        "kp_mean_px": float(dist[conf].mean()) if conf.any() else None,
        "kp_within": float((dist[conf] <= KP_PX).mean()) if conf.any() else None,
        "kp_all_mean_px": float(dist.mean()),
        "kp_all_within": float((dist <= KP_PX).mean()),
    }


def check(parity: dict[str, Any], precision: str) -> list[str]:
    """The criteria of ``precision`` that ``parity`` misses (empty: it passes)."""
    tol = TOLERANCES[precision]
    failed = _tensor_failures(parity, tol)
    if tol.min_kp_within is not None and parity["kp_count"] >= MIN_KEYPOINTS:
        if not parity["kp_within"] >= tol.min_kp_within:
            failed.append(f"{parity['kp_within']:.1%} of keypoints within 0.5 px < {tol.min_kp_within:.0%}")
    return failed


def tolerance_dict(precision: str) -> dict[str, Any]:
    d = asdict(TOLERANCES[precision])
    d.update(confident_peak=CONFIDENT, min_keypoints=MIN_KEYPOINTS, kp_px=KP_PX)
    return d


def _default_cell(p: dict[str, Any]) -> str:
    """What the engine's default precision gives, beside the checked (float32) figures."""
    d = p.get("default")
    if not d:
        return "-"
    if d.get("same_as_checked"):
        return f"same ({d.get('precision_used')})"
    return f"{d.get('precision_used')}: SNR {d['snr_db']:.1f} dB"


def format_table(rows: list[dict[str, Any]]) -> str:
    """Rows of {artifact, precision, size_mb, parity, failed} as an aligned text table."""
    head = ("artifact", "MB", "max|err|", "rel", "mean|err|", "SNR dB", "kp px", "kp<=0.5px", "tolerance", "ok",
            "engine default")  # fmt: skip
    lines = [head]
    for r in rows:
        p = r["parity"]
        if "box_count" in p:  # a detector: the box agreement in the keypoint columns (mean IoU, share at BOX_IOU)
            kp = f"IoU {p['box_mean_iou']:.3f}" if p["box_mean_iou"] is not None else "-"
            within = (f"{p['box_within']:.1%} ({p['box_count']} boxes)" if p["box_within"] is not None
                      else f"- ({p['box_count']} boxes)")  # fmt: skip
            tol = DETECTION_TOLERANCES[r["precision"]].describe().replace("kp<=0.5px", f"box IoU>={BOX_IOU:g}")
        else:
            kp = f"{p['kp_mean_px']:.3f}" if p["kp_mean_px"] is not None else "-"
            within = f"{p['kp_within']:.1%} ({p['kp_count']})" if p["kp_within"] is not None else f"- ({p['kp_count']})"
            tol = TOLERANCES[r["precision"]].describe()
        lines.append((
            r["artifact"], f"{r['size_mb']:.1f}", f"{p['max_abs_err']:.2e}", f"{p['rel_max_err']:.2e}",
            f"{p['mean_abs_err']:.2e}", f"{p['snr_db']:.1f}", kp, within, tol,
            "yes" if not r["failed"] else "NO", _default_cell(p),
        ))  # fmt: skip
    widths = [max(len(str(row[i])) for row in lines) for i in range(len(head))]
    text = ["  ".join(str(c).ljust(w) for c, w in zip(row, widths)).rstrip() for row in lines]
    text.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(text)


def synthetic_parity_crops(spec: ModelSpec, n: int, seed: int = PARITY_SEED) -> np.ndarray:
    """``n`` crops of freshly rendered synthetic figures (a seed neither split uses), for parity inputs."""
    w, h = spec.input_size
    out = np.empty((n, h, w, 3), dtype=np.uint8)
    for i in range(n):
        img, persons = render_image(np.random.default_rng([seed, i]))
        box = persons[0]["bbox"] if persons else [0, 0, img.shape[1], img.shape[0]]
        c, s = box_to_center_scale(np.asarray([box], np.float32), w / h, spec.box_padding)
        out[i] = crop(img, c[0], s[0], spec.input_size)
    return out


# ----------------------------------------------------------------------------------------- person detector
# A detector's parity (``spec.task == "detection"``): the same tensor figures on its one [N, 5, H/4, W/4] output,
# plus box-level agreement: both outputs decoded by edgepose.detection (peaks, the spec's score threshold, NMS,
# in input pixels), and every *confident* reference box (score >= BOX_CONFIDENT, what `edgepose run` keeps by
# default) matched to the artifact's box of highest IoU. ``box_within``: the share matched at IoU >= BOX_IOU;
# ``box_mean_iou`` their mean IoU; ``box_score_max_err`` the largest score difference of a matched pair;
# ``box_count`` how many confident reference boxes there were. The box criterion applies from MIN_BOXES boxes.
BOX_CONFIDENT = 0.3
BOX_IOU = 0.9
MIN_BOXES = 10
DETECTION_TOLERANCES: dict[str, Tolerance] = {
    "fp32": Tolerance(max_rel_err=1e-4, min_kp_within=0.99),
    "fp16": Tolerance(min_snr_db=40.0, min_kp_within=0.95),
    "int8": Tolerance(min_snr_db=15.0, min_kp_within=0.75),
}
# Measured (bundled detector, 16 parity frames, 41 confident boxes, 100 calibration frames, this x86 machine):
# INT8 SNR 29.7-32.1 dB, 92.7-95.1 % of boxes at IoU >= 0.9 (mean IoU 0.968); before the detector's export
# rewrite (sigmoid before the Concat, converters/transforms.py) TFLite INT8 gave 6.3 dB and 53.7 %.


def compare_boxes(reference: np.ndarray, output: np.ndarray, spec: ModelSpec) -> dict[str, Any]:
    """The parity figures of a detector's ``output`` against ``reference`` (both N, 5, H/4, W/4)."""
    from edgepose.detection import box_iou, decode_centernet, nms

    figures = _tensor_figures(reference, output, "output")
    ref = np.asarray(reference, dtype=np.float32)
    out = np.asarray(output, dtype=np.float32)
    ious: list[float] = []
    score_err: list[float] = []
    n_out = 0
    for r, o in zip(ref, out):
        rb = nms(decode_centernet(r[None], spec.input_size, spec.score_threshold))
        ob = nms(decode_centernet(o[None], spec.input_size, spec.score_threshold))
        n_out += int((ob[:, 4] >= BOX_CONFIDENT).sum())
        rb = rb[rb[:, 4] >= BOX_CONFIDENT]
        if not len(rb):
            continue
        if not len(ob):
            ious += [0.0] * len(rb)
            continue
        m = box_iou(rb, ob)
        best = m.argmax(1)
        ious += [float(v) for v in m.max(1)]
        score_err += [float(v) for v in np.abs(rb[:, 4] - ob[best, 4])]
    iou = np.asarray(ious)
    return {
        **figures,
        "box_count": int(len(iou)),
        "box_count_artifact": n_out,
        "box_within": float((iou >= BOX_IOU).mean()) if len(iou) else None,
        "box_mean_iou": float(iou.mean()) if len(iou) else None,
        "box_score_max_err": float(max(score_err)) if score_err else None,
    }


def check_boxes(parity: dict[str, Any], precision: str) -> list[str]:
    """The criteria of ``precision`` a detector's ``parity`` misses (empty: it passes)."""
    tol = DETECTION_TOLERANCES[precision]
    failed = _tensor_failures(parity, tol)
    if tol.min_kp_within is not None and parity["box_count"] >= MIN_BOXES:
        if not parity["box_within"] >= tol.min_kp_within:
            failed.append(f"{parity['box_within']:.1%} of boxes at IoU >= {BOX_IOU:g} < {tol.min_kp_within:.0%}")
    return failed


def box_tolerance_dict(precision: str) -> dict[str, Any]:
    tol = DETECTION_TOLERANCES[precision]
    return {"max_rel_err": tol.max_rel_err, "min_snr_db": tol.min_snr_db, "min_box_within": tol.min_kp_within,
            "box_iou": BOX_IOU, "confident_score": BOX_CONFIDENT, "min_boxes": MIN_BOXES}


def scene_parity_frames(spec: ModelSpec, n: int) -> np.ndarray:
    """``n`` letterboxed synthetic scenes for a detector's parity: the ``scenes_train`` generator past the split's
    last image (rendered, never trained on; the same frames the default detector calibration set holds out)."""
    from edgepose.calibration import scene_frames
    from edgepose.synthetic import SCENE_SPLITS

    count = SCENE_SPLITS["scenes_train"][0]
    return scene_frames(spec, range(count, count + n))
