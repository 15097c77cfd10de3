"""``edgepose inspect ARTIFACT --layers``: the per-layer error report of any INT8 artifact (see :mod:`.layers`).

The float model it is compared with: ``--float PATH``, else the artifact's FP32 sibling in the same folder
(``<model>_fp32.<suffix>``), else one rebuilt from the checkpoint named in its metadata (ONNX export; TFLite
also goes through onnx2tf; OpenVINO reads the ONNX file). The crops: the holdout of ``--calib FILE``, else
the holdout of the model's default calibration set, else freshly rendered synthetic figures; never the
calibration crops themselves.
"""

from __future__ import annotations

import json
import math
import re
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from edgepose.errors import EdgeposeError

from . import layers as L


@dataclass
class LayerReport:
    artifact: str
    format: str
    float_model: str
    crops: str
    kernels: str
    layers: list[L.Layer]
    output: str
    float_layers: list[str] = field(default_factory=list)  # from the metadata (accuracy control)
    notes: list[str] = field(default_factory=list)

    @property
    def output_snr_db(self) -> float:
        return next(la.snr_db for la in self.layers if la.name == self.output)

    def to_dict(self) -> dict[str, Any]:
        return {"schema": "edgepose.layers/1", "artifact": self.artifact, "format": self.format,
                "float_model": self.float_model, "crops": self.crops, "kernels": self.kernels,
                "output": self.output, "output_snr_db": _num(self.output_snr_db), "float_layers": self.float_layers,
                "notes": self.notes, "layers": L.layer_dicts(self.layers),
                "definitions": DEFINITIONS}  # fmt: skip

    def rows(self, top: int | None = None) -> list[tuple[str, ...]]:
        order = sorted(self.layers, key=lambda la: -la.added) if top else self.layers
        out = []
        for la in order[:top] if top else order:
            out.append((str(self.layers.index(la) + 1), _short(la.name), la.op, "yes" if la.int8 else "no",
                        f"{la.snr_db:.1f}", f"{la.rel_err:.2e}", f"{100 * la.share:.1f}%",
                        "#" * int(round(40 * la.share))))  # fmt: skip
        return out

    def table(self, top: int | None = None) -> str:
        head = ("#", "layer", "op", "int8", "SNR dB", "rel err", "share", "")
        rows = [head] + self.rows(top)
        w = [max(len(r[i]) for r in rows) for i in range(len(head))]
        lines = ["  ".join(c.ljust(w[i]) if i in (1, 2, 7) else c.rjust(w[i]) for i, c in enumerate(r)).rstrip()
                 for r in rows]  # fmt: skip
        lines.insert(1, "  ".join("-" * x for x in w))
        return "\n".join([self.header(), *lines])

    def header(self) -> str:
        n8 = sum(la.int8 for la in self.layers)
        floats = f"; kept in float by accuracy control: {len(self.float_layers)}" if self.float_layers else ""
        return (f"{self.artifact}: {len(self.layers)} layers, {n8} in INT8{floats}; output SNR "
                f"{self.output_snr_db:.1f} dB against {self.float_model} on {self.crops} ({self.kernels})")

    def markdown(self, top: int | None = None) -> str:
        head = "| # | layer | op | int8 | SNR dB | rel err | share of noise |\n|---:|---|---|---|---:|---:|---:|"
        body = "\n".join(f"| {r[0]} | `{r[1]}` | {r[2]} | {r[3]} | {r[4]} | {r[5]} | {r[6]} |" for r in self.rows(top))
        return f"{self.header()}\n\n{head}\n{body}\n\n{DEFINITIONS}\n"

    def plot(self, path: str | Path) -> str | None:
        """A bar per layer (share of the noise, graph order) over the cumulative SNR; ``None`` when written."""
        try:
            import matplotlib

            matplotlib.use("Agg")
            import matplotlib.pyplot as plt
        except ImportError:
            return "plot skipped: matplotlib is not installed (pip install 'edgepose[plot]')"
        from edgepose.files import atomic_path

        x = np.arange(len(self.layers))
        fig, (a1, a2) = plt.subplots(2, 1, figsize=(12, 6.5), dpi=120, sharex=True)
        try:
            colors = ["#1f77b4" if la.int8 else "#ff7f0e" for la in self.layers]
            a1.bar(x, [100 * la.share for la in self.layers], color=colors)
            a1.set_ylabel("share of the noise (%)")
            a1.set_title(f"{Path(self.artifact).name}: per-layer INT8 error (blue: INT8, orange: float)")
            for i in np.argsort([-la.share for la in self.layers])[:5]:
                a1.annotate(_short(self.layers[i].name, 28), (x[i], 100 * self.layers[i].share), fontsize=7,
                            rotation=20, ha="left", va="bottom")  # fmt: skip
            a2.plot(x, [min(la.snr_db, 80) for la in self.layers], marker=".", color="#2ca02c")
            a2.set_ylabel("cumulative SNR (dB)")
            a2.set_xlabel(f"layer (graph order); output SNR {self.output_snr_db:.1f} dB")
            a2.grid(alpha=0.3)
            fig.tight_layout()
            with atomic_path(path, suffix=".png") as tmp:
                fig.savefig(tmp)
        finally:
            plt.close(fig)
        return None


DEFINITIONS = (
    "SNR and rel err: the layer's activation in the INT8 artifact (as the next layer sees it) against the float "
    "model's, over all crops, cumulative (everything upstream included). Share: the noise-to-signal ratio the "
    "layer adds over the worst layer feeding it, as a fraction of what all layers add."
)


def _num(v: float) -> float | None:
    return v if math.isfinite(v) else None


def _short(name: str, n: int = 64) -> str:
    name = name.split(";")[0]  # TFLite fuses op names: the first is the op itself
    return name if len(name) <= n else "..." + name[-(n - 3):]


def _head(meta: dict) -> str:
    return str((meta.get("conversion") or {}).get("head") or "deconv")


def float_sibling(path: Path, meta: dict | None = None) -> Path | None:
    """The FP32 artifact beside ``path``, when its graph has the same head form (layer names then match)."""
    from edgepose.artifact import read_metadata

    sib = path.with_name(re.sub(r"_int8(?=(_u8in)?\.[^.]+$)", "_fp32", path.name))
    if sib == path or not sib.is_file():
        return None
    if meta is not None and _head(read_metadata(sib)) != _head(meta):
        return None  # e.g. ONNX: FP32 keeps the deconvolution head, INT8 has the 3x3 sub-pixel one
    return sib


def _rebuild_float(path: Path, meta: dict, workdir: Path) -> tuple[Path, str]:
    from edgepose.models import load_model
    from edgepose.spec import spec_from_metadata

    from .base import require
    from .export import export_onnx

    require("torch", "onnx", target="the float reference")
    spec = spec_from_metadata(meta)
    ckpt = (meta.get("source") or {}).get("checkpoint")
    from .transforms import rewrite_head

    model = load_model(spec, ckpt if ckpt and not ckpt.startswith("package:") else None, progress=False)
    model = rewrite_head(model, _head(meta))  # the graph the INT8 artifact was quantised from
    onnx_path = export_onnx(model, spec, workdir / "float.onnx", dynamic_batch=meta.get("batch") is None)
    if path.suffix != ".tflite":
        return onnx_path, f"FP32 rebuilt from {Path(ckpt or spec.checkpoint).name}"
    from .targets.tflite import _sample_images, onnx_to_saved_model, tflite_from_saved_model

    sm = workdir / "saved_model"
    onnx_to_saved_model(onnx_path, sm, _sample_images(np.zeros((0,)), spec.mean, spec.std))
    out = workdir / "float.tflite"
    out.write_bytes(tflite_from_saved_model(sm, "fp32"))
    return out, f"FP32 rebuilt from {Path(ckpt or spec.checkpoint).name} (onnx2tf)"


def crops_for(spec: Any, n: int, calib: str | Path | None = None) -> tuple[np.ndarray, str]:
    """``n`` held-out crops (float32 NCHW) and where they come from (see the module doc)."""
    from edgepose.calibration import default_calibration_path, read_calibration
    from edgepose.processing import normalize

    try:
        cset = read_calibration(calib, spec) if calib else read_calibration(default_calibration_path(spec, False), spec)
    except EdgeposeError:
        if calib:
            raise
        cset = None
    if cset is not None and len(cset.holdout):
        return (normalize(cset.holdout[:n], spec.mean, spec.std),
                f"{min(n, len(cset.holdout))} holdout crops of {cset.path.name}")
    from .api import PARITY_SEED, synthetic_parity_crops

    return normalize(synthetic_parity_crops(spec, n), spec.mean, spec.std), f"{n} synthetic crops (seed {PARITY_SEED})"


def inspect_layers(path: str | Path, float_path: str | Path | None = None, calib: str | Path | None = None,
                   num_crops: int = 16, threads: int | None = None) -> LayerReport:  # fmt: skip
    """The per-layer report of the INT8 artifact ``path`` (see the module doc)."""
    from edgepose.artifact import read_metadata
    from edgepose.spec import spec_from_metadata

    path = Path(path)
    if not path.is_file():
        raise EdgeposeError(f"{path}: artifact not found")
    fmt = {".onnx": "onnx", ".tflite": "tflite", ".xml": "openvino"}.get(path.suffix.lower())
    if fmt is None:
        raise EdgeposeError(f"{path}: --layers reads .onnx, .tflite and .xml (OpenVINO) INT8 artifacts")
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
            fref, fdesc = _rebuild_float(path, meta, Path(tmp))
        if fmt == "onnx":
            graph = L.onnx_graph(path, fref, threads)
        elif fmt == "tflite":
            graph = L.tflite_graph(path.read_bytes(), fref.read_bytes(), threads)
        else:
            graph = L.openvino_graph(path, fref, threads)
        layers = L.measure(graph, x)
    ctrl = meta.get("accuracy_control") or {}
    notes = []
    if ctrl:
        notes.append(f"accuracy control: budget {ctrl.get('max_drop')}, plain drop {ctrl['plain']['drop']:+.4f}, "
                     f"reached {ctrl['reached']['drop']:+.4f} on {ctrl['control']['num_images']} control images")
    return LayerReport(str(path), fmt, fdesc, crops_from, graph.kernels, layers, graph.output,
                       list(ctrl.get("float_layers") or []), notes)  # fmt: skip


def write_report(report: LayerReport, out: str | Path) -> list[str]:
    """``out.json``, ``out.md`` and ``out.png`` (plot) beside each other; returns what was written/skipped."""
    from edgepose.files import atomic_write

    out = Path(out)
    stem = out.with_suffix("") if out.suffix in (".json", ".md", ".png") else out
    atomic_write(stem.with_suffix(".json"), json.dumps(report.to_dict(), indent=2) + "\n")
    atomic_write(stem.with_suffix(".md"), report.markdown())
    said = [str(stem.with_suffix(".json")), str(stem.with_suffix(".md"))]
    skipped = report.plot(stem.with_suffix(".png"))
    said.append(skipped or str(stem.with_suffix(".png")))
    return said


__all__ = ["LayerReport", "inspect_layers", "write_report", "crops_for", "float_sibling"]
