"""Eval throughput against the engine's own, side by side in one process, for every artifact of a model.

    python benchmarks/eval_throughput.py [--artifacts DIR] [--threads 2] [--limit 60] [--rounds 2] [--ray]

For each artifact (default ``artifacts/<model>/``, made by ``edgepose convert --target all``) on the first
``--limit`` images of the evaluation set (default: the demo model's synthetic val split), rounds of:

* **engine alone**: the runtime called on real crops with the eval's own per-call shape (the originals and
  their mirrored copies in one call of 2B crops; a fixed-batch artifact is split by the runtime as in eval),
  as many inferences as the eval makes; and through ``infer_async`` (two calls in flight) where the runtime
  has one. The better of the two is the engine's figure;
* **serial eval**: ``predict_dataset(mode="serial")``, read, crop, infer and decode one after the other;
* **pipelined eval**: ``predict_dataset(mode="pipelined")`` (:mod:`edgepose.pipelined`) with 2 worker threads
  (the default) and with 0 (``--workers 0``: everything on the calling thread, overlapping only with an
  engine's async face), each checked bit-identical to the serial keypoints;
* with ``--ray``: the same eval through a local Ray instance (one worker per usable CPU, 1 thread each;
  the wall time includes starting the workers and opening the artifact in each).

Figures are medians over the rounds (interleaved, so that a change of load hits every column alike): boxes/s,
inferences/s (eval: boxes x 2 with flip test; the few inferences that check a batch shape once are not
counted), and eval / engine. Writes ``benchmarks/results/eval_throughput.json`` and ``.md`` with the machine,
the load average at the start and the end, and full-COCO-val projections (6,352 ground-truth boxes; 104,125
boxes of the standard detections file). Timing on a loaded machine is slower and noisier: the load is written
beside the figures; re-run on an idle machine for numbers to quote.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from collections import deque
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
COCO_BOXES = {"ground-truth boxes": 6352, "detections (AP_H_56)": 104125}


def _dataset(spec, limit: int | None):
    from edgepose.datasets import EvalData, default_data, load_dataset, subset_dataset

    name, ann, images = default_data(spec)
    data = EvalData(name, ann, images)
    label = f"{ann.parent.name}/{ann.name}"
    if limit:
        import tempfile

        data = subset_dataset(data, limit, Path(tempfile.mkdtemp(prefix="eval-throughput-")))
        label += f" (first {limit} images)"
    return load_dataset(name, data.ann, data.images, spec), label


def _engine_input(spec, ds, batch: int, flip: bool, input_kind: str) -> np.ndarray:
    """The first ``batch`` real crops (and their mirrored copies with the flip test): one eval call's input, in
    the artifact's own input kind (normalised float NCHW, or the uint8 NHWC crops of ``--input uint8``)."""
    from edgepose.processing import TopDownPipeline, flip_batch, read_image

    pipe = TopDownPipeline(spec, input_kind=input_kind)
    crops = []
    for s in ds.samples[:batch]:
        crops.append(pipe.preprocess(read_image(s.image), s.center[None], s.scale[None]))
    x = np.concatenate(crops)
    return np.concatenate([x, flip_batch(x)]) if flip else x


def _time_engine(rt, x: np.ndarray, calls: int, use_async: bool) -> float:
    """Seconds for ``calls`` calls on ``x`` (async: two calls in flight)."""
    rt(x[:1])
    t = time.perf_counter()
    if use_async:
        pending: deque = deque()
        for _ in range(calls):
            pending.append(rt.infer_async(x))
            if len(pending) > 1:
                pending.popleft().result()
        while pending:
            pending.popleft().result()
    else:
        for _ in range(calls):
            rt(x)
    return time.perf_counter() - t


def _time_eval(spec, rt, ds, batch: int, flip: bool, mode: str, workers: int = 2) -> tuple[float, np.ndarray, dict]:
    from edgepose.evaluate import predict_dataset

    facts: dict = {}
    t = time.perf_counter()
    kp = predict_dataset(spec, rt, ds, flip_test=flip, batch_size=batch, progress=False, mode=mode, workers=workers,
                         facts=facts)  # fmt: skip
    return time.perf_counter() - t, kp, facts


def _time_ray(path: Path, spec, ds, batch: int, flip: bool, threads: int) -> tuple[float, np.ndarray, dict]:
    from edgepose.bench.machine import usable_cpus
    from edgepose.scale import RayOptions, connect, evaluate_on_ray, model_files

    connect("local", num_cpus=usable_cpus())
    opts = RayOptions(threads=1, actors=max(1, usable_cpus() // 1), progress=False)
    t = time.perf_counter()
    res = evaluate_on_ray(spec, model_files(path), ds, opts, flip_test=flip, batch_size=batch)
    wall = time.perf_counter() - t
    kp = np.array([p["keypoints"] for p in res.predictions], dtype=np.float32).reshape(len(ds), -1, 3)
    return wall, kp, res.info["executor"]


def bench_artifact(path: Path, spec, ds, args) -> dict:
    from edgepose.runtimes import load_runtime

    rt = load_runtime(path, threads=args.threads)
    flip = not args.no_flip
    n = len(ds)
    x = _engine_input(spec, ds, args.batch_size, flip, rt.input_kind)
    calls = -(-n // args.batch_size)
    inferences = calls * len(x)
    has_async = hasattr(rt, "infer_async")
    keys = ("engine_sync", "engine_async", "serial", "pipelined", "pipelined_w0", "ray")
    times: dict[str, list[float]] = {k: [] for k in keys}
    identical = True
    facts: dict = {}
    ray_facts: dict = {}
    for r in range(args.rounds):
        times["engine_sync"].append(_time_engine(rt, x, calls, False))
        if has_async:
            times["engine_async"].append(_time_engine(rt, x, calls, True))
        ts, kp_s, _ = _time_eval(spec, rt, ds, args.batch_size, flip, "serial")
        tp, kp_p, facts = _time_eval(spec, rt, ds, args.batch_size, flip, "pipelined")
        t0, kp_0, _ = _time_eval(spec, rt, ds, args.batch_size, flip, "pipelined", workers=0)
        times["serial"].append(ts)
        times["pipelined"].append(tp)
        times["pipelined_w0"].append(t0)
        identical &= bool(np.array_equal(kp_s, kp_p)) and bool(np.array_equal(kp_s, kp_0))
        if args.ray and r == 0:
            tr, kp_r, ray_facts = _time_ray(path, spec, ds, args.batch_size, flip, args.threads)
            times["ray"].append(tr)
            identical_ray = bool(np.array_equal(kp_r, kp_s))
            ray_facts["identical_to_serial_threads"] = identical_ray  # workers run 1 thread: may differ if not
        print(f"  round {r + 1}: engine {inferences / times['engine_sync'][-1]:.1f} inf/s, serial {n / ts:.1f} "
              f"boxes/s, pipelined {n / tp:.1f} boxes/s (workers 0: {n / t0:.1f})", file=sys.stderr,
              flush=True)  # fmt: skip
    med = {k: statistics.median(v) for k, v in times.items() if v}
    per_box = 2 if flip else 1
    engine_inf = max(inferences / med["engine_sync"], inferences / med.get("engine_async", float("inf")))
    row = {
        "artifact": path.name, "engine": rt.engine, "precision": rt.precision, "engine_batch": rt.batch_size,
        "per_call_crops": len(x), "boxes": n, "images": ds.num_images, "inferences_per_pass": inferences,
        "engine_sync_inf_s": inferences / med["engine_sync"],
        "engine_async_inf_s": inferences / med["engine_async"] if "engine_async" in med else None,
        "engine_inf_s": engine_inf,
        "serial_boxes_s": n / med["serial"], "serial_inf_s": per_box * n / med["serial"],
        "pipelined_boxes_s": n / med["pipelined"], "pipelined_inf_s": per_box * n / med["pipelined"],
        "serial_vs_engine": per_box * n / med["serial"] / engine_inf,
        "pipelined_vs_engine": per_box * n / med["pipelined"] / engine_inf,
        "pipelined_w0_boxes_s": n / med["pipelined_w0"], "pipelined_w0_inf_s": per_box * n / med["pipelined_w0"],
        "pipelined_w0_vs_engine": per_box * n / med["pipelined_w0"] / engine_inf,
        "pipelined_identical_to_serial": identical, "pipelined_facts": facts,
        "seconds": {k: v for k, v in times.items() if v},
    }  # fmt: skip
    if "ray" in med:
        row.update(ray_local_boxes_s=n / med["ray"], ray_facts=ray_facts)
    return row


def _hours(boxes: int, rate: float) -> str:
    s = boxes / rate
    return f"{s / 3600:.2f} h" if s >= 3600 else f"{s / 60:.1f} min"


def _load_warning(doc: dict) -> list[str]:
    cpus = doc["machine"].get("usable_cpus") or 1
    # the load at the start only: by the end it counts this benchmark's own threads
    loads = [v[0] for v in (doc.get("load_average_start"),) if v]
    if loads and max(loads) > 0.5 * cpus:
        return [f"**Recorded on a busy machine** (1-minute load {max(loads):.1f} on {cpus} CPUs at the start): the "
                "rates below are not this machine's and their ratios are noise; only the `identical` column holds. "
                "Re-run on an idle machine for figures to quote.", ""]
    return []


def markdown(doc: dict) -> str:
    m = doc["machine"]
    lines = [
        f"# Eval throughput: {doc['model']}, {m['threads']} threads, batch {doc['config']['batch_size']}, "
        f"flip test {'on' if doc['config']['flip_test'] else 'off'}",
        "",
        f"Machine: {m['cpu']} ({m['arch']}), {m['usable_cpus']} usable CPUs; load average (1/5/15 min) "
        f"{doc['load_average_start']} at the start, {doc['load_average_end']} at the end; {m['date']}.",
        f"Data: {doc['data']['images']} images, {doc['data']['boxes']} boxes of {doc['data']['ann']}; "
        f"medians of {doc['config']['rounds']} interleaved rounds.",
        "",
        *_load_warning(doc),
        "| artifact | engine inf/s (sync / async) | serial boxes/s (inf/s) | pipelined boxes/s (inf/s) "
        "| serial / engine | pipelined / engine | workers 0 / engine | identical |",
        "|---|---:|---:|---:|---:|---:|---:|:-:|",
    ]
    for r in doc["rows"]:
        if "error" in r:
            lines.append(f"| {r['artifact']} | failed: {r['error']} | | | | | | |")
            continue
        eng = f"{r['engine_sync_inf_s']:.1f}" + (f" / {r['engine_async_inf_s']:.1f}" if r["engine_async_inf_s"] else "")
        same = "yes" if r["pipelined_identical_to_serial"] else "NO"
        lines.append(f"| {r['artifact']} | {eng} | {r['serial_boxes_s']:.1f} ({r['serial_inf_s']:.1f}) | "
                     f"{r['pipelined_boxes_s']:.1f} ({r['pipelined_inf_s']:.1f}) | "
                     f"{100 * r['serial_vs_engine']:.0f}% | {100 * r['pipelined_vs_engine']:.0f}% | "
                     f"{100 * r['pipelined_w0_vs_engine']:.0f}% | {same} |")
    lines += ["", "Projected time of one full COCO val eval (flip test on) at these rates, one machine:", "",
              "| artifact | " + " | ".join(f"{k}: serial / pipelined" for k in COCO_BOXES) + " |",
              "|---|" + "---:|" * len(COCO_BOXES)]  # fmt: skip
    for r in doc["rows"]:
        if "error" not in r:
            cells = [f"{_hours(b, r['serial_boxes_s'])} / {_hours(b, r['pipelined_boxes_s'])}"
                     for b in COCO_BOXES.values()]
            lines.append(f"| {r['artifact']} | " + " | ".join(cells) + " |")
    lines += ["", "On N such machines (Ray, one worker process per core, shards of whole batches): time = boxes / "
              "(N x boxes/s per machine) plus start-up (Ray and one artifact load per worker, seconds). With the "
              "pipelined rate above as the per-machine rate:", "",
              "| artifact | " + " | ".join(f"N={k}" for k in (1, 4, 16)) + " (detections, 104,125 boxes) |",
              "|---|" + "---:|" * 3]  # fmt: skip
    for r in doc["rows"]:
        if "error" not in r:
            rate = r["pipelined_boxes_s"]
            lines.append(f"| {r['artifact']} | " + " | ".join(_hours(104125, k * rate) for k in (1, 4, 16)) + " |")
    ray_rows = [r for r in doc["rows"] if "ray_local_boxes_s" in r]
    if ray_rows:
        lines += ["", "Through a local Ray instance (`--ray`, one 1-thread worker per CPU; the wall time includes "
                  "starting Ray's workers and opening the artifact in each, so on a small set it is far below a long "
                  "run's rate): " + ", ".join(f"{r['artifact']} {r['ray_local_boxes_s']:.1f} boxes/s"
                                              for r in ray_rows) + "."]  # fmt: skip
    return "\n".join(lines) + "\n"


def main() -> int:
    sys.path.insert(0, str(ROOT))
    from edgepose.bench.data import discover_artifacts
    from edgepose.bench.machine import load_average, machine_info, usable_cpus
    from edgepose.files import atomic_write
    from edgepose.spec import DEFAULT_MODEL, get_spec

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default=DEFAULT_MODEL)
    ap.add_argument("--artifacts", nargs="+", help="artifact files/directories (default artifacts/<model>/)")
    ap.add_argument("--threads", type=int, help="engine threads (default: every usable CPU)")
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--limit", type=int, default=60, help="first N images of the val split (0: all)")
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--no-flip", action="store_true")
    ap.add_argument("--ray", action="store_true", help="also time the eval through a local Ray instance")
    ap.add_argument("--out-dir", default=str(RESULTS))
    args = ap.parse_args()
    args.threads = args.threads or usable_cpus()
    spec = get_spec(args.model)
    paths = discover_artifacts(args.artifacts or [ROOT / "artifacts" / spec.name])
    if not paths:
        print(f"no artifacts; make them with: edgepose convert --model {spec.name} --target all", file=sys.stderr)
        return 2
    ds, label = _dataset(spec, args.limit or None)
    doc = {"schema": "edgepose.eval_throughput/1", "model": spec.name, "machine": machine_info(args.threads),
           "load_average_start": load_average(), "config": {"batch_size": args.batch_size, "rounds": args.rounds,
           "flip_test": not args.no_flip, "limit": args.limit, "ray": args.ray},
           "data": {"ann": label, "images": ds.num_images, "boxes": len(ds)}, "rows": []}  # fmt: skip
    for p in paths:
        print(f"{p.name}:", file=sys.stderr, flush=True)
        try:
            doc["rows"].append(bench_artifact(p, spec, ds, args))
        except Exception as e:  # noqa: BLE001 - one artifact failing leaves the others measured
            doc["rows"].append({"artifact": p.name, "error": str(e).splitlines()[0][:200]})
    doc["load_average_end"] = load_average()
    out = Path(args.out_dir)
    atomic_write(out / "eval_throughput.json", (json.dumps(doc, indent=1) + "\n").encode())
    atomic_write(out / "eval_throughput.md", markdown(doc).encode())
    print(markdown(doc))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
