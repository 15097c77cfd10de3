"""Per-layer error of an INT8 artifact against its float model: where the quantisation noise comes from, and
the ranking the accuracy-control search starts from. Format-free: each target's graph reader
(``targets/<name>/graph.py``, registered as ``graph=``) gives a :class:`Graph`.

Both models run on the same held-out crops and every layer's activation is read from each, *as the next layer
sees it* (the INT8 value dequantised with its own scale and zero point).

Per layer: ``snr_db`` = 10 log10(sum f^2 / sum (q - f)^2) and ``rel_err`` = sqrt(sum (q - f)^2 / sum f^2) over
all crops (f float, q INT8), both *cumulative* (everything upstream included); ``added`` = the noise-to-signal
ratio this layer adds over the worst of the layers that feed it (max(0, rel_err^2 - max upstream rel_err^2));
``share`` = added / the sum of added over all layers: the layer's share of the quantisation noise, the ranking
the accuracy-control loop starts from (:func:`rank` then confirms the top layers one by one on the output).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np

from ..base import Converted, quiet
from .control import ControlSet


@dataclass
class Layer:
    name: str
    op: str
    int8: bool
    upstream: list[str] = field(default_factory=list)
    snr_db: float = math.inf
    rel_err: float = 0.0
    max_abs_err: float = 0.0
    added: float = 0.0
    share: float = 0.0
    removed: float | None = None  # share of the output error removed when only this layer is float (measured)


@dataclass
class Graph:
    """What a format gives the report: its layers, and runners returning each layer's activation (float)."""

    layers: list[Layer]
    run_int8: Callable[[np.ndarray], dict[str, np.ndarray]]  # NCHW float32 batch -> {layer: activation}
    run_float: Callable[[np.ndarray], dict[str, np.ndarray]]
    output: str  # the layer whose activation is the model output
    kernels: str = ""


def measure(graph: Graph, inputs: np.ndarray, batch: int = 1) -> list[Layer]:
    """Fill in every layer's figures from ``inputs`` (float32 NCHW), ``batch`` crops at a time (artifacts: 1)."""
    acc = {layer.name: [0.0, 0.0, 0.0] for layer in graph.layers}  # sum f^2, sum e^2, max |e|
    for a in range(0, len(inputs), batch):
        x = np.ascontiguousarray(inputs[a : a + batch], dtype=np.float32)
        fq, ff = graph.run_int8(x), graph.run_float(x)
        for k, s in acc.items():
            e = fq[k] - ff[k]
            s[0] += float((ff[k] ** 2).sum())
            s[1] += float((e**2).sum())
            s[2] = max(s[2], float(np.abs(e).max()) if e.size else 0.0)
    nsr = {}
    for layer in graph.layers:
        sf2, se2, mx = acc[layer.name]
        nsr[layer.name] = se2 / sf2 if sf2 > 0 else (0.0 if se2 == 0 else math.inf)
        layer.rel_err = math.sqrt(nsr[layer.name])
        layer.snr_db = 200.0 if se2 == 0 else min(200.0, 10 * math.log10(max(sf2, 1e-300) / se2))
        layer.max_abs_err = mx
    for layer in graph.layers:
        before = max((nsr[u] for u in layer.upstream if u in nsr), default=0.0)
        layer.added = max(0.0, nsr[layer.name] - before) if math.isfinite(nsr[layer.name]) else 0.0
    total = sum(layer.added for layer in graph.layers)
    for layer in graph.layers:
        layer.share = layer.added / total if total > 0 else 0.0
    return graph.layers


def ranked(layers: list[Layer], exclude: set[str] = frozenset()) -> list[Layer]:
    """INT8 layers, largest share of the noise first."""
    return sorted((la for la in layers if la.int8 and la.name not in exclude), key=lambda la: -la.added)


def layer_dicts(layers: list[Layer]) -> list[dict[str, Any]]:
    return [{k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in asdict(la).items()}
            for la in layers]  # fmt: skip


def heatmap_error(path: Path, x: np.ndarray, ref: np.ndarray, threads: int | None) -> float:
    """Sum of squared differences between the artifact's output on ``x`` and ``ref``, run as edgepose ships it."""
    from edgepose.runtimes import load_runtime

    with quiet(f"running {path.name}"):
        out = load_runtime(path, threads=threads)(x)
    return float(((out.astype(np.float64) - ref) ** 2).sum())


def rank(c: Converted, graph: Graph, control: ControlSet, x: np.ndarray, ref: np.ndarray, build: Callable,
         threads: int | None, say: Callable[[str], None]) -> tuple[list[str], list[dict]]:  # fmt: skip
    """Layers by the noise they add, the top ``control.confirm_top`` confirmed one at a time on the output
    (``build(layers, dst)``: the artifact ``c`` with ``layers`` in float)."""
    layers = measure(graph, x)
    order = ranked(layers)
    e0 = heatmap_error(c.path, x, ref, threads)
    confirmed = []
    top = control.confirm_top
    for i, layer in enumerate(order[:top]):
        path = build([layer.name], c.path.parent / f"{c.path.stem}.one{i}{c.path.suffix}")
        layer.removed = (e0 - heatmap_error(path, x, ref, threads)) / e0 if e0 > 0 else 0.0
        for f in (path, *(path.with_suffix(e.suffix) for e in c.extra_files)):  # with its companions (a weights file)
            f.unlink(missing_ok=True)
        confirmed.append(layer)
    say(f"{c.target} int8: ranked {len(order)} layers; the top {len(confirmed)} confirmed one by one on the output")
    helpful = sorted((la for la in confirmed if la.removed > 0), key=lambda la: -la.removed)
    useless = [la for la in confirmed if la.removed <= 0]
    final = helpful + order[top:] + useless
    return [la.name for la in final], layer_dicts(final)


__all__ = ["Layer", "Graph", "measure", "ranked", "layer_dicts", "heatmap_error", "rank"]
