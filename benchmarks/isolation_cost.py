"""What the hardening costs: a bench row in its own process against the same row in-process, and the artifact
integrity check (sha256 of every file) cold and cached, side by side in one process.

    python benchmarks/isolation_cost.py                      # every artifact in artifacts/<demo model>/
    python benchmarks/isolation_cost.py --artifacts DIR_OR_FILES --rounds 5 --runs 20

For each artifact, in each of ``--rounds`` rounds (alternating the order, so that a change of machine load hits
both alike): the wall time of one ``--no-accuracy`` bench row through :func:`edgepose.bench.isolate.run_isolated`
(fork server, started once, and the engine's import in every child) and through
:func:`edgepose.bench.row.bench_row` in this process (engine already imported after the first round); the
median round is reported, with the difference. Then
``verify_artifact`` with an empty hash cache (cold: every file hashed) and again (cached: a stat and a lookup).

Writes ``benchmarks/results/isolation_cost.json`` and ``.md`` with the machine, threads and load average.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "results"


def main() -> None:
    from edgepose import files
    from edgepose.bench import BenchConfig, machine
    from edgepose.bench.data import artifact_size, discover_artifacts, timing_sample
    from edgepose.bench.isolate import run_isolated
    from edgepose.bench.row import bench_row
    from edgepose.cli import setup_logging
    from edgepose.files import atomic_write, json_text
    from edgepose.runtimes.artifact import verify_artifact
    from edgepose.spec import DEFAULT_MODEL, get_spec

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default=DEFAULT_MODEL)
    ap.add_argument("--artifacts", nargs="+", help="artifact files/folders (default: artifacts/<model>/)")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--runs", type=int, default=20)
    ap.add_argument("--threads", type=int, default=machine.usable_cpus())
    ap.add_argument("--out", default=str(RESULTS / "isolation_cost"), help="output stem (.json and .md)")
    args = ap.parse_args()
    setup_logging(quiet=True)

    spec = get_spec(args.model)
    paths = discover_artifacts(args.artifacts or [REPO / "artifacts" / spec.name])
    cfg = BenchConfig(model=spec.name, accuracy=False, runs=args.runs, warmup=2, threads=args.threads, progress=False)
    image, boxes, _ = timing_sample(None)
    rows = []
    for path in paths:
        child, inproc = [], []
        for r in range(args.rounds):
            order = [("child", child), ("in-process", inproc)]
            for how, acc in order if r % 2 == 0 else order[::-1]:
                t0 = time.perf_counter()
                row = (run_isolated(cfg, spec, path, None, (image, boxes)) if how == "child"
                       else bench_row(cfg, spec, path, None, (image, boxes)))  # fmt: skip
                acc.append(time.perf_counter() - t0)
                assert row.status == "ok", (path, how, row.error)
        files._HASHES.clear()
        store = files.cache_dir(files._HASH_FILE)
        saved = store.read_bytes() if store.is_file() else None
        store.unlink(missing_ok=True)
        t0 = time.perf_counter()
        verify_artifact(path)
        cold = time.perf_counter() - t0
        t0 = time.perf_counter()
        verify_artifact(path)
        cached = time.perf_counter() - t0
        if saved is not None:
            atomic_write(store, saved)
        mb = artifact_size(path) / 1e6
        rows.append({"artifact": path.name, "size_mb": round(mb, 1), "row_child_s": statistics.median(child),
                     "row_in_process_s": statistics.median(inproc),
                     "overhead_s": statistics.median(child) - statistics.median(inproc),
                     "verify_cold_ms": cold * 1e3, "verify_cached_ms": cached * 1e3})  # fmt: skip
        print(json.dumps(rows[-1]))
    doc = {"machine": machine.machine_info(args.threads), "load_average_end": machine.load_average(),
           "rounds": args.rounds, "runs": args.runs, "rows": rows}  # fmt: skip
    out = Path(args.out)
    atomic_write(out.with_suffix(".json"), json_text(doc, str(out), indent=2) + "\n")
    lines = ["| artifact | MB | row in child s | row in-process s | overhead s | verify cold ms | verify cached ms |",
             "|---|---:|---:|---:|---:|---:|---:|"]  # fmt: skip
    lines += [f"| {r['artifact']} | {r['size_mb']} | {r['row_child_s']:.2f} | {r['row_in_process_s']:.2f} | "
              f"{r['overhead_s']:+.2f} | {r['verify_cold_ms']:.0f} | {r['verify_cached_ms']:.1f} |" for r in rows]
    load = doc["load_average_end"]
    head = f"{doc['machine'].get('cpu', '')}, {args.threads} threads, load average at the end {load}, pid {os.getpid()}"
    atomic_write(out.with_suffix(".md"), "\n".join([f"# Isolation and integrity cost\n\n{head}\n", *lines]) + "\n")
    print(f"wrote {out.with_suffix('.json')} and .md")


if __name__ == "__main__":
    main()
