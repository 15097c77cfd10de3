"""``edgepose inspect ARTIFACT --layers``: the per-layer error report of any INT8 artifact (figures:
:mod:`.int8.ranking`, the report: :mod:`.int8.report`; each format's graph reader is its target's ``graph``).

The float model it is compared with: ``--float PATH``, else the artifact's FP32 sibling in the same folder
(``<model>_fp32.<suffix>``), else one rebuilt from the checkpoint named in its metadata (ONNX export, then the
target's own ``float_model`` where it has one: TFLite goes through onnx2tf; OpenVINO reads the ONNX file). The
crops: the holdout of ``--calib FILE``, else the holdout of the model's default calibration set, else freshly
rendered synthetic figures; never the calibration crops themselves.
"""

from __future__ import annotations

import re
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from edgepose.artifact import read_metadata
from edgepose.errors import EdgeposeError
from edgepose.spec import spec_from_metadata

from . import targets as _targets  # noqa: F401  (registers every target in converters/targets/)
from .base import TARGETS, require, target_for
from .export import export_onnx
from .int8.ranking import measure
from .int8.report import LayerReport, write_report
from .tasks import task_for
from .transforms import rewrite_head


def _head(meta: dict) -> str:
    return str((meta.get("conversion") or {}).get("head") or "deconv")


def float_sibling(path: Path, meta: dict | None = None) -> Path | None:
    """The FP32 artifact beside ``path``, when its graph has the same head form (layer names then match)."""
    sib = path.with_name(re.sub(r"_int8(?=(_u8in)?\.[^.]+$)", "_fp32", path.name))
    if sib == path or not sib.is_file():
        return None
    if meta is not None and _head(read_metadata(sib)) != _head(meta):
        return None  # e.g. ONNX: FP32 keeps the deconvolution head, INT8 has the 3x3 sub-pixel one
    return sib


def _rebuild_float(target: Any, meta: dict, workdir: Path) -> tuple[Path, str]:
    from edgepose.models import load_model

    require("torch", "onnx", target="the float reference")
    spec = spec_from_metadata(meta)
    ckpt = (meta.get("source") or {}).get("checkpoint")
    model = load_model(spec, ckpt if ckpt and not ckpt.startswith("package:") else None, progress=False)
    model = rewrite_head(model, _head(meta))  # the graph the INT8 artifact was quantised from
    if task_for(spec).export_rewrite is not None:  # and its task's own rewrite (the detector's)
        model = task_for(spec).export_rewrite(model)
    onnx_path = export_onnx(model, spec, workdir / "float.onnx", dynamic_batch=meta.get("batch") is None,
                            plain_names=task_for(spec).plain_node_names)
    what = f"FP32 rebuilt from {Path(ckpt or spec.checkpoint).name}"
    if target.float_model is None:  # the graph reader compares with the ONNX file itself
        return onnx_path, what
    path, how = target.float_model(onnx_path, spec, workdir)
    return path, f"{what} ({how})" if how else what


def crops_for(spec: Any, n: int, calib: str | Path | None = None) -> tuple[np.ndarray, str]:
    """``n`` held-out crops (float32 NCHW) and where they come from (see the module doc); a detector's are
    letterboxed scenes (its task's calibration set and parity frames, :mod:`.tasks`)."""
    from edgepose.calibration import read_calibration
    from edgepose.processing import normalize

    task = task_for(spec)
    try:
        cset = read_calibration(calib, spec) if calib else read_calibration(task.default_calibration(spec, False), spec)
    except EdgeposeError:
        if calib:
            raise
        cset = None
    if cset is not None and len(cset.holdout):
        return (normalize(cset.holdout[:n], spec.mean, spec.std),
                f"{min(n, len(cset.holdout))} holdout crops of {cset.path.name}")
    return normalize(task.parity_frames(spec, n), spec.mean, spec.std), f"{n} {task.parity_from}"


def _readable() -> str:
    """The suffixes ``--layers`` reads: those of the targets with a graph reader."""
    return ", ".join(f"{t.suffix} ({t.name})" for t in TARGETS.values() if t.graph is not None)


def inspect_layers(path: str | Path, float_path: str | Path | None = None, calib: str | Path | None = None,
                   num_crops: int = 16, threads: int | None = None) -> LayerReport:  # fmt: skip
    """The per-layer report of the INT8 artifact ``path`` (see the module doc)."""
    path = Path(path)
    if not path.is_file():
        raise EdgeposeError(f"{path}: artifact not found")
    target = target_for(path)
    if target is None or target.graph is None:
        raise EdgeposeError(f"{path}: --layers reads {_readable()} INT8 artifacts")
    meta = read_metadata(path)
    if not meta.get("model"):
        raise EdgeposeError(f"{path}: no edgepose metadata; cannot tell the model and its pre-processing")
    if meta.get("precision") not in (None, "int8"):
        raise EdgeposeError(f"{path}: a {meta.get('precision')} artifact; --layers compares an INT8 one with float")
    spec = spec_from_metadata(meta)
    if (meta.get("input") or {}).get("kind", "float_nchw_normalized") != "float_nchw_normalized":
        raise EdgeposeError(f"{path}: takes uint8 crops (--input uint8); --layers compares float-input artifacts")
    if num_crops < 1:
        raise EdgeposeError(f"--num-crops must be at least 1, got {num_crops}")
    x, crops_from = crops_for(spec, num_crops, calib)
    with tempfile.TemporaryDirectory(prefix="edgepose-inspect-") as tmp:
        if float_path is not None:
            fref, fdesc = Path(float_path), Path(float_path).name
            if not fref.is_file():
                raise EdgeposeError(f"{fref}: float model not found")
        elif (sib := float_sibling(path, meta)) is not None:
            fref, fdesc = sib, sib.name
        else:
            fref, fdesc = _rebuild_float(target, meta, Path(tmp))
        graph = target.graph(path, fref, threads)
        layers = measure(graph, x)
    ctrl = meta.get("accuracy_control") or {}
    notes = []
    if ctrl:
        notes.append(f"accuracy control: budget {ctrl.get('max_drop')}, plain drop {ctrl['plain']['drop']:+.4f}, "
                     f"reached {ctrl['reached']['drop']:+.4f} on {ctrl['control']['num_images']} control images"
                     + (f"; {100 * ctrl['int8_macs_share']:.1f} % of MACs in INT8 (float cap "
                        f"{ctrl.get('max_float', '-')})" if ctrl.get("int8_macs_share") is not None else ""))
    return LayerReport(str(path), target.name, fdesc, crops_from, graph.kernels, layers, graph.output,
                       list(ctrl.get("float_layers") or []), notes)  # fmt: skip


__all__ = ["LayerReport", "inspect_layers", "write_report", "crops_for", "float_sibling"]
