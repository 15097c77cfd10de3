"""The results of ``edgepose bench --remote``: a remote report merged into the local one (rows tagged with their
machine, emulation named, deltas against the PyTorch reference measured on this machine when the data were the
same bytes), and the device table: one row per artifact, per device its p50 latency and its accuracy delta."""

from __future__ import annotations

from typing import Any

from ..config import max_drop_for
from ..report import cell, label, machine_lines
from .ssh import Target

ARM = ("aarch64", "arm64", "armv7l", "armv6l", "armv8l", "arm")
X86 = ("x86_64", "amd64", "i386", "i686")


def userland_arch(probe: dict[str, Any]) -> str:
    """The Python's architecture; a 32-bit ARM Python on a 64-bit kernel says aarch64 but is armv7l."""
    m = (probe.get("machine") or "").lower()
    if probe.get("bits") == 32 and m in ("aarch64", "arm64", "armv8l"):
        return "armv7l"
    return m


def emulation(probe: dict[str, Any]) -> str | None:
    """Why the timings are not the reported CPU's: the Python runs under user-mode emulation (qemu)."""
    py, kern = userland_arch(probe), (probe.get("kernel_machine") or "").lower()
    fam = lambda a: "arm" if a in ARM else "x86" if a in X86 else a
    if not kern or fam(py) == fam(kern):
        return None
    tool = "qemu user-mode emulation" if probe.get("qemu") else "user-mode emulation"
    return f"{tool} on a {kern} host: timings are not {'ARM' if fam(py) == 'arm' else py} speed"


def merge_remote(entry: dict[str, Any], remote: dict[str, Any], report: dict[str, Any], cfg: Any,
                 target: Target | str) -> None:  # fmt: skip
    """Tag the remote rows with their machine and give them deltas against the reference measured here."""
    probe = entry.get("probe") or {}
    machine = dict(remote.get("machine") or {})
    emu = emulation(probe)
    machine["emulation"] = emu
    machine["host"] = str(target)
    entry["machine"], entry["config"] = machine, remote.get("config") or {}
    remote_notes = list(remote.get("notes") or [])
    arch = machine.get("arch") or probe.get("machine") or "?"
    entry["label"] = f"{arch} ({emu})" if emu else arch
    local_ds, remote_ds = report["config"].get("dataset") or {}, entry["config"].get("dataset") or {}
    same = bool(local_ds) and all(local_ds.get(k) == remote_ds.get(k) for k in ("ann_sha256", "bbox_file_sha256"))
    same = same and entry["config"].get("flip_test") == report["config"].get("flip_test")
    entry["data_identical"] = same
    ref = report["config"].get("reference_accuracy") or {}
    metric = report.get("metric")
    if local_ds and not same:
        entry["notes"].append(f"accuracy deltas omitted: the remote evaluated other data (annotation sha256 "
                              f"{str(remote_ds.get('ann_sha256'))[:12]} there, {str(local_ds.get('ann_sha256'))[:12]} "
                              "here)")  # fmt: skip
    elif ref.get("value") is not None:
        where = f"{report['machine'].get('cpu')}, the machine that ran edgepose bench --remote"
        entry["reference_accuracy"] = {"value": ref["value"], "source": f"{ref.get('source')} ({where})"}
        # the remote had no reference of its own; the one from here replaces that note
        remote_notes = [n for n in remote_notes if not n.startswith("no reference accuracy")]
    entry["notes"] += remote_notes
    if remote.get("frames"):  # --frames: the device's frame loop, as it measured it
        entry["frames"] = remote["frames"]
    for r in remote.get("rows") or []:
        r["host"], r["machine_label"] = str(target), entry["label"]
        acc = r.get("accuracy")
        r["flags"] = [f for f in r.get("flags", []) if not f.startswith("accuracy drop")]
        if not acc:
            entry["rows"].append(r)
            continue
        for k in ("reference", "delta", "max_drop", "pass"):
            acc.pop(k, None)  # the remote had no reference row: only the one measured here counts
        if same and ref.get("value") is not None and metric in acc.get("metrics", {}):
            acc["metric"], acc["value"] = metric, acc["metrics"][metric]
            acc["reference"], acc["delta"] = ref["value"], acc["value"] - ref["value"]
            acc["max_drop"] = max_drop_for(r.get("precision", "int8"), cfg.max_drop)
            acc["pass"] = bool(-acc["delta"] <= acc["max_drop"] + 1e-12)
            if not acc["pass"]:
                r["flags"].append(f"accuracy drop {-acc['delta']:.4f} > {acc['max_drop']:g}")
        entry["rows"].append(r)


# -------------------------------------------------------------------------------------- the device table


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
                delta = "(ref)" if r.get("reference") else cell(acc.get("delta"), "+.4f")
                line += [cell((r.get("model") or {}).get("p50_ms")), delta]
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
