"""The device table of ``edgepose bench --remote``: one row per artifact, per device its p50 latency and its
accuracy delta against the PyTorch reference measured on this machine; then what each device is."""

from __future__ import annotations

from typing import Any

from .report import _f, label, machine_lines


def devices(report: dict[str, Any]) -> list[dict[str, Any]]:
    """This machine first, then each remote in the order they ran (failed ones too: their column says why)."""
    m = report["machine"]
    out = [{"name": "this machine", "label": m.get("arch"), "machine": m, "rows": report["rows"], "error": None,
            "skipped": {}}]  # fmt: skip
    for e in report.get("remotes") or []:
        out.append({"name": e["target"], "label": e.get("label") or "?", "machine": e.get("machine") or {},
                    "rows": e.get("rows") or [], "error": e.get("error"),
                    "skipped": {s["artifact"]: s["why"] for s in e.get("skipped") or []}})  # fmt: skip
    return out


def _describe(d: dict[str, Any]) -> str:
    m = d["machine"]
    if d["error"]:
        return f"{d['name']}: FAILED: {d['error']}"
    cpu = m.get("cpu") or "?"
    return f"{d['name']}: {cpu}, {d['label']}, {m.get('usable_cpus') or m.get('logical_cpus') or '?'} CPUs"


def device_table(report: dict[str, Any]) -> tuple[list[str], list[list[str]], list[str]]:
    """Header, cells and the numbered device legend."""
    metric = report.get("metric") or "acc"
    devs = devices(report)
    head = ["artifact"]
    for i, _ in enumerate(devs, 1):
        head += [f"p50 ms [{i}]", f"Δ {metric} [{i}]"]
    names: list[str] = []
    for d in devs:
        for r in d["rows"]:
            if r["name"] not in names:
                names.append(r["name"])
    cells = []
    for name in names:
        first = next(r for d in devs for r in d["rows"] if r["name"] == name)
        line = [label(first) if first.get("reference") else name]
        for d in devs:
            r = next((x for x in d["rows"] if x["name"] == name), None)
            if r is None:
                why = "failed" if d["error"] else "not sent" if name in d["skipped"] else "-"
                line += [why, ""] if why != "-" else ["-", "-"]
            elif r["status"] != "ok":
                line += ["failed", ""]
            else:
                acc = r.get("accuracy") or {}
                delta = "(ref)" if r.get("reference") else _f(acc.get("delta"), "+.4f")
                line += [_f((r.get("model") or {}).get("p50_ms")), delta]
        cells.append(line)
    legend = [f"[{i}] {_describe(d)}" for i, d in enumerate(devs, 1)]
    return head, cells, legend


def console_devices(report: dict[str, Any]) -> str:
    head, cells, legend = device_table(report)
    widths = [max(len(c[i]) for c in [head, *cells]) for i in range(len(head))]
    fmt = lambda c: "  ".join(x.ljust(w) if i == 0 else x.rjust(w) for i, (x, w) in enumerate(zip(c, widths)))
    out = ["Per device (p50: the model alone; Δ: accuracy minus the PyTorch FP32 original measured on this machine):",
           fmt(head), "  ".join("-" * w for w in widths)] + [fmt(c).rstrip() for c in cells]  # fmt: skip
    out += [""] + legend + notes(report)
    return "\n".join(out)


def notes(report: dict[str, Any]) -> list[str]:
    out = []
    for e in report.get("remotes") or []:
        out += [f"* {e['target']}: {n}" for n in e.get("notes") or []]
        for r in e.get("rows") or []:
            if r["status"] != "ok":
                out.append(f"* {e['target']}: {r['name']} failed: {r.get('error')}")
            out += [f"* {e['target']}: {r['name']}: {f}" for f in r.get("flags") or []]
    return out


def markdown_devices(report: dict[str, Any]) -> str:
    """The device table and each remote machine's facts, appended to the bench Markdown."""
    head, cells, legend = device_table(report)
    out = ["### Per device", "", "| " + " | ".join(head) + " |", "|---|" + "---:|" * (len(head) - 1)]
    out += ["| " + " | ".join(x.replace("|", "\\|") for x in c) + " |" for c in cells]
    out += ["", "p50: the model alone, one call; Δ: accuracy minus the PyTorch FP32 original measured on this "
            "machine, given only where the device evaluated the same annotation bytes (sha256).", ""]  # fmt: skip
    out += [f"- {x}" for x in legend] + [""]
    for e in report.get("remotes") or []:
        if e.get("machine") and not e.get("error"):
            ref = e.get("reference_accuracy") or {"source": "none (no deltas)"}
            sub = {"machine": e["machine"], "config": {**(e.get("config") or {}), "reference_accuracy": ref}}
            out += [f"{e['target']} ({e.get('label')}):", ""] + [f"- {x}" for x in machine_lines(sub)] + [""]
    out += [f"- {x[2:]}" for x in notes(report)]
    return "\n".join(out) + "\n"
