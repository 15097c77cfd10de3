"""The bench report: :class:`BenchReport` (the rows and what they ran on) and its forms: console table, Markdown
(table + machine), JSON. The renderers read the report's JSON form (``BenchReport.to_dict()``), so a report
fetched from a remote machine renders the same way (the accuracy/latency plot is :mod:`edgepose.bench.plot`).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..files import atomic_write, json_text
from ..processing import INPUT_UINT8
from .config import SCHEMA
from .int8 import markdown_lines as int8_lines
from .row import BenchRow, options_tag

README_START, README_END = "<!-- bench:start -->", "<!-- bench:end -->"


@dataclass
class BenchReport:
    """What one bench found: the machine, the configuration, one :class:`~edgepose.bench.row.BenchRow` per
    artifact (and the reference), and notes."""

    machine: dict[str, Any]
    config: dict[str, Any]
    model: str
    metric: str | None
    rows: list[BenchRow] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def artifact_rows(self) -> list[BenchRow]:
        return [r for r in self.rows if not r.reference]

    @property
    def all_failed(self) -> bool:
        rows = self.artifact_rows
        return bool(rows) and all(r.status == "failed" for r in rows)

    def to_dict(self) -> dict[str, Any]:
        return {"schema": SCHEMA, "model": self.model, "metric": self.metric, "machine": self.machine,
                "config": self.config, "notes": self.notes, "rows": [r.to_dict() for r in self.rows]}  # fmt: skip


def grid(head: list[str], cells: list[list[str]], markdown: bool = False) -> list[str]:
    """The lines of a table: Markdown, or columns aligned with two spaces (the frame and detector tables)."""
    if markdown:
        return ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)] + ["| " + " | ".join(c) + " |" for c in cells]
    widths = [max(len(h), *(len(c[i]) for c in cells)) for i, h in enumerate(head)]
    return ["  ".join(x.ljust(w) for x, w in zip(row, widths)) for row in [head, *cells]]


def cell(v: Any, fmt: str = ".2f", none: str = "-") -> str:
    """A figure in a table cell: ``none`` for a missing or NaN one (also the device table of ``remote.report``)."""
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return none
    return format(v, fmt)


def _mb(v: Any) -> str:
    return "-" if v is None else f"{v / 1e6:.1f}"


def ran_note(row: dict[str, Any]) -> str:
    """What the engine really computed in, where the artifact's precision alone would not say it:
    ``ran bf16`` (an FP32/FP16 artifact computed in another precision: OpenVINO's default on AMX CPUs, FP16
    TFLite's float32 kernels), ``float ops bf16`` (an INT8 graph's float parts); empty when as labelled."""
    used, declared = row.get("precision_used"), row.get("precision")
    if not used or row.get("status", "ok") != "ok":
        return ""
    if declared in ("fp32", "fp16") and used != declared:
        return f"ran {used}"
    if declared == "int8" and used not in ("fp32", "int8"):
        return f"float ops {used}"
    return ""


def label(row: dict[str, Any]) -> str:
    """A short name for a row that says what ran: ``ONNX FP32``, ``OpenVINO FP32 (ran bf16)``, ``TFLite FP16
    (ran fp32)``, ``OpenVINO INT8 (float ops bf16)``, ``TFLite INT8 uint8-in`` (an artifact that takes the crop's
    bytes), ``OpenVINO FP32 [inference_precision=f32]`` (runtime options asked for); the reference is
    ``PyTorch FP32 (ref)``."""
    from ..runtimes import format_label

    fmt = format_label(row.get("format") or row.get("engine"))
    text = f"{fmt} {str(row.get('precision', '?')).upper()}"
    if (row.get("runtime_info") or {}).get("input_kind") == INPUT_UINT8:
        text += " uint8-in"  # made with --input uint8: takes the crop's bytes
    note = ran_note(row)
    text += f" ({note})" if note else ""
    text += options_tag(row.get("runtime_options") or {})  # --strict-precision: float32 compute forced
    return text + " (ref)" if row.get("reference") else text


def table_rows(report: dict[str, Any]) -> tuple[list[str], list[list[str]]]:
    """Header and cells shared by the console table and the Markdown table."""
    metric = report.get("metric") or "acc"
    head = ["artifact", "engine", metric, "Δ", "pass", "p50 ms", "p90 ms", "p99 ms", "inf/s", "pipe ms",
            "+flip ms", "pre/post", "first ms", "load s", "size MB", "RSS MB"]  # fmt: skip
    cells = []
    for r in report["rows"]:
        note = ran_note(r)
        name = label(r) if r.get("reference") else r["name"] + (f" ({note})" if note else "")
        if r["status"] != "ok":
            cells.append([name, r.get("engine") or "-", "FAILED: " + (r.get("error") or "?")] + [""] * (len(head) - 3))
            continue
        acc = r.get("accuracy") or {}
        m, pipe = r["model"], r["pipeline"]
        delta = acc.get("delta")
        passed = {True: "yes", False: "NO"}.get(acc.get("pass"), "-")
        over = pipe["no_flip"].get("overhead_pct")
        cells.append([
            name, r.get("engine", "-"), cell(acc.get("value"), ".4f"), cell(delta, "+.4f"), passed,
            cell(m["p50_ms"]), cell(m["p90_ms"]), cell(m["p99_ms"]), cell(m["throughput_per_s"], ".1f"),
            cell(pipe["no_flip"]["p50_ms"]), cell(pipe["flip_cost_ms"]),
            cell(over, ".1f") + "%" if over is not None else "-",
            cell(r.get("first_inference_ms")), cell(r.get("load_s"), ".3f"), _mb(r.get("size_bytes")),
            _mb((r.get("memory") or {}).get("peak_rss_delta_bytes")),
        ])  # fmt: skip
    return head, cells


def machine_lines(report: dict[str, Any]) -> list[str]:
    m, cfg = report["machine"], report["config"]
    v = m.get("versions", {})
    engines = ", ".join(f"{k} {v[k]}" for k in ("torch", "onnxruntime", "openvino", "ai-edge-litert",
                                                 "tflite-runtime", "tensorflow") if k in v)  # fmt: skip
    flags = ", ".join(m.get("cpu_flags") or []) or "-"
    mem = f"{m['memory_bytes'] / 2**30:.1f} GiB RAM" if m.get("memory_bytes") else "RAM unknown"
    ds = cfg.get("dataset") or {}
    data = f"{ds.get('name')} `{Path(ds['ann']).name}`, {ds.get('num_images')} images" if ds else "none"
    load = f"{m.get('load_average')} at the start, {m.get('load_average_end')} at the end"
    return [
        f"CPU: {m['cpu']} ({m['arch']}), {m.get('physical_cores') or '?'} cores / {m['logical_cpus']} logical, "
        f"{mem}; features: {flags}",
        f"Threads used: {cfg.get('threads')}; batch {cfg.get('batch')}; {cfg.get('warmup')} warm-up + "
        f"{cfg.get('runs')} timed runs per measurement; load average (1/5/15 min): {load}",
        f"OS: {m.get('os_release') or m['os']}" + (f" ({m['os']})" if m.get("os_release") else "")
        + f"; Python {m['python']}; numpy {v.get('numpy')}, OpenCV {v.get('opencv')}",
        f"Engines: {engines or '-'}",
        f"Accuracy data: {data}; flip test {'on' if cfg.get('flip_test') else 'off'}; reference: "
        + ((cfg.get("reference_accuracy") or {}).get("source") or "none"),
        f"Date: {m.get('date')}",
    ] + thermal_lines(m)


def thermal_lines(m: dict[str, Any]) -> list[str]:
    """Governor, clock, temperature at the start and the end, throttling (empty where the machine tells none)."""
    t0, t1 = m.get("thermal") or {}, m.get("thermal_end") or {}
    parts = []
    if t0.get("governor") or t0.get("cpu_mhz"):
        parts.append(f"governor {t0.get('governor') or '?'}, {cell(t0.get('cpu_mhz'), '.0f', '?')} MHz now "
                     f"(max {cell(t0.get('cpu_max_mhz'), '.0f', '?')})")  # fmt: skip
    if t0.get("temperature_c") is not None or t1.get("temperature_c") is not None:
        parts.append(f"CPU {cell(t0.get('temperature_c'), '.1f', '?')} °C at the start, "
                     f"{cell(t1.get('temperature_c'), '.1f', '?')} °C at the end "
                     f"({t0.get('temperature_source') or t1.get('temperature_source')})")  # fmt: skip
    thr = t1.get("throttling") or t0.get("throttling")
    if thr:
        parts.append(f"throttling: {', '.join(thr['flags']) or 'none'} ({thr['source']}"
                     + (f" {thr['word']})" if thr.get("word") else ")"))  # fmt: skip
    return [f"Thermal: {'; '.join(parts)}"] if parts else []


def flag_lines(report: dict[str, Any]) -> list[str]:
    out = [f"{r['name']}: {f}" for r in report["rows"] for f in r.get("flags", [])]
    out += [
        f"{r['name']}: precision used by the engine: {r['precision_used']}"
        for r in report["rows"]
        if r["status"] == "ok" and r.get("precision") in ("fp32", "fp16")  # int8 graphs keep float parts in float
        and r.get("precision_used") and r["precision_used"] != r.get("precision")
        and not any("ran in" in f for f in r.get("flags", []))
    ]  # fmt: skip
    rewrites: dict[str, list[str]] = {}  # what was changed in a graph, as its metadata records it
    for r in report["rows"]:
        for g in r.get("rewrites") or []:
            rewrites.setdefault(g, []).append(r["name"])
    out += [f"graph rewrite in {', '.join(names)}: {g}" for g, names in rewrites.items()]
    return out + list(report.get("notes", []))


def console_table(report: dict[str, Any]) -> str:
    head, cells = table_rows(report)
    ran = [c for c in cells if not c[2].startswith("FAILED")]
    widths = [max([len(head[i])] + [len(c[i]) for c in (ran if i < 3 else cells)]) for i in range(len(head))]

    def line(c: list[str]) -> str:
        if c[2].startswith("FAILED"):
            return "  ".join([c[0].ljust(widths[0]), c[1].ljust(widths[1]), c[2]])
        return "  ".join(x.rjust(w) if i >= 2 else x.ljust(w) for i, (x, w) in enumerate(zip(c, widths))).rstrip()

    out = [line(head), "  ".join("-" * w for w in widths)] + [line(c) for c in cells]
    extra = flag_lines(report)
    out += [""] + [f"* {x}" for x in extra] if extra else []
    out += [""] + machine_lines(report)
    return "\n".join(out)


def markdown(report: dict[str, Any], title: str | None = None) -> str:
    head, cells = table_rows(report)
    m = report["machine"]
    title = title or f"{report['model']} on {m['cpu']} ({m['arch']}), {report['config'].get('threads')} threads"
    esc = lambda s: s.replace("|", "\\|")
    out = [
        f"### {title}",
        "",
        "| " + " | ".join(head) + " |",
        "|" + "|".join(["---"] * 2 + ["---:"] * (len(head) - 2)) + "|",
    ]
    for c in cells:
        if c[2].startswith("FAILED"):
            c = [c[0], c[1], "**failed**: " + c[2][len("FAILED: ") :]] + [""] * (len(head) - 3)
        out.append("| " + " | ".join(esc(x) for x in c) + " |")
    out += ["", LEGEND, ""]
    out += int8_lines(report["rows"])
    extra = flag_lines(report)
    if extra:
        out += ["Flags and notes:", ""] + [f"- {esc(x)}" for x in extra] + [""]
    out += ["Machine:", ""] + [f"- {x}" for x in machine_lines(report)]
    return "\n".join(out) + "\n"


LEGEND = (
    "Δ: accuracy minus the PyTorch FP32 original's; pass: the drop is within the allowed maximum "
    "(default 0.01 for FP32/FP16, 0.03 for INT8). p50/p90/p99: model alone, one call at the batch size. "
    "pipe ms: the per-person pipeline p50 (crop + normalise + inference + decode) without flip; +flip ms: "
    "what the flip test adds; pre/post: crop+decode time as a share of inference; first ms: first inference "
    "after load; RSS MB: peak resident-memory growth over load and inference; size MB: the artifact's files "
    "(.xml+.bin for OpenVINO). (ran bf16) / (float ops bf16): the precision the engine reported computing in, "
    "where it is not the artifact's own (OpenVINO's CPU plugin picks bf16 on AMX/AVX512-BF16 CPUs unless told "
    "f32; FP16 TFLite widens its fp16 weights and runs float32 kernels); accuracy is measured in that precision. "
    "[inference_precision=f32]: the same artifact with float32 forced (edgepose bench --strict-precision)."
)


def summary_markdown(report: dict[str, Any]) -> str:
    """A short table for the top-level README."""
    metric = report.get("metric") or "accuracy"
    m = report["machine"]
    out = [
        f"{report['model']} on {m['cpu']} ({m['arch']}), {report['config'].get('threads')} threads, batch "
        f"{report['config'].get('batch')}, {m.get('date', '')[:10]}:",
        "",
        f"| artifact | {metric} (Δ vs PyTorch) | model p50 ms | pipeline p50 ms (flip) | size MB |",
        "|---|---:|---:|---:|---:|",
    ]
    for r in report["rows"]:
        if r["status"] != "ok":
            out.append(f"| {label(r)} | failed: {(r.get('error') or '')[:80].replace('|', '/')} | | | |")
            continue
        acc = r.get("accuracy") or {}
        a = cell(acc.get("value"), ".4f")
        if acc.get("delta") is not None:
            a += f" ({acc['delta']:+.4f})"
        pipe = r["pipeline"]
        out.append(
            f"| {label(r)} | {a} | {r['model']['p50_ms']:.2f} | {pipe['no_flip']['p50_ms']:.2f} "
            f"({pipe['flip']['p50_ms']:.2f}) | {_mb(r.get('size_bytes'))} |"
        )
    return "\n".join(out) + "\n"


def finite(obj: Any) -> Any:
    """``obj`` with every NaN or infinity replaced by ``None`` (JSON has no such numbers: a measurement that is
    not a number is written as null, never as a bare ``NaN`` that JSON readers reject)."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: finite(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [finite(v) for v in obj]
    return obj


def write_json(report: dict[str, Any], path: str | Path) -> None:
    atomic_write(path, json_text(finite(report), str(path), indent=2, default=str) + "\n")


def write_markdown(report: dict[str, Any], path: str | Path) -> None:
    atomic_write(path, markdown(report))


def replace_between_markers(text: str, body: str, start: str = README_START, end: str = README_END) -> str | None:
    """``text`` with everything between the markers replaced by ``body``; ``None`` when a marker is missing."""
    pat = re.compile(re.escape(start) + r".*?" + re.escape(end), re.DOTALL)
    if not pat.search(text):
        return None
    return pat.sub(lambda _: f"{start}\n{body.strip()}\n{end}", text, count=1)
