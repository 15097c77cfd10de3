"""Evaluate any runtime on an evaluation set, scored as mmpose 0.x scores it.

``evaluate`` reads the set (:mod:`edgepose.datasets`), runs every crop through the one shared
:class:`~edgepose.processing.TopDownPipeline` (crop, normalise, flip test, decode), batching crops across
images and reading each image once, and hands the keypoints to :mod:`edgepose.metrics`.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .datasets import DATASET_KINDS, Dataset, load_dataset
from .errors import EdgeposeError
from .metrics import rescore
from .processing import Infer, TopDownPipeline, input_kind_of, read_image
from .spec import DATASETS, ModelSpec

__all__ = [
    "EvalResult", "evaluate", "evaluate_dataset", "resolve_data", "default_data",
    "predict_dataset", "score", "result_for", "check_dataset",
]  # fmt: skip


@dataclass
class EvalResult:
    metrics: dict[str, float | None]
    predictions: list[dict]
    info: dict[str, Any] = field(default_factory=dict)  # timing-free facts: dataset, counts, flip test, files

    def to_json(self) -> dict[str, Any]:
        """The metrics file: facts first, then ``metrics`` (fractions 0..1, EPE in pixels)."""
        return {**self.info, "metrics": self.metrics}


def default_data(spec: ModelSpec) -> tuple[str, Path, Path] | None:
    """For models edgepose trains on synthetic figures (``package:`` checkpoints): the synthetic val split."""
    if not spec.checkpoint.startswith("package:"):
        return None
    from .synthetic import ensure_split

    ann, images = ensure_split("val")
    return spec.dataset, Path(ann), Path(images)


class _Progress:
    """tqdm on stderr when available, else a plain counter; silent when disabled."""

    def __init__(self, total: int, enabled: bool, desc: str):
        self.bar = None
        self.total, self.done, self.enabled, self.desc = total, 0, enabled, desc
        if enabled:
            try:
                from tqdm import tqdm

                self.bar = tqdm(total=total, desc=desc, unit="box", file=sys.stderr, dynamic_ncols=True)
            except ImportError:
                pass

    def update(self, n: int) -> None:
        self.done += n
        if self.bar is not None:
            self.bar.update(n)
        elif self.enabled:
            print(f"\r{self.desc}: {self.done}/{self.total}", end="", file=sys.stderr, flush=True)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
        elif self.enabled:
            print(file=sys.stderr)


def predict_dataset(
    spec: ModelSpec,
    infer: Infer,
    ds: Dataset,
    flip_test: bool = True,
    batch_size: int = 16,
    progress: bool = True,
    decoder: str = "default",
    mode: str = "pipelined",
    workers: int = 2,
    facts: dict | None = None,
) -> np.ndarray:
    """Keypoints ``(N, K, 3)`` for every sample, in sample order.

    Samples are grouped by image (each image read once); crops from consecutive images share batches of
    ``batch_size``. ``mode="serial"`` runs read, crop, inference and decode one after the other (the
    reference); ``"pipelined"`` (:mod:`edgepose.pipelined`, ``workers`` threads; 0: the calling thread, with an
    engine's async face) overlaps them and gives the same keypoints bit for bit. ``facts`` (a dict), when
    given, receives what ran.
    """
    if batch_size < 1:
        raise EdgeposeError(f"batch size must be at least 1, got {batch_size}")
    if mode not in ("serial", "pipelined"):
        raise EdgeposeError(f"eval mode {mode!r}: choose serial or pipelined")
    if mode == "pipelined":
        return _predict_pipelined(spec, infer, ds, flip_test, batch_size, progress, decoder, workers, facts)
    if facts is not None:
        facts.update(mode="serial")
    pipe = TopDownPipeline(spec, flip_test=flip_test, decoder=decoder, input_kind=input_kind_of(infer))
    n = len(ds.samples)
    out = np.zeros((n, spec.num_keypoints, 3), dtype=np.float32)
    centers = np.stack([s.center for s in ds.samples]).astype(np.float32)
    scales = np.stack([s.scale for s in ds.samples]).astype(np.float32)
    by_image: dict[Path, list[int]] = {}
    for i, s in enumerate(ds.samples):
        by_image.setdefault(s.image, []).append(i)

    bar = _Progress(n, progress, f"eval {ds.name}")
    crops: list[np.ndarray] = []
    index: list[int] = []

    def run(count: int) -> None:
        batch = np.concatenate(crops) if len(crops) > 1 else crops[0]
        idx = np.asarray(index)
        take, rest = batch[:count], batch[count:]
        sel = idx[:count]
        heatmaps = pipe.forward(infer, np.ascontiguousarray(take))
        if heatmaps.shape[1] != spec.num_keypoints:
            raise EdgeposeError(
                f"the model returned {heatmaps.shape[1]} heatmaps, {spec.name} has {spec.num_keypoints} keypoints"
            )
        out[sel] = pipe.decode(heatmaps, centers[sel], scales[sel])
        crops.clear()
        index.clear()
        if len(rest):
            crops.append(rest)
            index.extend(idx[count:].tolist())
        bar.update(count)

    try:
        for image_path, idx in by_image.items():
            image = read_image(image_path)
            crops.append(pipe.preprocess(image, centers[idx], scales[idx]))
            index.extend(idx)
            while len(index) >= batch_size:
                run(batch_size)
        if index:
            run(len(index))
    finally:
        bar.close()
    return out


def _predict_pipelined(spec, infer, ds, flip_test, batch_size, progress, decoder, workers, facts) -> np.ndarray:
    from .pipelined import Facts, plan_items, predict_items

    pipe = TopDownPipeline(spec, flip_test=flip_test, decoder=decoder, input_kind=input_kind_of(infer))
    centers = np.stack([s.center for s in ds.samples]).astype(np.float32)
    scales = np.stack([s.scale for s in ds.samples]).astype(np.float32)
    items = plan_items(ds.samples, centers, scales)
    out = np.zeros((len(ds.samples), spec.num_keypoints, 3), dtype=np.float32)
    bar = _Progress(len(ds.samples), progress, f"eval {ds.name}")
    got = Facts()
    try:
        keypoints = predict_items(pipe, infer, items, batch_size, workers=workers, progress=bar.update, facts=got)
    finally:
        bar.close()
    out[np.concatenate([it.indices for it in items])] = keypoints
    if facts is not None:
        facts.update(got.to_dict())
    return out


def score(ds: Dataset, keypoints: np.ndarray, spec: ModelSpec | None = None) -> tuple[dict, np.ndarray]:
    """(metrics, per-instance scores) for predicted ``keypoints`` (N, K, 3) on ``ds``, as mmpose scores them;
    the dataset's own registered scorer computes the metrics."""
    box_scores = np.asarray([s.score for s in ds.samples], dtype=np.float32)
    inst_scores = rescore(keypoints, box_scores)
    return DATASET_KINDS[ds.name].score(ds, keypoints), inst_scores


def _predictions(ds: Dataset, keypoints: np.ndarray, scores: np.ndarray) -> list[dict]:
    preds = []
    for s, kp, sc in zip(ds.samples, keypoints, scores):
        p: dict[str, Any] = {"image_id": s.image_id}
        if s.annotation_id is not None:
            p["annotation_id"] = s.annotation_id
        p.update(DATASET_KINDS[ds.name].prediction_fields)
        p.update(
            image=s.image.name,
            bbox=[float(v) for v in s.bbox],
            center=[float(v) for v in s.center],
            scale=[float(v) for v in s.scale],
            keypoints=[float(v) for v in kp.reshape(-1)],
            score=float(sc),
            box_score=float(s.score),
        )
        preds.append(p)
    return preds


def resolve_data(
    spec: ModelSpec, dataset: str | None = None, ann: str | Path | None = None, images: str | Path | None = None
) -> tuple[str, Path, Path]:
    """(dataset, ann, images) with the defaults filled in: the spec's dataset; for the demo model the
    synthetic val split when neither file is given."""
    if ann is None or images is None:
        default = default_data(spec) if ann is None and images is None else None
        if default is None:
            raise EdgeposeError(f"model {spec.name}: give the annotation file and the image folder to evaluate on")
        dataset = dataset or default[0]
        ann, images = default[1], default[2]
    dataset = dataset or spec.dataset
    if dataset not in DATASETS:
        raise EdgeposeError(f"unknown dataset {dataset!r}; choose one of {', '.join(DATASETS)}")
    if DATASETS[dataset].num_keypoints != spec.num_keypoints:
        raise EdgeposeError(
            f"model {spec.name} predicts {spec.num_keypoints} keypoints, dataset {dataset} has "
            f"{DATASETS[dataset].num_keypoints}"
        )
    return dataset, Path(ann), Path(images)


def evaluate(
    spec: ModelSpec,
    infer: Infer,
    dataset: str | None = None,
    ann: str | Path | None = None,
    images: str | Path | None = None,
    bbox_file: str | Path | None = None,
    flip_test: bool = True,
    batch_size: int = 16,
    progress: bool = True,
    det_bbox_thr: float = 0.0,
    mode: str = "pipelined",
) -> EvalResult:
    """Run ``infer`` (NCHW float32 -> NKHW heatmaps, e.g. a Runtime) over a set and score it as mmpose does.

    ``dataset`` defaults to the spec's; ``ann``/``images`` default, for the demo model, to the synthetic val
    split. Predictions are every instance before OKS-NMS, with mmpose's rescored ``score``.
    """
    dataset, ann, images = resolve_data(spec, dataset, ann, images)
    ds = load_dataset(dataset, ann, images, spec, bbox_file, det_bbox_thr)
    return evaluate_dataset(spec, infer, ds, flip_test, batch_size, progress, det_bbox_thr, mode=mode)


def check_dataset(spec: ModelSpec, ds: Dataset) -> None:
    if DATASETS[ds.name].num_keypoints != spec.num_keypoints:
        raise EdgeposeError(
            f"model {spec.name} predicts {spec.num_keypoints} keypoints, dataset {ds.name} has "
            f"{DATASETS[ds.name].num_keypoints}"
        )


def evaluate_dataset(
    spec: ModelSpec,
    infer: Infer,
    ds: Dataset,
    flip_test: bool = True,
    batch_size: int = 16,
    progress: bool = True,
    det_bbox_thr: float = 0.0,
    mode: str = "pipelined",
    workers: int = 2,
) -> EvalResult:
    """:func:`evaluate` on an already loaded :class:`~edgepose.datasets.Dataset`."""
    check_dataset(spec, ds)
    facts: dict[str, Any] = {}
    keypoints = predict_dataset(spec, infer, ds, flip_test, batch_size, progress, mode=mode, workers=workers,
                                facts=facts)  # fmt: skip
    return result_for(spec, ds, keypoints, flip_test, batch_size, det_bbox_thr, facts)


def result_for(
    spec: ModelSpec, ds: Dataset, keypoints: np.ndarray, flip_test: bool, batch_size: int, det_bbox_thr: float,
    executor: dict[str, Any] | None = None,
) -> EvalResult:
    """The :class:`EvalResult` of predicted ``keypoints`` on ``ds`` (scored here, once); ``executor`` says how
    the keypoints were computed (serial, pipelined, on Ray)."""
    metrics, inst_scores = score(ds, keypoints, spec)
    info: dict[str, Any] = {
        "model": spec.name,
        "dataset": ds.name,
        "metric": DATASETS[ds.name].metric,
        "headline": DATASET_KINDS[ds.name].headline,
        "ann": str(ds.ann_file),
        "images": str(ds.image_dir),
        "boxes": "detections" if ds.bbox_file else "ground truth",
        "bbox_file": str(ds.bbox_file) if ds.bbox_file else None,
        "det_bbox_thr": float(det_bbox_thr) if ds.bbox_file else None,
        "num_samples": len(ds),
        "num_images": ds.num_images,
        "flip_test": bool(flip_test),
        "batch_size": int(batch_size),
        **ds.notes,
        "executor": dict(executor or {}),
    }
    return EvalResult(metrics, _predictions(ds, keypoints, inst_scores), info)
