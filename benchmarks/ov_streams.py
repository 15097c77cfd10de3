"""Three persons with the flip test (6 crops) on OpenVINO, engine alone: one call per crop, one call of 6, and two
CPU streams of 3 (``NUM_STREAMS=2``): can batching reach issue 25's 0.75x of single calls on this CPU?

    python benchmarks/ov_streams.py --artifact POSE.xml [--threads 2] [--runs 10] [--rounds 5]

The IR is reshaped to a dynamic batch and compiled twice, ``INFERENCE_NUM_THREADS=--threads`` both times: as
``edgepose`` runs it (``PERFORMANCE_HINT=LATENCY``, one stream) and with two streams (one thread each), the 6
crops then split over an ``AsyncInferQueue`` of two requests. Also timed: one crop on each compiled model (what
a frame with one person pays). Rounds interleave the forms; each form's best round median is kept; the load
average is recorded. Writes ``benchmarks/results/ov_streams.{json,md}``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

RESULTS = Path(__file__).resolve().parent / "results"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--artifact", type=Path, required=True, help="a pose model's OpenVINO IR (.xml)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--runs", type=int, default=10)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--out", type=Path, default=RESULTS)
    args = ap.parse_args()
    import openvino as ov

    from edgepose.bench.machine import load_average, machine_info
    from edgepose.files import atomic_write

    load_start = load_average()
    core = ov.Core()
    model = core.read_model(str(args.artifact))
    shape = list(model.inputs[0].get_partial_shape())
    model.reshape([-1, *[int(str(d)) for d in shape[1:]]])
    latency = core.compile_model(model, "CPU", {"INFERENCE_NUM_THREADS": args.threads, "PERFORMANCE_HINT": "LATENCY"})
    streams = core.compile_model(model, "CPU", {"INFERENCE_NUM_THREADS": args.threads, "NUM_STREAMS": 2})
    req, sreq = latency.create_infer_request(), streams.create_infer_request()
    queue = ov.AsyncInferQueue(streams, 2)
    x = np.random.default_rng(0).standard_normal((6, *[int(str(d)) for d in shape[1:]])).astype(np.float32)

    def two_streams() -> None:
        queue.start_async([x[:3]])
        queue.start_async([x[3:]])
        queue.wait_all()

    forms = {
        "6 single calls (one stream)": lambda: [req.infer([x[i : i + 1]]) for i in range(6)],
        "one call of 6 (one stream)": lambda: req.infer([x]),
        "two streams of 3": two_streams,
        "1 crop (one stream)": lambda: req.infer([x[:1]]),
        "1 crop (two-stream model)": lambda: sreq.infer([x[:1]]),
    }
    for f in forms.values():
        for _ in range(3):
            f()
    got: dict[str, list[float]] = {k: [] for k in forms}
    for _ in range(args.rounds):
        for k, f in forms.items():
            ts = []
            for _ in range(args.runs):
                t0 = time.perf_counter()
                f()
                ts.append(time.perf_counter() - t0)
            got[k].append(statistics.median(ts) * 1e3)
    best = {k: round(min(v), 2) for k, v in got.items()}
    single = best["6 single calls (one stream)"]
    record = {"created": datetime.now(timezone.utc).isoformat(timespec="seconds"), "artifact": args.artifact.name,
              "threads": args.threads, "runs": args.runs, "rounds": args.rounds, "machine": machine_info(args.threads),
              "load_average_start": load_start, "load_average_end": load_average(),
              "streams": int(streams.get_property("NUM_STREAMS")), "openvino": ov.get_version(),
              "rounds_ms": got, "best_ms": best}  # fmt: skip
    record["ratio_to_single_calls"] = {k: round(v / single, 3) for k, v in best.items() if "crop" not in k}
    m = record["machine"]
    lines = [f"# Six crops on OpenVINO, engine alone: {args.artifact.name}, {args.threads} threads", "",
             f"Machine: {m.get('cpu')} ({m.get('arch')}); OpenVINO {record['openvino']}; load average at start "
             f"{load_start}, at end {record['load_average_end']}; {record['created']}. Best of {args.rounds} "
             f"round medians of {args.runs} calls (ms).", "", "| form | ms | vs 6 single calls |", "|---|---:|---:|"]
    for k, v in best.items():
        ratio = record["ratio_to_single_calls"].get(k)
        lines.append(f"| {k} | {v:.2f} | {'' if ratio is None else f'{ratio:.2f}x'} |")
    args.out.mkdir(parents=True, exist_ok=True)
    atomic_write(args.out / "ov_streams.json", json.dumps(record, indent=2) + "\n")
    atomic_write(args.out / "ov_streams.md", "\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
