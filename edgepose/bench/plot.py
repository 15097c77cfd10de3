"""The bench plot: accuracy against model latency, one labelled point per artifact (matplotlib, imported lazily)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..runtimes import format_label, runtime_of_format
from ..visualize import NO_MATPLOTLIB, figure, pyplot
from .report import label


def _color(fmt: str | None) -> str:
    cls = runtime_of_format(fmt)
    return cls.color if cls else "#9467bd"


MARKERS = {"fp32": "o", "fp16": "s", "int8": "^"}


def write_plot(report: dict[str, Any], path: str | Path) -> str | None:
    """Write the PNG; returns ``None`` when done, else why the plot was skipped (matplotlib absent, no rows)."""
    if pyplot() is None:
        return NO_MATPLOTLIB
    rows = [r for r in report["rows"] if r["status"] == "ok"]
    if not rows:
        return "plot skipped: no row ran"
    metric = report.get("metric")
    with_acc = [r for r in rows if (r.get("accuracy") or {}).get("value") is not None]
    m, cfg = report["machine"], report["config"]
    with figure(path, figsize=(9, 6), dpi=130) as (fig, ax):
        ax.set_title(
            f"{report['model']}: accuracy vs latency\n{m['cpu']} ({m['arch']}), {cfg.get('threads')} threads, "
            f"batch {cfg.get('batch')}",
            fontsize=11,
        )
        ax.grid(True, alpha=0.3)
        if with_acc:
            ds = cfg.get("dataset") or {}
            ax.set_ylabel(f"{metric} on {ds.get('name', '?')} ({ds.get('num_images', '?')} images)  - higher is better")
            ax.set_xlabel("model latency, ms (marker: p50, whisker to p90)  - lower is better")
            _scatter(ax, with_acc, report)  # lays out the axes before placing the labels
        else:
            _bars(ax, rows)
            fig.tight_layout()
    return None


def _scatter(ax, rows: list[dict[str, Any]], report: dict[str, Any]) -> None:
    xs = [r["model"]["p50_ms"] for r in rows]
    ys = [r["accuracy"]["value"] for r in rows]
    ref = (report["config"].get("reference_accuracy") or {}).get("value")
    for r, x, y in zip(rows, xs, ys):
        col = _color(r.get("format"))
        ax.errorbar(x, y, xerr=[[0.0], [max(0.0, r["model"]["p90_ms"] - x)]], fmt="none", ecolor=col, alpha=0.5)
        ax.scatter(
            [x], [y], s=110 if r.get("reference") else 80, c=col, marker=MARKERS.get(r.get("precision"), "D"),
            edgecolors="black" if r.get("reference") else "white", linewidths=1.2, zorder=3,
        )  # fmt: skip
    if ref is not None:
        ax.axhline(ref, color="#444444", ls="--", lw=1, zorder=1)
    _legend(ax, rows, ref is not None)
    lo, hi = min(xs), max(r["model"]["p90_ms"] for r in rows)
    if hi / max(lo, 1e-9) > 8:
        ax.set_xscale("log")
    ax.set_xlim(lo / 1.25 if ax.get_xscale() == "log" else max(0.0, lo - 0.15 * (hi - lo + 1)), hi * 1.45)
    span = max(ys + ([ref] if ref is not None else [])) - min(ys + ([ref] if ref is not None else []))
    pad = max(span * 0.25, 0.01)
    ax.set_ylim(min(ys + [ref or ys[0]]) - pad, max(ys + [ref or ys[0]]) + pad)
    ax.figure.tight_layout()  # final axes geometry first: the labels are placed in display coordinates
    _labels(ax, rows, xs, ys)


def _legend(ax, rows: list[dict[str, Any]], with_ref: bool) -> None:
    """Colour = format, marker = precision, dashed line = the PyTorch FP32 accuracy."""
    from matplotlib.lines import Line2D

    handles = []
    for fmt in dict.fromkeys(r.get("format", "") for r in rows):
        name = format_label(fmt)
        handles.append(Line2D([], [], ls="", marker="o", ms=8, color=_color(fmt), label=name))
    precs = dict.fromkeys(r.get("precision", "") for r in rows)
    for prec in sorted(precs, key=lambda p: list(MARKERS).index(p) if p in MARKERS else len(MARKERS)):
        handles.append(Line2D([], [], ls="", marker=MARKERS.get(prec, "D"), ms=8, color="#777777",
                              label=str(prec).upper()))  # fmt: skip
    if with_ref:
        handles.append(Line2D([], [], ls="--", color="#444444", label="PyTorch FP32 accuracy"))
    ax.legend(handles=handles, loc="lower right", fontsize=8, framealpha=0.9, ncol=2)


def _labels(ax, rows: list[dict[str, Any]], xs: list[float], ys: list[float]) -> None:
    """Label each point near it, choosing among candidate spots the first that overlaps no label placed
    before, no other marker and stays inside the axes (else the least overlapping one)."""
    from matplotlib.text import Text

    fig = ax.figure
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    frame = ax.get_window_extent(renderer)
    points = [ax.transData.transform((x, y)) for x, y in zip(xs, ys)]
    candidates = [(9, 0, "left"), (-9, 0, "right")]
    for k in range(1, 8):
        for dy in (-24 * k, 24 * k):
            candidates += [(9, dy, "left"), (-9, dy, "right")]
    placed = []
    order = sorted(range(len(rows)), key=lambda i: (xs[i], -ys[i]))
    for i in order:
        text = f"{label(rows[i])}\n{xs[i]:.2f} ms, {ys[i]:.4f}"
        best = None
        for dx, dy, ha in candidates:
            t = ax.annotate(text, (xs[i], ys[i]), xytext=(dx, dy), textcoords="offset points", fontsize=8,
                            va="center", ha=ha, zorder=4, bbox={"boxstyle": "round,pad=0.2", "fc": "white",
                            "ec": "none", "alpha": 0.8},
                            arrowprops={"arrowstyle": "-", "color": "#999999", "lw": 0.6} if dy else None)  # fmt: skip
            t.update_positions(renderer)
            bb = Text.get_window_extent(t, renderer).expanded(1.05, 1.15)  # the text alone, not its arrow
            cost = sum(_overlap(bb, p) for p in placed)
            cost += sum(20.0 for j, pt in enumerate(points) if j != i and bb.contains(*pt))
            cost += (
                0.0 if (frame.x0 <= bb.x0 and bb.x1 <= frame.x1 and frame.y0 <= bb.y0 and bb.y1 <= frame.y1) else 1e6
            )
            cost += abs(dy) * 1e-3  # prefer the closest spot
            if best is None or cost < best[0]:
                if best is not None:
                    best[1].remove()
                best = (cost, t, bb)
            else:
                t.remove()
            if cost < 1.0:
                break
        placed.append(best[2])


def _overlap(a, b) -> float:
    w = min(a.x1, b.x1) - max(a.x0, b.x0)
    h = min(a.y1, b.y1) - max(a.y0, b.y0)
    return w * h if w > 0 and h > 0 else 0.0


def _bars(ax, rows: list[dict[str, Any]]) -> None:
    names = [label(r) for r in rows]
    vals = [r["model"]["p50_ms"] for r in rows]
    cols = [_color(r.get("format")) for r in rows]
    ax.barh(names, vals, color=cols)
    for i, v in enumerate(vals):
        ax.annotate(f"{v:.2f} ms", (v, i), xytext=(4, 0), textcoords="offset points", va="center", fontsize=8)
    ax.invert_yaxis()
    ax.set_xlabel("model latency p50, ms (accuracy not measured)")
