#!/usr/bin/env python
"""Convert the demo model to every target and precision, bench every artifact on this machine, record it.

Writes ``benchmarks/results/bench_<model>_<arch>.{json,md,png}`` and rewrites the summary table between
``<!-- bench:start -->`` and ``<!-- bench:end -->`` in the top-level README.md (when both markers are there).

    python benchmarks/run_all.py                      # convert (if needed) + bench, 2 threads
    python benchmarks/run_all.py --skip-convert       # bench the artifacts already in artifacts/<model>/
    python benchmarks/run_all.py --threads 4 --runs 300
"""

from __future__ import annotations

import argparse
import platform
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "results"
sys.path.insert(0, str(REPO))  # run from a checkout without installing

# Speed targets for COCO 256x192, batch 1, 2 threads, on a 2-core x86 machine with AVX-512 VNNI and AMX.
TARGETS_MS = {("openvino", "int8"): 3.4, ("tflite", "int8"): 6.6, ("onnx", "fp32"): 14.8}
TARGET_NAMES = {("openvino", "int8"): "OpenVINO INT8", ("tflite", "int8"): "TFLite INT8 (XNNPACK)",
                ("onnx", "fp32"): "ONNX Runtime FP32"}  # fmt: skip


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    from edgepose.spec import DEFAULT_MODEL

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default=DEFAULT_MODEL, help=f"model to convert and bench (default {DEFAULT_MODEL})")
    p.add_argument("--artifacts", type=Path, help="artifact folder (default: artifacts/<model>/)")
    p.add_argument("--skip-convert", action="store_true", help="bench what is in the artifact folder")
    p.add_argument("--force-convert", action="store_true", help="convert even when every artifact exists")
    p.add_argument("--threads", type=int, default=2, help="inference threads (default 2, as the targets)")
    p.add_argument("--runs", type=int, default=200, help="timed runs per measurement (default 200)")
    p.add_argument("--warmup", type=int, default=20, help="warm-up runs (default 20)")
    p.add_argument("--limit", type=int, help="evaluate on the first N val images only")
    p.add_argument("--results", type=Path, default=RESULTS, help="output folder (default benchmarks/results)")
    p.add_argument("--readme", type=Path, default=REPO / "README.md", help="README whose bench section to rewrite")
    p.add_argument("--no-readme", action="store_true", help="leave the README alone")
    p.add_argument("--render", type=Path, metavar="JSON", help="no conversion and no bench: write the Markdown, "
                   "plot and README section again from a results JSON this script wrote (after a report change)")
    p.add_argument("--no-strict-precision", action="store_true", help="no strict-f32 rows beside the engines' "
                   "default-precision rows (OpenVINO FP32/FP16 run bf16 by default on AMX)")  # fmt: skip
    return p.parse_args(argv)


def convert_all(model: str, out: Path, force: bool) -> None:
    """Every target x precision through the converters' library call (skipped when all files exist)."""
    from edgepose.converters import targets  # noqa: F401  (registers every target folder)
    from edgepose.converters.base import TARGETS

    expected = [out / f"{model}_{p}{t.suffix}" for t in TARGETS.values() for p in t.precisions]
    if not force and all(f.is_file() for f in expected):
        print(f"run_all: all {len(expected)} artifacts already in {out}/ (--force-convert to redo)", file=sys.stderr)
        return
    from edgepose.converters.api import convert

    t0 = time.perf_counter()
    result = convert(model=model, targets="all", precisions="fp32,fp16,int8", out=out, progress=True)
    print(result.table())
    print(f"run_all: converted in {time.perf_counter() - t0:.0f} s", file=sys.stderr)


def target_lines(report: dict) -> list[str]:
    """Each speed target next to the measured model-alone p50 of the matching artifact."""
    lines = []
    for key, target in TARGETS_MS.items():
        row = next((r for r in report["rows"] if (r.get("format"), r.get("precision")) == key and not r["reference"]),
                   None)  # fmt: skip
        if row is None or row["status"] != "ok":
            lines.append(f"| {TARGET_NAMES[key]} | {target:.1f} | not measured | |")
            continue
        p50 = row["model"]["p50_ms"]
        verdict = "met" if p50 <= target else f"missed ({p50 / target:.1f}x)"
        lines.append(f"| {TARGET_NAMES[key]} | {target:.1f} | {p50:.2f} | {verdict} |")
    return lines


# issue 12's targets, as ratios of two rows measured side by side in this run: (row, peer, at most, name)
RATIO_TARGETS = [(("tflite", "int8"), ("openvino", "int8"), 1.1, "TFLite INT8 / OpenVINO INT8"),
                 (("tflite", "fp32"), ("onnx", "fp32"), 1.0, "TFLite FP32 / ONNX Runtime FP32"),
                 (("onnx", "int8"), ("onnx", "fp32"), 1.0, "ONNX Runtime INT8 / ONNX Runtime FP32")]  # fmt: skip
BEST_END_TO_END_MS = 3.0  # best artifact, box -> keypoints, no flip
PRE_POST_SHARE = 10.0  # sequential per-person pre/post, % of the fastest artifact's inference


def _plain_row(report: dict, key: tuple[str, str]) -> dict | None:
    """The default row of a format and precision: float input, the engine's default options, measured."""
    from edgepose.processing import INPUT_UINT8

    for r in report["rows"]:
        u8 = (r.get("runtime_info") or {}).get("input_kind") == INPUT_UINT8  # as report.label tells it
        plain = not r["reference"] and not r.get("runtime_options") and not u8
        if plain and r["status"] == "ok" and (r.get("format"), r.get("precision")) == key:
            return r
    return None


def ratio_lines(report: dict) -> list[str]:
    """Issue 12's relative targets: model-alone p50 ratios, end to end and pre/post share of the fastest."""
    lines = ["| target | measured | |", "|---|---:|---|"]
    for key, peer, limit, name in RATIO_TARGETS:
        a, b = _plain_row(report, key), _plain_row(report, peer)
        if a is None or b is None:
            lines.append(f"| {name} <= {limit:.1f}x | not measured | |")
            continue
        ratio = a["model"]["p50_ms"] / b["model"]["p50_ms"]
        lines.append(f"| {name} <= {limit:.1f}x | {ratio:.2f}x ({a['model']['p50_ms']:.2f} / "
                     f"{b['model']['p50_ms']:.2f} ms) | {'met' if ratio <= limit else 'missed'} |")  # fmt: skip
    rows = [r for r in report["rows"] if r["status"] == "ok" and not r["reference"] and not r.get("runtime_options")]
    if rows:
        best = min(rows, key=lambda r: r["pipeline"]["no_flip"]["p50_ms"])
        e2e = best["pipeline"]["no_flip"]["p50_ms"]
        lines.append(f"| best end to end (box -> keypoints, no flip) <= {BEST_END_TO_END_MS:.1f} ms | {e2e:.2f} ms "
                     f"({best['name']}) | {'met' if e2e <= BEST_END_TO_END_MS else 'missed'} |")  # fmt: skip
        fastest = min(rows, key=lambda r: r["model"]["p50_ms"])
        nf = fastest["pipeline"]["no_flip"]
        share = 100 * nf["pre_post_ms"] / nf["infer_ms"]
        lines.append(f"| pre/post per person <= {PRE_POST_SHARE:.0f}% of the fastest inference | {share:.1f}% "
                     f"({nf['pre_post_ms']:.3f} of {nf['infer_ms']:.3f} ms, {fastest['name']}) | "
                     f"{'met' if share <= PRE_POST_SHARE else 'missed'} |")  # fmt: skip
    return lines


def overhead_line(report: dict) -> str:
    rows = [r for r in report["rows"] if r["status"] == "ok"]
    if not rows:
        return ""
    parts = [f"{r['name']} {r['pipeline']['no_flip']['overhead_pct']:.1f}%" for r in rows]
    return "Pipeline pre/post (crop + decode) as a share of inference, target < 5%: " + ", ".join(parts)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    from edgepose.cli import setup_logging

    setup_logging()  # progress of convert and bench on stderr
    from edgepose.bench import BenchConfig, run_bench
    from edgepose.bench.plot import write_plot
    from edgepose.bench.report import (
        console_table,
        markdown,
        replace_between_markers,
        summary_markdown,
        write_json,
    )
    from edgepose.files import atomic_write as write_file

    if args.render:
        import json

        report = json.loads(args.render.read_text())
        stem = args.render.with_suffix("")
    else:
        out = args.artifacts or REPO / "artifacts" / args.model
        if not args.skip_convert:
            convert_all(args.model, out, args.force_convert)
        cfg = BenchConfig(model=args.model, artifacts=[out], threads=args.threads, runs=args.runs,
                          warmup=args.warmup, limit=args.limit, strict_precision=not args.no_strict_precision)
        report = run_bench(cfg).to_dict()
        arch = platform.machine().lower() or "unknown"
        stem = args.results / f"bench_{args.model}_{arch}"
        args.results.mkdir(parents=True, exist_ok=True)
        write_json(report, stem.with_suffix(".json"))
    print(console_table(report))

    targets = ["", "Speed targets (model alone, batch 1, 2 threads, 2-core x86 with AVX-512 VNNI/AMX):", "",
               "| artifact | target p50 ms | measured p50 ms | |", "|---|---:|---:|---|", *target_lines(report),
               "", "Relative targets (side by side in this run):", "", *ratio_lines(report),
               "", overhead_line(report)]  # fmt: skip
    write_file(stem.with_suffix(".md"), markdown(report) + "\n".join(targets) + "\n")
    skipped = write_plot(report, stem.with_suffix(".png"))
    print(skipped or f"run_all: wrote {stem}.{{json,md,png}}", file=sys.stderr)

    if not args.no_readme and args.readme.is_file():
        rel = stem.relative_to(REPO) if stem.is_relative_to(REPO) else stem
        link = f"Full table, speed targets, machine and plot: [`{rel}.md`]({rel}.md), [`{rel}.png`]({rel}.png)."
        body = summary_markdown(report) + "\n" + link + "\n"
        new = replace_between_markers(args.readme.read_text(), body)
        if new is None:
            print(f"run_all: {args.readme} has no bench markers; left unchanged", file=sys.stderr)
        else:
            mode = args.readme.stat().st_mode & 0o777
            write_file(args.readme, new)
            args.readme.chmod(mode)
            print(f"run_all: updated the bench section of {args.readme}", file=sys.stderr)
    return 1 if all(r["status"] != "ok" for r in report["rows"] if not r["reference"]) else 0


if __name__ == "__main__":
    sys.exit(main())
