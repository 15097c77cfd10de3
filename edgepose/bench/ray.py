"""``edgepose bench --ray``: the accuracy of every row as Ray jobs at once; timing stays on this machine.

Each row's accuracy is one job of :func:`edgepose.scale.run_jobs` (the model shipped to its workers, the data
read by the workers from a shared path or shipped as crops, ``num_gpus`` for a ``--device`` other than cpu),
all jobs sharing the cluster. The rows' timing is measured afterwards by :func:`edgepose.bench.run.run_bench` on
this machine, one row at a time, as without Ray: latencies measured in parallel on shared cores would say
nothing about the artifact.

(The module is ``edgepose.bench.ray``; the Ray package itself is imported by :mod:`edgepose.scale` alone, and
every import here is relative to the edgepose package, so the two names never meet.)
"""

from __future__ import annotations

import socket
from pathlib import Path
from typing import Any

import numpy as np

from ..checkpoint import resolve_checkpoint
from ..datasets import EvalData, load_dataset
from ..errors import EdgeposeError
from ..evaluate import score
from ..pipelined import plan_items
from ..scale import Job, RayOptions, model_files, run_jobs
from ..spec import ModelSpec
from .config import BenchConfig
from .data import one_line
from .row import BenchRow

REFERENCE = "reference"


def ray_accuracy(cfg: BenchConfig, spec: ModelSpec, jobs: list[tuple[Path, bool]], data: EvalData,
                 ref_source: str | None) -> tuple[dict[str, Any], str]:  # fmt: skip
    """({row key: metrics dict, or an error line}, a note for the report). Row keys: the artifact path as a
    string, :data:`REFERENCE` for the PyTorch original."""
    ds = load_dataset(data.dataset, data.ann, data.images, spec, data.bbox_file)
    centers = np.stack([s.center for s in ds.samples]).astype(np.float32)
    scales = np.stack([s.scale for s in ds.samples]).astype(np.float32)
    items = plan_items(ds.samples, centers, scales)
    out: dict[str, Any] = {}
    todo: list[tuple[str, Job]] = []
    for path, is_ref in jobs:
        key = REFERENCE if is_ref else str(path)
        try:
            if is_ref:
                model = model_files(resolve_checkpoint(ref_source, progress=cfg.progress), engine="torch",
                                    model=spec.name, source=str(ref_source))  # fmt: skip
            else:
                model = model_files(path)
        except Exception as e:  # noqa: BLE001 - that row fails, the others go on
            out[key] = one_line(e)
            continue
        todo.append((key, Job(spec, model, items, len(ds.samples), cfg.eval_batch, cfg.flip_test, label=path.name)))
    opts = RayOptions(address=cfg.ray or None, threads=cfg.threads or 1, ship_crops=cfg.ray_ship_crops,
                      device=cfg.device, allow_fallback=cfg.allow_fallback, progress=cfg.progress,
                      fail_soft=True)  # fmt: skip
    results = run_jobs([job for _, job in todo], opts) if todo else []
    hosts: set[str] = set()
    for (key, _), (keypoints, info) in zip(todo, results):
        if keypoints is None:
            out[key] = info.get("error", "failed on Ray")
            continue
        hosts.update(info.get("hosts", []))
        metrics = score(ds, keypoints, spec)[0]
        out[key] = {k: float(v) for k, v in metrics.items() if isinstance(v, (int, float, np.floating))}
    first = next((info for _, info in results if "actors" in info), {})
    note = (f"accuracy: {len(todo)} Ray jobs at once ({first.get('actors', '?')} workers each, "
            f"{opts.threads} threads each, on {', '.join(sorted(hosts)) or '?'}; "
            f"{'crops shipped by the driver' if cfg.ray_ship_crops else 'images read by the workers'}); "
            f"timing: on {socket.gethostname()} one row at a time after the Ray jobs had finished (timing rows "
            "run in parallel on shared cores would be meaningless)")  # fmt: skip
    return out, note


def attach(row: BenchRow, result: Any) -> BenchRow:
    """Put a Ray accuracy result on a row measured (timing only) here; an error fails the row, as it would
    without Ray."""
    if row.status != "ok":
        return row
    if isinstance(result, dict):
        row.accuracy = {"metrics": result}
        return row
    return row.fail(EdgeposeError(str(result or "no accuracy came back from Ray")))
