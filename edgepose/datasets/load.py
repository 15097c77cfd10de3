"""Reading an evaluation set whole: the registered reader of its format, then its images checked before any
model is loaded (:func:`load_dataset`)."""

from __future__ import annotations

from pathlib import Path

from ..errors import EdgeposeError
from ..spec import ModelSpec
from . import base
from .base import DATASET_KINDS, Dataset

__all__ = ["load_dataset"]


def load_dataset(
    name: str,
    ann: str | Path,
    images: str | Path,
    spec: ModelSpec,
    bbox_file: str | Path | None = None,
    det_bbox_thr: float = 0.0,
    check_images: bool = True,
    skip_bad_images: bool = False,
) -> Dataset:
    """Read an evaluation set; centre/scale follow ``spec``'s input size and the dataset's box rule.

    ``check_images``: every image must exist and be whole (its end checked now, the whole file when it is
    decoded); the first bad one fails naming the file, before any model is loaded. ``skip_bad_images``: bad
    images (walked whole) are left out instead, with their ground truth, and counted in ``ds.notes``.
    """
    if name not in DATASET_KINDS:
        raise EdgeposeError(f"unknown dataset {name!r}; choose one of {', '.join(DATASET_KINDS)}")
    kind = DATASET_KINDS[name]
    ann, images = Path(ann), Path(images)
    if bbox_file is not None and not kind.detections:
        with_dets = ", ".join(k for k, v in DATASET_KINDS.items() if v.detections)
        raise EdgeposeError(f"--bbox-file is only supported for {with_dets}, not {name}")
    ds = kind.read(ann, images, spec, Path(bbox_file) if bbox_file else None, det_bbox_thr)
    if not ds.samples:
        raise EdgeposeError(f"{bbox_file or ann}: no instances to evaluate")
    if check_images:
        bad = base.check_images(images, ds.samples, skip_missing=skip_bad_images)
        bad.update(base.bad_images([s for s in ds.samples if s.image not in bad], full=skip_bad_images))
        if bad and not skip_bad_images:
            (first, why), more = next(iter(bad.items())), len(bad) - 1
            tail = f" (and {more} more image(s); --skip-bad-images leaves them out)" if more else ""
            raise EdgeposeError(f"{first}: {why}{tail}")
        if bad:
            ds = base.drop_images(ds, bad)
            if not ds.samples:
                raise EdgeposeError(f"{images}: every image of {ann.name} is missing or damaged")
    return ds

