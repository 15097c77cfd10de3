"""What ``edgepose bench`` runs on: the artifact files (and their sizes, precisions, metadata) and the data.

The evaluation data default to the synthetic val split for a demo model; ``--limit N`` cuts a COCO-format
annotation file (and its detections) to its first N images, in a temporary directory.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import EdgeposeError
from ..processing import read_image
from ..spec import ModelSpec

PRECISION_ORDER = ("fp32", "fp16", "int8")


def artifact_files(path: str | Path) -> list[Path]:
    """The files an artifact consists of (an OpenVINO .xml with its .bin); the JSON sidecar is not counted."""
    from ..runtimes import runtime_for

    cls = runtime_for(path)
    return cls.files(path) if cls else [Path(path)]


def artifact_size(path: str | Path) -> int:
    return sum(p.stat().st_size for p in artifact_files(path))


def discover_artifacts(paths: Sequence[str | Path]) -> list[Path]:
    """Artifact files among ``paths`` (directories are searched one level deep; PyTorch checkpoints in them
    are skipped, the reference row covers those). Sorted by format, then fp32/fp16/int8."""
    from ..runtimes import engine_for

    found: list[Path] = []
    for p in map(Path, paths):
        if p.is_dir():
            for f in sorted(p.iterdir()):
                if not f.is_file() or f.name.startswith("."):
                    continue
                try:
                    engine = engine_for(f)
                except EdgeposeError:
                    continue
                if engine != "torch":
                    found.append(f)
        elif p.exists():
            found.append(p)
        else:
            raise EdgeposeError(f"{p}: no such artifact file or directory")
    return sorted(dict.fromkeys(found), key=lambda f: (f.suffix.lower(), _precision_rank(guess_precision(f)), f.name))


def guess_precision(path: str | Path, meta: dict | None = None) -> str:
    """The artifact's precision: its metadata's, else the ``_fp32``/``_fp16``/``_int8`` in its file name."""
    if meta and isinstance(meta.get("precision"), str):
        return meta["precision"].lower()
    m = re.search(r"_(fp32|fp16|int8|float32|float16|bf16)(?:[._]|$)", Path(path).name.lower())
    return {"float32": "fp32", "float16": "fp16"}.get(m.group(1), m.group(1)) if m else "unknown"


def one_line(exc: BaseException) -> str:
    """An exception as one short line (engines raise multi-line C++ messages)."""
    text = str(exc).strip()
    first = text.splitlines()[0].strip() if text else ""
    if not first:
        return type(exc).__name__
    first = first[:240] + ("..." if len(first) > 240 else "")
    return first if isinstance(exc, EdgeposeError) else f"{type(exc).__name__}: {first}"


def _precision_rank(p: str) -> int:
    return PRECISION_ORDER.index(p) if p in PRECISION_ORDER else len(PRECISION_ORDER)


# --------------------------------------------------------------------------------------------- data
@dataclass
class EvalData:
    dataset: str
    ann: Path
    images: Path
    bbox_file: Path | None = None
    num_images: int | None = None

    def describe(self, limit: int | None = None) -> dict[str, Any]:
        """The data as a report records it, with the files' sha256 so that two runs can prove they used the same
        data (a recorded reference accuracy is only compared on identical bytes)."""
        from ..files import sha256_of

        return {"name": self.dataset, "ann": str(self.ann), "images": str(self.images),
                "bbox_file": str(self.bbox_file) if self.bbox_file else None, "num_images": self.num_images,
                "limit": limit, "ann_sha256": sha256_of(self.ann),
                "bbox_file_sha256": sha256_of(self.bbox_file) if self.bbox_file else None}  # fmt: skip


def resolve_dataset(
    spec: ModelSpec,
    ann: str | Path | None,
    images: str | Path | None,
    bbox_file: str | Path | None,
    dataset: str | None,
    limit: int | None,
    accuracy: bool,
    workdir: Path,
) -> tuple[EvalData | None, str | None]:
    """The evaluation data (the synthetic val split for a demo model), cut to ``limit`` images; or a note
    saying why accuracy is skipped."""
    if not accuracy:
        return None, "accuracy not measured (--no-accuracy)"
    if bool(ann) != bool(images):
        raise EdgeposeError("--ann and --images go together: give both, or neither for the demo model's val split")
    if ann:
        for p, what in ((Path(ann), "annotation file"), (Path(images), "image directory")):
            if not p.exists():
                raise EdgeposeError(f"{p}: {what} not found")
    else:
        from ..evaluate import default_data

        if default_data(spec) is None:
            return None, f"accuracy not measured: no dataset for {spec.name} (pass --ann and --images)"
    from ..evaluate import resolve_data

    dataset, ann, images = resolve_data(spec, dataset, ann, images)  # the same defaults and checks as eval
    bbox = Path(bbox_file) if bbox_file else None
    if bbox is not None and not bbox.is_file():
        raise EdgeposeError(f"{bbox}: bbox file not found")
    data = EvalData(dataset, ann, images, bbox)
    if limit:
        data = subset_dataset(data, limit, workdir)
    else:
        data.num_images = _count_images(ann)
    return data, None


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
    from ..files import json_text, parse_json

    if limit < 1:
        raise EdgeposeError(f"--limit must be at least 1, got {limit}")
    try:
        doc = parse_json(data.ann.read_bytes())
    except (OSError, ValueError, RecursionError) as e:
        raise EdgeposeError(f"{data.ann}: cannot read annotations ({one_line(e)})") from None
    if not (isinstance(doc, dict) and isinstance(doc.get("images"), list) and "annotations" in doc):
        raise EdgeposeError(f"{data.ann}: --limit needs a COCO-format annotation file (images + annotations)")
    doc["images"] = doc["images"][:limit]
    keep = {im.get("id") for im in doc["images"] if isinstance(im, dict)}
    doc["annotations"] = [a for a in doc["annotations"] if isinstance(a, dict) and a.get("image_id") in keep]
    ann = workdir / f"subset_{limit}_{data.ann.name}"
    ann.write_text(json_text(doc, str(data.ann)))
    bbox = None
    if data.bbox_file:
        try:
            dets = parse_json(data.bbox_file.read_bytes())
        except (OSError, ValueError, RecursionError) as e:
            raise EdgeposeError(f"{data.bbox_file}: cannot read detections ({one_line(e)})") from None
        if not isinstance(dets, list):
            raise EdgeposeError(f"{data.bbox_file}: expected a list of detections")
        bbox = workdir / f"subset_{limit}_{data.bbox_file.name}"
        kept = [d for d in dets if isinstance(d, dict) and d.get("image_id") in keep]
        bbox.write_text(json_text(kept, str(data.bbox_file)))
    return EvalData(data.dataset, ann, data.images, bbox, len(doc["images"]))


def timing_sample(data: EvalData | None) -> tuple[np.ndarray, np.ndarray, str]:
    """One image and person box to time with: the dataset's first annotated person, else a synthetic figure."""
    if data is not None:
        try:
            doc = json.loads(data.ann.read_text())
            files = {im["id"]: im["file_name"] for im in doc["images"]}
            for a in doc["annotations"]:
                if a.get("bbox") and a["bbox"][2] > 1 and a["bbox"][3] > 1 and a.get("image_id") in files:
                    path = data.images / files[a["image_id"]]
                    return read_image(path), np.asarray([a["bbox"]], np.float32), str(path)
        except (OSError, ValueError, KeyError, TypeError, EdgeposeError):
            pass
    from ..synthetic import render_image

    image, persons = render_image(np.random.default_rng(0), (640, 480), max_persons=1)
    box = persons[0]["bbox"] if persons else [0.0, 0.0, 640.0, 480.0]
    return image, np.asarray([box], np.float32), "synthetic 640x480 figure"
