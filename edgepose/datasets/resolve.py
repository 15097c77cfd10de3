"""Where the evaluation data come from: the one resolution that ``edgepose eval``, ``bench`` and ``convert``
(its INT8 control split) share.

* :func:`default_data`: the synthetic val split for a model edgepose trained itself (``package:`` checkpoint);
  ``None`` for a zoo model, which needs its files given.
* :func:`resolve_data`: (dataset, annotation file, image folder) with the defaults filled in and checked:
  ``--ann`` and ``--images`` together, both present, a known dataset with the model's keypoint count.
* :func:`eval_data`: that, plus the detections and bench's ``--limit`` cut (the first N images, written to a
  work folder), read up front: a bad annotation file, detection file or image is refused naming the user's
  own file before any model is loaded, never a temporary copy of it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .. import synthetic
from ..errors import EdgeposeError
from ..files import json_text, sha256_of
from ..spec import DATASETS, ModelSpec
from .base import read_json
from .load import load_dataset

__all__ = ["EvalData", "default_data", "eval_data", "resolve_data", "subset_dataset"]


@dataclass
class EvalData:
    """The files of an evaluation (as a bench row, a child process or a remote machine gets them)."""

    dataset: str
    ann: Path
    images: Path
    bbox_file: Path | None = None
    num_images: int | None = None

    def describe(self, limit: int | None = None) -> dict[str, Any]:
        """The data as a report records it, with the files' sha256 so that two runs can prove they used the same
        data (a recorded reference accuracy is only compared on identical bytes)."""
        return {"name": self.dataset, "ann": str(self.ann), "images": str(self.images),
                "bbox_file": str(self.bbox_file) if self.bbox_file else None, "num_images": self.num_images,
                "limit": limit, "ann_sha256": sha256_of(self.ann),
                "bbox_file_sha256": sha256_of(self.bbox_file) if self.bbox_file else None}  # fmt: skip


def default_data(spec: ModelSpec) -> tuple[str, Path, Path] | None:
    """For models edgepose trains on synthetic figures (``package:`` checkpoints): the synthetic val split."""
    if not spec.checkpoint.startswith("package:"):
        return None
    ann, images = synthetic.ensure_split("val")
    return spec.dataset, Path(ann), Path(images)


def resolve_data(
    spec: ModelSpec, dataset: str | None = None, ann: str | Path | None = None, images: str | Path | None = None
) -> tuple[str, Path, Path]:
    """(dataset, ann, images) with the defaults filled in: the spec's dataset; for the demo model the
    synthetic val split when neither file is given."""
    if (ann is None) != (images is None):
        raise EdgeposeError("--ann and --images go together: give both, or neither for the demo model's val split")
    if ann is None:
        default = default_data(spec)
        if default is None:
            raise EdgeposeError(f"model {spec.name}: give the annotation file and the image folder to evaluate on "
                                "(--ann, --images)")  # fmt: skip
        dataset = dataset or default[0]
        ann, images = default[1], default[2]
    ann, images = Path(ann), Path(images)  # type: ignore[arg-type]
    if not ann.is_file():
        raise EdgeposeError(f"{ann}: annotation file not found")
    if not images.is_dir():
        raise EdgeposeError(f"{images}: image folder not found")
    dataset = dataset or spec.dataset
    if dataset not in DATASETS:
        raise EdgeposeError(f"unknown dataset {dataset!r}; choose one of {', '.join(DATASETS)}")
    if DATASETS[dataset].num_keypoints != spec.num_keypoints:
        raise EdgeposeError(
            f"model {spec.name} predicts {spec.num_keypoints} keypoints, dataset {dataset} has "
            f"{DATASETS[dataset].num_keypoints}"
        )
    return dataset, ann, images


def eval_data(
    spec: ModelSpec,
    dataset: str | None = None,
    ann: str | Path | None = None,
    images: str | Path | None = None,
    bbox_file: str | Path | None = None,
    limit: int | None = None,
    workdir: Path | None = None,
) -> EvalData:
    """The evaluation data, read and checked now as ``edgepose eval`` reads them (annotations, detections,
    every image), so that a bad file fails here naming the user's file; with ``limit`` cut to the first
    ``limit`` images, written to ``workdir``."""
    dataset, ann, images = resolve_data(spec, dataset, ann, images)
    bbox = Path(bbox_file) if bbox_file else None
    if bbox is not None and not bbox.is_file():
        raise EdgeposeError(f"{bbox}: bbox file not found")
    data = EvalData(dataset, ann, images, bbox)
    if not limit:
        load_dataset(dataset, ann, images, spec, bbox)
        data.num_images = _count_images(ann)
        return data
    if workdir is None:
        raise ValueError("eval_data: a limit needs a work folder for the cut files")
    full = load_dataset(dataset, ann, images, spec, bbox, check_images=False)  # the user's files, named in errors
    cut = subset_dataset(data, limit, workdir)
    kept = {im.get("id") for im in read_json(cut.ann)["images"]}
    if not any(s.image_id in kept for s in full.samples):
        raise EdgeposeError(f"{bbox or ann}: the first {limit} image(s) hold no instances to evaluate (--limit)")
    load_dataset(dataset, cut.ann, images, spec, cut.bbox_file)  # their images, each named in an error
    return cut


def _count_images(ann: Path) -> int | None:
    try:
        doc = json.loads(ann.read_text())
    except (OSError, ValueError):
        return None
    if isinstance(doc, dict):
        return len(doc["images"]) if isinstance(doc.get("images"), list) else None
    return len(doc) if isinstance(doc, list) else None


def subset_dataset(data: EvalData, limit: int, workdir: Path) -> EvalData:
    """The first ``limit`` images of a COCO-format annotation file (and their detections), written to ``workdir``."""
    if limit < 1:
        raise EdgeposeError(f"--limit must be at least 1, got {limit}")
    doc = read_json(data.ann)
    if not (isinstance(doc, dict) and isinstance(doc.get("images"), list) and "annotations" in doc):
        raise EdgeposeError(f"{data.ann}: --limit needs a COCO-format annotation file (images + annotations)")
    doc["images"] = doc["images"][:limit]
    keep = {im.get("id") for im in doc["images"] if isinstance(im, dict)}
    doc["annotations"] = [a for a in doc["annotations"] if isinstance(a, dict) and a.get("image_id") in keep]
    ann = workdir / f"subset_{limit}_{data.ann.name}"
    ann.write_text(json_text(doc, str(data.ann)))
    bbox = None
    if data.bbox_file:
        dets = read_json(data.bbox_file, "detections file")
        if not isinstance(dets, list):
            raise EdgeposeError(f"{data.bbox_file}: expected a list of detections")
        bbox = workdir / f"subset_{limit}_{data.bbox_file.name}"
        kept = [d for d in dets if isinstance(d, dict) and d.get("image_id") in keep]
        bbox.write_text(json_text(kept, str(data.bbox_file)))
    return EvalData(data.dataset, ann, data.images, bbox, len(doc["images"]))
