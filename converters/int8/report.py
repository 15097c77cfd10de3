"""The per-layer INT8 error report behind ``edgepose inspect --layers`` (figures: :mod:`.ranking`), format-free:
the table, the Markdown, the JSON and the plot of one artifact's layers.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from edgepose.files import atomic_write
from edgepose.visualize import NO_MATPLOTLIB, figure, pyplot

from .ranking import Layer, layer_dicts


@dataclass
class LayerReport:
    artifact: str
    format: str
    float_model: str
    crops: str
    kernels: str
    layers: list[Layer]
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
                "notes": self.notes, "layers": layer_dicts(self.layers),
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
        if pyplot() is None:
            return NO_MATPLOTLIB
        x = np.arange(len(self.layers))
        with figure(path, 2, 1, figsize=(12, 6.5), dpi=120, sharex=True) as (fig, (a1, a2)):
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
        return None


DEFINITIONS = (
    "SNR and rel err: the layer's activation in the INT8 artifact (as the next layer sees it) against the float "
    "model's, over all crops, cumulative (everything upstream included). Share: the noise-to-signal ratio the "
    "layer adds over the worst layer feeding it, as a fraction of what all layers add."
)


def _num(v: float) -> float | None:
    return v if math.isfinite(v) else None


def _short(name: str, n: int = 64) -> str:
    name = name.split(";")[0]  # a fused op lists its parts' names: the first is the op itself
    return name if len(name) <= n else "..." + name[-(n - 3):]


def write_report(report: LayerReport, out: str | Path) -> list[str]:
    """``out.json``, ``out.md`` and ``out.png`` (plot) beside each other; returns what was written/skipped."""
    out = Path(out)
    stem = out.with_suffix("") if out.suffix in (".json", ".md", ".png") else out
    atomic_write(stem.with_suffix(".json"), json.dumps(report.to_dict(), indent=2) + "\n")
    atomic_write(stem.with_suffix(".md"), report.markdown())
    said = [str(stem.with_suffix(".json")), str(stem.with_suffix(".md"))]
    skipped = report.plot(stem.with_suffix(".png"))
    said.append(skipped or str(stem.with_suffix(".png")))
    return said


__all__ = ["LayerReport", "write_report", "DEFINITIONS"]
