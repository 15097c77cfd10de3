"""What ``edgepose bench`` runs on: the artifact files (and their sizes, precisions, metadata), the data and the
timing sample.

The evaluation data are resolved where eval and convert resolve theirs (:mod:`edgepose.datasets.resolve`): the
synthetic val split for a demo model; ``--limit N`` cuts a COCO-format annotation file (and its detections) to
its first N images, in a temporary directory.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from ..datasets import EvalData, default_data, eval_data
from ..errors import EdgeposeError
from ..processing import read_image
from ..spec import ModelSpec
from ..synthetic import render_image
from .config import BenchConfig

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
def bench_data(cfg: BenchConfig, spec: ModelSpec, workdir: Path) -> tuple[EvalData | None, str | None]:
    """The evaluation data of a bench (:func:`edgepose.datasets.eval_data`: the synthetic val split for a demo
    model, read and checked now, cut to ``--limit`` images in ``workdir``), or ``None`` and a note saying why
    accuracy is not measured."""
    if not cfg.accuracy:
        return None, "accuracy not measured (--no-accuracy)"
    if cfg.ann is None and cfg.images is None and default_data(spec) is None:
        return None, f"accuracy not measured: no dataset for {spec.name} (pass --ann and --images)"
    data = eval_data(spec, cfg.dataset, cfg.ann, cfg.images, cfg.bbox_file, cfg.limit, workdir)
    return data, None


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
    image, persons = render_image(np.random.default_rng(0), (640, 480), max_persons=1)
    box = persons[0]["bbox"] if persons else [0.0, 0.0, 640.0, 480.0]
    return image, np.asarray([box], np.float32), "synthetic 640x480 figure"
