"""What an INT8 artifact's metadata says about its accuracy control (``edgepose convert --max-drop``), for the
bench rows and report: plain and controlled drop on the control split, the layers kept in float, and what
they cost in latency (measured side by side at conversion)."""

from __future__ import annotations

from typing import Any


def int8_control(meta: dict[str, Any]) -> dict[str, Any] | None:
    """The row entry (``None`` for an artifact without a task-metric check)."""
    task = (meta.get("parity") or {}).get("task")
    ctrl = meta.get("accuracy_control")
    if not task and not ctrl:
        return None
    out: dict[str, Any] = {"metric": (task or ctrl).get("metric"), "control_drop": (task or {}).get("drop"),
                           "control_images": ((task or ctrl).get("control") or {}).get("num_images")}  # fmt: skip
    if ctrl:
        lat = ctrl.get("latency") or {}
        out.update(max_drop=ctrl.get("max_drop"), plain_drop=(ctrl.get("plain") or {}).get("drop"),
                   controlled_drop=(ctrl.get("reached") or {}).get("drop"), float_layers=ctrl.get("float_layers", []),
                   latency_cost_pct=lat.get("cost_pct"), latency_plain_ms=lat.get("plain_ms"),
                   latency_controlled_ms=lat.get("controlled_ms"), int8_macs_share=ctrl.get("int8_macs_share"),
                   max_float=ctrl.get("max_float"))  # fmt: skip
    return out


def markdown_lines(rows: list[dict[str, Any]]) -> list[str]:
    """A small table of the INT8 rows with an accuracy-control record (empty when none has one)."""
    rows = [r for r in rows if r.get("int8_control")]
    if not rows:
        return []

    def f(v: Any, fmt: str = "+.4f") -> str:
        return "-" if v is None else format(v, fmt)

    def share(c: dict[str, Any]) -> str:  # the INT8 share of the MACs (older artifacts: not recorded)
        return "-" if c.get("int8_macs_share") is None else f"{100 * c['int8_macs_share']:.1f} %"

    out = ["INT8 on the task metric (from each artifact's metadata; control split of the conversion):", "",
           ("| artifact | plain INT8 drop | controlled drop (budget) | layers in float | MACs in INT8 "
            "| float layers cost |"),
           "|---|---:|---:|---:|---:|---:|"]  # fmt: skip
    for r in rows:
        c = r["int8_control"]
        if "max_drop" in c:
            cost = "-" if c.get("latency_cost_pct") is None else (
                f"{c['latency_cost_pct']:+.0f}% ({c['latency_plain_ms']:.1f} → {c['latency_controlled_ms']:.1f} ms)")
            out.append(f"| {r['name']} | {f(c['plain_drop'])} | {f(c['controlled_drop'])} ({c['max_drop']:g}) | "
                       f"{len(c['float_layers'])} | {share(c)} | {cost} |")
        else:
            out.append(f"| {r['name']} | {f(c['control_drop'])} | - | 0 | - | - |")
    return out + [""]
