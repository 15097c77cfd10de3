"""The pre/post-processing budget of the fastest artifact: per-person stage times, and sequential and streaming
throughput against the engine alone, side by side in one process.

    python benchmarks/prepost.py                          # OpenVINO INT8, float and uint8 input (made if absent)
    python benchmarks/prepost.py --artifacts A.xml B.xml --frames 300 --rounds 5

For each artifact (default: ``artifacts/<model>/<model>_int8.xml`` and ``..._int8_u8in.xml``, converted with
the bundled calibration set when missing) and flip test off/on, one person per frame (the sample COCO image and
box that ``edgepose bench`` times):

* stages: centre/scale, crop (``cv2.warpAffine``), normalise (float input only), inference, flip (mirror the
  model input), second inference, merge, decode: medians of ``--runs`` timed calls each;
* throughput in persons/s of the engine alone (the model input made once, ``infer`` called per person, twice
  with flip), of the sequential pipeline (``TopDownPipeline.__call__`` per frame) and of the streaming pipeline
  (``TopDownPipeline.stream``, crops and decoding on a worker thread), with OpenCV's own thread pool at its
  default and at 1 thread; the three are measured in turn within each of ``--rounds`` rounds and the median
  round is reported, so that a change of machine load hits them alike;
* targets: sequential per-person pre/post <= 10 % of the inference time (no flip), streaming >= 95 % of the
  engine-alone throughput; streaming results are checked identical to the sequential ones.

Writes ``benchmarks/results/prepost.json`` and ``prepost.md`` with the machine, threads and load average.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import sys
import time
from pathlib import Path
from typing import Any, Callable

import cv2
import numpy as np

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "results"
SAMPLE = REPO.parent / "shared" / "data" / "mmpose_samples" / "coco" / "000000000785.jpg"
SAMPLE_BOX = [280.0, 44.0, 218.0, 346.0]
SEQUENTIAL_TARGET_PCT = 10.0
STREAM_TARGET_PCT = 95.0


def _median_us(fn: Callable[[], Any], runs: int, warmup: int = 10) -> float:
    for _ in range(warmup):
        fn()
    ts = np.empty(runs, dtype=np.int64)
    gc.disable()
    try:
        for i in range(runs):
            t0 = time.perf_counter_ns()
            fn()
            ts[i] = time.perf_counter_ns() - t0
    finally:
        gc.enable()
    return float(np.median(ts) / 1e3)


def stages(pipe, rt, image: np.ndarray, boxes: np.ndarray, runs: int) -> dict[str, float]:
    """Median microseconds of each per-person stage, each timed on its own."""
    from edgepose.processing import INPUT_UINT8, crop_batch, flip_batch, merge_flip, normalize

    spec = pipe.spec
    centers, scales = pipe.boxes_to_center_scale(boxes)
    crops = crop_batch(image, centers, scales, spec.input_size)
    x = crops if pipe.input_kind == INPUT_UINT8 else normalize(crops, spec.mean, spec.std)
    xf = flip_batch(x)
    hm, hmf = rt(x), rt(xf)
    merged = merge_flip(hm, hmf, spec.flip_pairs, spec.shift_heatmap)
    out = {
        "center_scale": _median_us(lambda: pipe.boxes_to_center_scale(boxes), runs),
        "crop": _median_us(lambda: crop_batch(image, centers, scales, spec.input_size), runs),
        "normalize": 0.0 if pipe.input_kind == INPUT_UINT8 else _median_us(
            lambda: normalize(crops, spec.mean, spec.std), runs),  # fmt: skip
        "infer": _median_us(lambda: rt(x), runs),
        "flip": _median_us(lambda: flip_batch(x), runs),
        "merge": _median_us(lambda: merge_flip(hm, hmf, spec.flip_pairs, spec.shift_heatmap), runs),
        "decode": _median_us(lambda: pipe.decode(merged, centers, scales), runs),
    }
    out["pre_post_no_flip"] = out["center_scale"] + out["crop"] + out["normalize"] + out["decode"]
    out["pre_post_flip"] = out["pre_post_no_flip"] + out["flip"] + out["merge"]
    out["overhead_no_flip_pct"] = 100.0 * out["pre_post_no_flip"] / out["infer"]
    out["overhead_flip_pct"] = 100.0 * out["pre_post_flip"] / (2 * out["infer"])
    return out


def throughput(pipe, rt, frames: list, cv2_threads: int) -> dict[str, Any]:
    """Persons/s of the engine alone, the sequential pipeline and the streaming pipeline (one round)."""
    from edgepose.processing import flip_batch

    image, boxes = frames[0]
    x = pipe.preprocess(image, *pipe.boxes_to_center_scale(boxes))
    xf = flip_batch(x)
    n = len(frames)
    saved = cv2.getNumThreads()
    cv2.setNumThreads(cv2_threads)
    try:
        gc.collect()
        t0 = time.perf_counter()
        for _ in range(n):
            rt(x)
            if pipe.flip_test:
                rt(xf)
        engine = n / (time.perf_counter() - t0)
        t0 = time.perf_counter()
        serial = [pipe(rt, image, b) for image, b in frames]
        sequential = n / (time.perf_counter() - t0)
        t0 = time.perf_counter()
        streamed = list(pipe.stream(rt, frames))
        streaming = n / (time.perf_counter() - t0)
    finally:
        cv2.setNumThreads(saved)
    identical = len(streamed) == len(serial) and all(np.array_equal(a, b) for a, b in zip(streamed, serial))
    return {"engine_per_s": engine, "sequential_per_s": sequential, "streaming_per_s": streaming,
            "identical": identical}  # fmt: skip


def _median_round(rounds: list[dict[str, Any]]) -> dict[str, Any]:
    out = {k: float(np.median([r[k] for r in rounds])) for k in ("engine_per_s", "sequential_per_s",
                                                                  "streaming_per_s")}  # fmt: skip
    out["sequential_pct_of_engine"] = 100.0 * out["sequential_per_s"] / out["engine_per_s"]
    out["streaming_pct_of_engine"] = 100.0 * out["streaming_per_s"] / out["engine_per_s"]
    out["identical"] = all(r["identical"] for r in rounds)
    out["rounds"] = rounds
    return out


def ensure_artifacts(model: str, folder: Path) -> list[Path]:
    """The OpenVINO INT8 artifacts (float and uint8 input) of ``model`` in ``folder``, converted if absent."""
    from edgepose.converters.api import convert

    out = []
    for kind, suffix in (("float", ""), ("uint8", "_u8in")):
        path = folder / f"{model}_int8{suffix}.xml"
        if not path.is_file():
            print(f"prepost: converting {path.name} (OpenVINO INT8, --input {kind})", file=sys.stderr)
            convert(model=model, targets="openvino", precisions="int8", input=kind, out=folder, progress=False)
        out.append(path)
    return out


def main(argv: list[str] | None = None) -> int:
    from edgepose.bench.machine import load_average, machine_info, usable_cpus
    from edgepose.processing import TopDownPipeline, input_kind_of, read_image
    from edgepose.runtimes import load_runtime
    from edgepose.spec import DEFAULT_MODEL, get_spec

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default=DEFAULT_MODEL)
    ap.add_argument("--artifacts", nargs="+", type=Path, help="artifacts to measure (default: OpenVINO INT8, "
                    "float and uint8 input, from artifacts/<model>/, converted when absent)")  # fmt: skip
    ap.add_argument("--threads", type=int, default=None, help="engine threads (default: every usable CPU)")
    ap.add_argument("--runs", type=int, default=300, help="timed calls per stage (default 300)")
    ap.add_argument("--frames", type=int, default=200, help="frames (one person each) per throughput run")
    ap.add_argument("--rounds", type=int, default=3, help="throughput rounds; the median is reported")
    ap.add_argument("--results", type=Path, default=RESULTS)
    args = ap.parse_args(argv)

    spec = get_spec(args.model)
    threads = args.threads or usable_cpus()
    paths = args.artifacts or ensure_artifacts(spec.name, REPO / "artifacts" / spec.name)
    image = read_image(SAMPLE) if SAMPLE.is_file() else None
    if image is None:
        from edgepose.synthetic import render_image

        image, persons = render_image(np.random.default_rng(0))
        box = persons[0]["bbox"]
    else:
        box = SAMPLE_BOX
    boxes = np.asarray([box], dtype=np.float32)
    frames = [(image, boxes)] * args.frames
    machine = machine_info(threads)
    report: dict[str, Any] = {"schema": "edgepose.prepost/1", "model": spec.name, "machine": machine,
                              "config": {"threads": threads, "runs": args.runs, "frames": args.frames,
                                         "rounds": args.rounds, "cv2_threads_default": cv2.getNumThreads(),
                                         "image": str(SAMPLE.name if SAMPLE.is_file() else "synthetic"),
                                         "box_xywh": [float(v) for v in box]},
                              "targets": {"sequential_overhead_pct_max": SEQUENTIAL_TARGET_PCT,
                                          "streaming_pct_of_engine_min": STREAM_TARGET_PCT},
                              "artifacts": []}  # fmt: skip
    for path in paths:
        rt = load_runtime(path, threads=threads)
        entry: dict[str, Any] = {"artifact": path.name, "runtime": {k: v for k, v in rt.info().items()
                                                                     if isinstance(v, (str, int, float, type(None)))}}
        for flip in (False, True):
            pipe = TopDownPipeline(spec, flip_test=flip, input_kind=input_kind_of(rt))
            key = "flip" if flip else "no_flip"
            if not flip:
                entry["stages_us"] = stages(pipe, rt, image, boxes, args.runs)
            for cv2_threads in (cv2.getNumThreads(), 1):
                rounds = [throughput(pipe, rt, frames, cv2_threads) for _ in range(args.rounds)]
                entry.setdefault("throughput", {}).setdefault(key, {})[f"cv2_threads_{cv2_threads}"] = (
                    _median_round(rounds))
            print(f"prepost: {path.name} {key}: " + ", ".join(
                f"cv2 {k[12:]} thr: engine {v['engine_per_s']:.1f}/s, sequential {v['sequential_pct_of_engine']:.1f} %,"
                f" streaming {v['streaming_pct_of_engine']:.1f} %" for k, v in entry["throughput"][key].items()),
                file=sys.stderr)  # fmt: skip
        report["artifacts"].append(entry)
    machine["load_average_end"] = load_average()
    args.results.mkdir(parents=True, exist_ok=True)
    (args.results / "prepost.json").write_text(json.dumps(report, indent=2) + "\n")
    (args.results / "prepost.md").write_text(markdown(report))
    print(markdown(report))
    return 0


def markdown(report: dict[str, Any]) -> str:
    m, cfg = report["machine"], report["config"]
    out = [f"### Pre/post-processing budget: {report['model']}, one person per frame", "",
           "Per-person stages, median microseconds (each stage timed on its own):", "",
           "| artifact | centre/scale | crop | normalise | inference | flip | merge | decode | pre/post (no flip) | "
           "% of inference | pre/post (flip) | % of 2 inferences |", "|---|" + "---:|" * 11]  # fmt: skip
    for a in report["artifacts"]:
        s = a["stages_us"]
        out.append(f"| {a['artifact']} | " + " | ".join(f"{s[k]:.0f}" for k in (
            "center_scale", "crop", "normalize", "infer", "flip", "merge", "decode", "pre_post_no_flip"))
            + f" | {s['overhead_no_flip_pct']:.1f} % | {s['pre_post_flip']:.0f} | {s['overhead_flip_pct']:.1f} % |")
    out += ["", "Throughput, persons/s (median of the rounds; engine alone = the model input made once):", "",
            "| artifact | flip | OpenCV threads | engine alone | sequential | % of engine | streaming | % of engine | "
            "same results |", "|---|---|---:|---:|---:|---:|---:|---:|---|"]  # fmt: skip
    for a in report["artifacts"]:
        for key, per in a["throughput"].items():
            for thr, v in per.items():
                cells = [a["artifact"], "on" if key == "flip" else "off", thr.rsplit("_", 1)[1],
                         f"{v['engine_per_s']:.1f}", f"{v['sequential_per_s']:.1f}",
                         f"{v['sequential_pct_of_engine']:.1f}", f"{v['streaming_per_s']:.1f}",
                         f"{v['streaming_pct_of_engine']:.1f}", "yes" if v["identical"] else "NO"]  # fmt: skip
                out.append("| " + " | ".join(cells) + " |")
    t = report["targets"]
    out += ["", f"Targets: sequential pre/post <= {t['sequential_overhead_pct_max']:g} % of the inference time "
            f"(no flip); streaming >= {t['streaming_pct_of_engine_min']:g} % of the engine-alone throughput.", "",
            f"Machine: {m['cpu']} ({m['arch']}), {m.get('logical_cpus')} logical CPUs; engine threads "
            f"{cfg['threads']}; OpenCV threads by default {cfg['cv2_threads_default']}; load average (1/5/15 min) "
            f"{m.get('load_average')} at the start, {m.get('load_average_end')} at the end; {m.get('date')}.", ""]
    return "\n".join(out)


if __name__ == "__main__":
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    sys.exit(main())
