"""Every target x precision x head form, engine alone, side by side in one process: what ``--head auto`` picks.

    python benchmarks/head_forms.py [--model NAME] [--threads 2] [--runs 40] [--repeats 3] [--num-calib 100]
                                    [--work DIR] [--skip-convert]

For each head form (``converters.transforms.HEAD_FORMS``: the original ConvTranspose head and the two exact
sub-pixel rewrites) the model is converted with ``edgepose.converters.api.convert(head=FORM)`` to every target and
precision (parity checked against the original PyTorch model as usual; a failure is recorded, not fatal). Then
all artifacts are opened in this one process and timed engine alone (the engine's own call on a prepared input in
its layout: LiteRT ``set_tensor`` + ``invoke``, ONNX Runtime ``session.run``, OpenVINO ``infer_request.infer``),
batch 1, ``--threads`` threads. Per target the calls of all its artifacts (forms and precisions) are interleaved
one by one (warm-up, then ``--runs`` rounds of one call each), so that a slow phase of a loaded machine hits them
alike; this is repeated ``--repeats`` times and the best (minimum) of the medians is reported. The load average
is recorded at the start and the end.

Writes ``benchmarks/results/head_forms.json`` (every number, the machine, the parity figures, TFLite operator
counts and XNNPACK partitions) and ``head_forms.md`` (the table, the fastest form per target and precision, and
whether the ``head_forms`` each target declares for ``--head auto`` agree with it).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable

import numpy as np

RESULTS = Path(__file__).resolve().parent / "results"
SUFFIX = {"onnx": ".onnx", "tflite": ".tflite", "openvino": ".xml"}


def engine_call(rt: Any, x: np.ndarray) -> Callable[[], object]:
    """The engine's own inference call on ``x`` (NCHW float32, batch 1), without the runtime face's layout work."""
    engine = rt.engine
    if engine == "litert":
        it, index = rt.interpreter, rt.input["index"]
        xin = np.ascontiguousarray(rt._engine_input(x, rt.layout_in))
        if rt.input["dtype"] != np.float32 and xin.dtype == np.float32:  # --int8-io: quantised once, here
            from edgepose.runtimes.io import quantize

            scale, zero = rt.input["quantization"]
            xin = quantize(xin, scale, zero, np.dtype(rt.input["dtype"]).name)

        def call() -> None:
            it.set_tensor(index, xin)
            it.invoke()

        return call
    if engine == "onnxruntime":
        sess, names = rt.session, [rt.output_name]
        feeds = {rt.input_name: np.ascontiguousarray(rt._engine_input(x, rt.layout))}
        return lambda: sess.run(names, feeds)
    if engine == "openvino":
        req, xin = rt.request, np.ascontiguousarray(rt._engine_input(x, rt.layout))
        return lambda: req.infer([xin], share_inputs=True)
    return lambda: rt(x)  # an engine this script does not know: the runtime face


def convert_all(model: str | None, forms: list[str], work: Path, num_calib: int, skip: bool) -> dict[str, Any]:
    from edgepose.converters.api import convert

    out: dict[str, Any] = {}
    for form in forms:
        folder = work / form
        if skip and folder.is_dir() and any(folder.iterdir()):
            print(f"[head_forms] {form}: using {folder}", file=sys.stderr, flush=True)
            out[form] = {"folder": str(folder), "converted": False}
            continue
        print(f"[head_forms] converting with head={form}", file=sys.stderr, flush=True)
        res = convert(model=model, targets="all", precisions="fp32,fp16,int8", num_calib=num_calib, out=folder,
                      allow_parity_failure=True, progress=True, reference_accuracy=False, head=form)  # fmt: skip
        out[form] = {"folder": str(folder), "converted": True, "model": res.model,
                     "failed": {a.path.name: a.failed for a in res.artifacts if a.failed}}  # fmt: skip
    return out


def artifacts(forms: list[str], work: Path) -> list[dict[str, Any]]:
    """Every artifact of every form, with its metadata facts."""
    from edgepose.artifact import read_metadata

    rows = []
    for form in forms:
        for path in sorted((work / form).iterdir()):
            if path.suffix not in SUFFIX.values():
                continue
            meta = read_metadata(path) or {}
            conv = meta.get("conversion") or {}
            par = meta.get("parity") or {}
            parity = {k: par.get(k) for k in ("snr_db", "rel_max_err", "kp_within", "passed")}
            rows.append({"form": form, "target": meta.get("format"), "precision": meta.get("precision"),
                         "file": path.name, "path": path, "head_in_metadata": conv.get("head"),
                         "graph_rewrites": conv.get("graph_rewrites"), "size_bytes": path.stat().st_size,
                         "parity": parity})  # fmt: skip
    return rows


def tflite_facts(path: Path) -> dict[str, Any]:
    from edgepose.converters.targets.tflite.convert import tflite_operators, xnnpack_delegation

    ops = tflite_operators(path)
    return {"operators": ops, "transpose_conv": sum(n for k, n in ops.items() if k.startswith("TRANSPOSE_CONV ")),
            "xnnpack": xnnpack_delegation(path)}  # fmt: skip


def time_all(rows: list[dict[str, Any]], spec: Any, threads: int, runs: int, warmup: int, repeats: int) -> None:
    """Per target, the calls of all its artifacts (every form and precision) interleaved one by one (A B C A B C
    ...), so that a change of load on a shared machine hits them alike; ``repeats`` rounds, a median per round."""
    import gc
    import time

    from edgepose.runtimes import load_runtime

    w, h = spec.input_size
    x = np.random.default_rng(0).standard_normal((1, 3, h, w)).astype(np.float32)
    calls = []
    for r in rows:
        rt = load_runtime(r["path"], threads=threads)
        info = rt.info()
        keys = ("engine", "version", "precision_used", "inference_precision", "providers", "xnnpack", "input_kind")
        r["runtime"] = {k: info.get(k) for k in keys if info.get(k) is not None}
        calls.append((rt, engine_call(rt, x)))
        r["medians_ms"], r["p10s_ms"] = [], []
    groups: dict[tuple, list[int]] = {}
    for i, r in enumerate(rows):
        groups.setdefault(r["target"], []).append(i)
    for rep in range(repeats):
        load = os.getloadavg()[0]
        print(f"[head_forms] timing round {rep + 1}/{repeats}, load {load:.2f}", file=sys.stderr, flush=True)
        for members in groups.values():
            for i in members:
                for _ in range(warmup):
                    calls[i][1]()
            ns = np.zeros((len(members), runs), dtype=np.int64)
            gc.disable()
            try:
                for k in range(runs):
                    for j, i in enumerate(members):
                        t0 = time.perf_counter_ns()
                        calls[i][1]()
                        ns[j, k] = time.perf_counter_ns() - t0
            finally:
                gc.enable()
            for j, i in enumerate(members):
                rows[i]["medians_ms"].append(float(np.median(ns[j]) / 1e6))
                rows[i]["p10s_ms"].append(float(np.percentile(ns[j], 10) / 1e6))
    for r in rows:
        r["best_ms"] = min(r["medians_ms"])
        r["best_p10_ms"] = min(r["p10s_ms"])  # the less-disturbed calls: a cross-check when the machine is loaded
    calls.clear()


def summarise(rows: list[dict[str, Any]], forms: list[str]) -> list[dict[str, Any]]:
    """One entry per target x precision: ms per form, ratio to the original head, fastest, declared auto form."""
    from edgepose.converters.base import TARGETS

    out = []
    keys = dict.fromkeys((r["target"], r["precision"]) for r in rows)
    for target, prec in keys:
        by_form = {r["form"]: r for r in rows if (r["target"], r["precision"]) == (target, prec)}
        ms = {f: by_form[f]["best_ms"] for f in forms if f in by_form}
        ok = {f: v for f, v in ms.items() if by_form[f]["parity"].get("passed")}
        fastest = min(ok, key=ok.get) if ok else None
        base = ms.get("deconv")
        declared = TARGETS[target].head_forms.get(prec, "deconv") if target in TARGETS else None
        rel = (ms[declared] / ms[fastest]) if fastest and declared in ms else None
        out.append({"target": target, "precision": prec, "ms": ms,
                    "speedup_vs_deconv": {f: base / v for f, v in ms.items()} if base else {},
                    "fastest": fastest, "declared_auto": declared,
                    "auto_is_fastest": declared == fastest,
                    "auto_vs_fastest": rel})  # fmt: skip
    return out


def markdown(record: dict[str, Any]) -> str:
    forms = record["forms"]
    m = record["machine"]
    lines = [
        f"# Head forms: {record['model']}, engine alone, batch 1, {record['threads']} threads",
        "",
        f"Machine: {m.get('cpu')} ({m.get('arch')}), {m.get('logical_cpus')} logical CPUs; "
        f"load average (1/5/15 min) at start {record['load_average_start']}, at end {record['load_average_end']}; "
        f"{record['created']}.",
        f"Each cell: best of {record['repeats']} medians of {record['runs']} calls (ms; a target's calls interleaved), "
        "and the speed-up over the original ConvTranspose head. Forms whose artifact failed parity are marked and "
        "never chosen.",
        "",
        "| target | precision | " + " | ".join(forms) + " | fastest | `auto` declares |",
        "|---|---|" + "---:|" * len(forms) + "---|---|",
    ]
    for s in record["summary"]:
        cells = []
        for f in forms:
            if f not in s["ms"]:
                cells.append("-")
                continue
            row = next(r for r in record["rows"] if (r["form"], r["target"], r["precision"]) ==
                       (f, s["target"], s["precision"]))  # fmt: skip
            bad = "" if row["parity"].get("passed") else " (parity FAILED)"
            cells.append(f"{s['ms'][f]:.2f} (x{s['speedup_vs_deconv'].get(f, 0):.2f}){bad}")
        rel = s["auto_vs_fastest"]
        mark = f" ({rel:.2f}x the fastest's time)" if rel and not s["auto_is_fastest"] else ""
        lines.append(f"| {s['target']} | {s['precision']} | " + " | ".join(cells) +
                     f" | {s['fastest']} | {s['declared_auto']}{mark} |")  # fmt: skip
    lines += ["", "Cross-check, best 10th percentile (ms; less sensitive to other processes on a loaded machine):", "",
              "| target | precision | " + " | ".join(forms) + " |", "|---|---|" + "---:|" * len(forms)]  # fmt: skip
    for s in record["summary"]:
        cells = []
        for f in forms:
            row = next((r for r in record["rows"] if (r["form"], r["target"], r["precision"]) ==
                        (f, s["target"], s["precision"])), None)  # fmt: skip
            cells.append("-" if row is None else f"{row['best_p10_ms']:.2f}")
        lines.append(f"| {s['target']} | {s['precision']} | " + " | ".join(cells) + " |")
    lines += ["", "Parity against the original PyTorch model (16 holdout crops; SNR dB):", "",
              "| target | precision | " + " | ".join(forms) + " |", "|---|---|" + "---:|" * len(forms)]  # fmt: skip
    for s in record["summary"]:
        cells = []
        for f in forms:
            row = next((r for r in record["rows"] if (r["form"], r["target"], r["precision"]) ==
                        (f, s["target"], s["precision"])), None)  # fmt: skip
            snr = (row or {}).get("parity", {}).get("snr_db")
            cells.append("-" if snr is None else f"{snr:.1f}")
        lines.append(f"| {s['target']} | {s['precision']} | " + " | ".join(cells) + " |")
    tfl = [r for r in record["rows"] if r.get("tflite")]
    if tfl:
        lines += ["", "TFLite graphs (operators from the flatbuffer; XNNPACK partitions from the interpreter):", "",
                  "| file | form | TRANSPOSE_CONV ops | XNNPACK partitions | whole graph in XNNPACK |",
                  "|---|---|---:|---:|---|"]  # fmt: skip
        for r in tfl:
            x = r["tflite"]["xnnpack"]
            lines.append(f"| {r['file']} | {r['form']} | {r['tflite']['transpose_conv']} | {x['partitions']} | "
                         f"{'yes' if x['whole_graph'] else 'NO'} |")  # fmt: skip
    onnx = {s["precision"]: s for s in record["summary"] if s["target"] == "onnx"}
    if "fp32" in onnx and "int8" in onnx:
        f32, i8 = onnx["fp32"], onnx["int8"]
        a32, a8 = f32["declared_auto"], i8["declared_auto"]
        if a32 in f32["ms"] and a8 in i8["ms"]:
            verdict = "faster" if i8["ms"][a8] < f32["ms"][a32] else "NOT faster"
            lines += ["", f"ONNX Runtime with `--head auto`: INT8 ({a8}) {i8['ms'][a8]:.2f} ms vs FP32 ({a32}) "
                      f"{f32['ms'][a32]:.2f} ms: INT8 is {verdict} than FP32."]  # fmt: skip
    return "\n".join(lines) + "\n"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default=None, help="zoo model (default: the demo model)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--runs", type=int, default=40, help="timed calls per round and artifact")
    ap.add_argument("--warmup", type=int, default=5)
    ap.add_argument("--repeats", type=int, default=3, help="rounds; the best round median is kept")
    ap.add_argument("--num-calib", type=int, default=100)
    ap.add_argument("--work", type=Path, help="folder for the artifacts (default: a temporary one)")
    ap.add_argument("--skip-convert", action="store_true", help="reuse the artifacts already in --work/<form>/")
    ap.add_argument("--targets", default="all", help="time only these targets (comma list; default: all)")
    ap.add_argument("--out", type=Path, default=RESULTS, help="results folder (default: benchmarks/results)")
    args = ap.parse_args()
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    from edgepose.cli import setup_logging

    setup_logging()  # convert's progress on stderr

    from edgepose.converters.transforms import HEAD_FORMS

    from edgepose.bench.machine import load_average, machine_info
    from edgepose.files import atomic_write
    from edgepose.spec import DEFAULT_MODEL, get_spec

    spec = get_spec(args.model or DEFAULT_MODEL)
    forms = list(HEAD_FORMS)
    load_start = load_average()
    machine = machine_info(args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        work = args.work or Path(tmp)
        conversions = convert_all(spec.name, forms, work, args.num_calib, args.skip_convert)
        rows = [r for r in artifacts(forms, work) if args.targets == "all" or r["target"] in args.targets.split(",")]
        for r in rows:
            if r["target"] == "tflite":
                r["tflite"] = tflite_facts(r["path"])
        time_all(rows, spec, args.threads, args.runs, args.warmup, args.repeats)
    for r in rows:
        r["path"] = r.pop("path").name
    record = {
        "model": spec.name, "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "threads": args.threads, "batch": 1, "runs": args.runs, "warmup": args.warmup, "repeats": args.repeats,
        "num_calib": args.num_calib, "forms": forms, "machine": machine, "load_average_start": load_start,
        "load_average_end": load_average(), "conversions": conversions, "rows": rows,
        "summary": summarise(rows, forms),
    }  # fmt: skip
    args.out.mkdir(parents=True, exist_ok=True)
    atomic_write(args.out / "head_forms.json", json.dumps(record, indent=2, default=str) + "\n")
    md = markdown(record)
    atomic_write(args.out / "head_forms.md", md)
    print(md)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
