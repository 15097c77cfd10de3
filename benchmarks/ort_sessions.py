"""Two ONNX Runtime sessions called in turn (the frame loop's detector, then its pose model), with and without
their threads spinning on after each call: what ``OnnxRuntimeOptions.stop_spinning`` (default on) is for.

    python benchmarks/ort_sessions.py --pose POSE.onnx --detector DETECTOR.onnx [--threads 2] [--runs 40]
                                      [--repeats 3]

For each setting (``stop_spinning`` False: ONNX Runtime's default, the pools spin on after a call; True:
``session.force_spinning_stop``), a pose session and a detector session are opened through edgepose's runtime
and timed, medians of ``--runs`` calls: each alone (one model called again and again), then in turn (detector,
pose, pose: the frame loop's order for one person and the flip test). The settings are measured in alternating
rounds (``--repeats``; best round kept), with the load average at the start and the end. Writes
``benchmarks/results/ort_sessions.{json,md}``.
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


def _median_ms(call, runs: int) -> float:
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        call()
        times.append(time.perf_counter() - t0)
    return statistics.median(times) * 1e3


def measure(pose_path: Path, det_path: Path, threads: int, stop: bool, runs: int) -> dict[str, float]:
    from edgepose.runtimes import load_runtime

    pose = load_runtime(pose_path, threads=threads, stop_spinning=stop)
    det = load_runtime(det_path, threads=threads, stop_spinning=stop)
    rng = np.random.default_rng(0)
    xp = rng.standard_normal((1, 3, *pose.session.get_inputs()[0].shape[2:])).astype(np.float32)
    xd = rng.standard_normal((1, 3, *det.session.get_inputs()[0].shape[2:])).astype(np.float32)
    for _ in range(5):  # warm-up, in turn
        det(xd)
        pose(xp)
    alone_pose, alone_det = _median_ms(lambda: pose(xp), runs), _median_ms(lambda: det(xd), runs)
    turn_det, turn_pose = [], []
    for _ in range(runs):
        t0 = time.perf_counter()
        det(xd)
        t1 = time.perf_counter()
        pose(xp)
        pose(xp)
        turn_det.append(t1 - t0)
        turn_pose.append((time.perf_counter() - t1) / 2)
    return {"pose_alone_ms": round(alone_pose, 2), "detector_alone_ms": round(alone_det, 2),
            "detector_in_turn_ms": round(statistics.median(turn_det) * 1e3, 2),
            "pose_in_turn_ms": round(statistics.median(turn_pose) * 1e3, 2)}  # fmt: skip


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--pose", type=Path, required=True, help="a pose model .onnx")
    ap.add_argument("--detector", type=Path, required=True, help="a detector .onnx")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--runs", type=int, default=40)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--out", type=Path, default=RESULTS)
    args = ap.parse_args()
    from edgepose.bench.machine import load_average, machine_info
    from edgepose.files import atomic_write

    load_start = load_average()
    rounds: dict[str, list[dict[str, float]]] = {"spinning": [], "stop_spinning": []}
    for r in range(args.repeats):
        for name, stop in (("spinning", False), ("stop_spinning", True)):
            rounds[name].append(measure(args.pose, args.detector, args.threads, stop, args.runs))
            print(f"[ort_sessions] round {r + 1}/{args.repeats} {name}: {rounds[name][-1]}", flush=True)
    best = {name: {k: min(x[k] for x in rs) for k in rs[0]} for name, rs in rounds.items()}
    record = {"created": datetime.now(timezone.utc).isoformat(timespec="seconds"), "pose": args.pose.name,
              "detector": args.detector.name, "threads": args.threads, "runs": args.runs, "repeats": args.repeats,
              "machine": machine_info(args.threads), "load_average_start": load_start,
              "load_average_end": load_average(), "rounds": rounds, "best": best}  # fmt: skip
    m = record["machine"]
    lines = [f"# Two ONNX Runtime sessions called in turn: {args.detector.name} + {args.pose.name}, "
             f"{args.threads} threads", "",
             f"Machine: {m.get('cpu')} ({m.get('arch')}); load average at start {load_start}, at end "
             f"{record['load_average_end']}; {record['created']}. Best of {args.repeats} rounds of medians of "
             f"{args.runs} calls (ms). In turn: detector, pose, pose, again and again (the frame loop's order).", "",
             "| threads after a call | pose alone | detector alone | pose in turn | detector in turn |",
             "|---|---:|---:|---:|---:|"]  # fmt: skip
    for name, label in (("spinning", "spin on (ONNX Runtime's default)"),
                        ("stop_spinning", "stop (`session.force_spinning_stop`, edgepose's default)")):  # fmt: skip
        b = best[name]
        lines.append(f"| {label} | {b['pose_alone_ms']:.2f} | {b['detector_alone_ms']:.2f} | "
                     f"{b['pose_in_turn_ms']:.2f} | {b['detector_in_turn_ms']:.2f} |")  # fmt: skip
    args.out.mkdir(parents=True, exist_ok=True)
    atomic_write(args.out / "ort_sessions.json", json.dumps(record, indent=2) + "\n")
    atomic_write(args.out / "ort_sessions.md", "\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
