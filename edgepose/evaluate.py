"""Evaluate any runtime on an evaluation set, scored as mmpose 0.x scores it.

``evaluate`` reads the set (:mod:`edgepose.datasets`), runs every crop through the one shared
:class:`~edgepose.processing.TopDownPipeline` (crop, normalise, flip test, decode), batching crops across
images and reading each image once, and hands the keypoints to :mod:`edgepose.metrics`. How it runs (flip
test, batch size, serial or pipelined, progress) is one :class:`EvalOptions`; every function here takes it,
or its fields as keyword arguments.
"""

from __future__ import annotations

import dataclasses
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .datasets import DATASET_KINDS, Dataset, load_dataset, resolve_data
from .errors import EdgeposeError
from .metrics import rescore
from .processing import Infer, TopDownPipeline, input_kind_of, read_image
from .spec import DATASETS, ModelSpec

__all__ = [
    "EvalOptions", "EvalResult", "Progress", "evaluate", "evaluate_dataset", "predict_dataset", "score",
    "result_for", "check_dataset",
]  # fmt: skip


@dataclass(frozen=True)
class EvalOptions:
    """How an evaluation runs (not what it runs on); the one place these knobs are declared."""

    flip_test: bool = True
    batch_size: int = 16  # crops per inference call
    progress: bool = True  # a progress bar (:class:`Progress`) on stderr
    det_bbox_thr: float = 0.0  # detections below this score are not evaluated (with a bbox file)
    mode: str = "pipelined"  # "serial": read, crop, infer, decode one after the other (the reference)
    workers: int = 2  # pipelined: threads beside the engine (0: the calling thread, with an async engine)
    decoder: str = "default"

    @classmethod
    def of(cls, options: EvalOptions | None = None, **fields: Any) -> EvalOptions:
        """``options`` (default: the defaults) with ``fields`` replaced; an unknown field is a TypeError."""
        if options is not None and not isinstance(options, EvalOptions):
            raise TypeError(f"options must be EvalOptions, got {type(options).__name__} (pass the fields by name)")
        return dataclasses.replace(options or cls(), **fields)


@dataclass
class EvalResult:
    metrics: dict[str, float | None]
    predictions: list[dict]
    info: dict[str, Any] = field(default_factory=dict)  # timing-free facts: dataset, counts, flip test, files

    def to_json(self) -> dict[str, Any]:
        """The metrics file: facts first, then ``metrics`` (fractions 0..1, EPE in pixels)."""
        return {**self.info, "metrics": self.metrics}


class Progress:
    """A count of evaluated boxes on stderr: tqdm when it is installed, else a plain ``desc: done/total``
    counter; silent when not ``enabled``. ``update(n)`` after each batch, ``close()`` at the end (also after an
    error). Used by the single-process evaluation and by the Ray driver (:mod:`edgepose.scale`)."""

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
    options: EvalOptions | None = None,
    facts: dict | None = None,
    **fields: Any,
) -> np.ndarray:
    """Keypoints ``(N, K, 3)`` for every sample, in sample order (``options``, or its ``fields`` by name).

    Samples are grouped by image (each image read once); crops from consecutive images share batches of
    ``batch_size``. ``mode="serial"`` runs read, crop, inference and decode one after the other (the
    reference); ``"pipelined"`` (:mod:`edgepose.pipelined`, ``workers`` threads; 0: the calling thread, with an
    engine's async face) overlaps them and gives the same keypoints bit for bit. ``facts`` (a dict), when
    given, receives what ran.
    """
    opts = EvalOptions.of(options, **fields)
    if opts.batch_size < 1:
        raise EdgeposeError(f"batch size must be at least 1, got {opts.batch_size}")
    if opts.mode not in ("serial", "pipelined"):
        raise EdgeposeError(f"eval mode {opts.mode!r}: choose serial or pipelined")
    if opts.mode == "pipelined":
        return _predict_pipelined(spec, infer, ds, opts, facts)
    if facts is not None:
        facts.update(mode="serial")
    batch_size = opts.batch_size
    pipe = TopDownPipeline(spec, flip_test=opts.flip_test, decoder=opts.decoder, input_kind=input_kind_of(infer))
    n = len(ds.samples)
    out = np.zeros((n, spec.num_keypoints, 3), dtype=np.float32)
    centers = np.stack([s.center for s in ds.samples]).astype(np.float32)
    scales = np.stack([s.scale for s in ds.samples]).astype(np.float32)
    by_image: dict[Path, list[int]] = {}
    for i, s in enumerate(ds.samples):
        by_image.setdefault(s.image, []).append(i)

    bar = Progress(n, opts.progress, f"eval {ds.name}")
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


def _predict_pipelined(spec: ModelSpec, infer: Infer, ds: Dataset, opts: EvalOptions, facts: dict | None) -> np.ndarray:
    from .pipelined import Facts, plan_items, predict_items

    pipe = TopDownPipeline(spec, flip_test=opts.flip_test, decoder=opts.decoder, input_kind=input_kind_of(infer))
    centers = np.stack([s.center for s in ds.samples]).astype(np.float32)
    scales = np.stack([s.scale for s in ds.samples]).astype(np.float32)
    items = plan_items(ds.samples, centers, scales)
    out = np.zeros((len(ds.samples), spec.num_keypoints, 3), dtype=np.float32)
    bar = Progress(len(ds.samples), opts.progress, f"eval {ds.name}")
    got = Facts()
    try:
        keypoints = predict_items(pipe, infer, items, opts.batch_size, workers=opts.workers, progress=bar.update,
                                  facts=got)  # fmt: skip
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


def evaluate(
    spec: ModelSpec,
    infer: Infer,
    dataset: str | None = None,
    ann: str | Path | None = None,
    images: str | Path | None = None,
    bbox_file: str | Path | None = None,
    options: EvalOptions | None = None,
    **fields: Any,
) -> EvalResult:
    """Run ``infer`` (NCHW float32 -> NKHW heatmaps, e.g. a Runtime) over a set and score it as mmpose does.

    ``dataset`` defaults to the spec's; ``ann``/``images`` default, for the demo model, to the synthetic val
    split (:func:`edgepose.datasets.resolve_data`). Predictions are every instance before OKS-NMS, with
    mmpose's rescored ``score``. How it runs: ``options``, or its fields by name.
    """
    opts = EvalOptions.of(options, **fields)
    dataset, ann, images = resolve_data(spec, dataset, ann, images)
    ds = load_dataset(dataset, ann, images, spec, bbox_file, opts.det_bbox_thr)
    return evaluate_dataset(spec, infer, ds, opts)


def check_dataset(spec: ModelSpec, ds: Dataset) -> None:
    if DATASETS[ds.name].num_keypoints != spec.num_keypoints:
        raise EdgeposeError(
            f"model {spec.name} predicts {spec.num_keypoints} keypoints, dataset {ds.name} has "
            f"{DATASETS[ds.name].num_keypoints}"
        )


def evaluate_dataset(
    spec: ModelSpec, infer: Infer, ds: Dataset, options: EvalOptions | None = None, **fields: Any
) -> EvalResult:
    """:func:`evaluate` on an already loaded :class:`~edgepose.datasets.Dataset`."""
    opts = EvalOptions.of(options, **fields)
    check_dataset(spec, ds)
    facts: dict[str, Any] = {}
    keypoints = predict_dataset(spec, infer, ds, opts, facts=facts)
    return result_for(spec, ds, keypoints, opts, facts)


def result_for(
    spec: ModelSpec, ds: Dataset, keypoints: np.ndarray, options: EvalOptions, executor: dict[str, Any] | None = None
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
        "det_bbox_thr": float(options.det_bbox_thr) if ds.bbox_file else None,
        "num_samples": len(ds),
        "num_images": ds.num_images,
        "flip_test": bool(options.flip_test),
        "batch_size": int(options.batch_size),
        **ds.notes,
        "executor": dict(executor or {}),
    }
    return EvalResult(metrics, _predictions(ds, keypoints, inst_scores), info)
