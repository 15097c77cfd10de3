"""Does a batch-1 TFLite pose artifact take a batch of persons through ``resize_tensor_input``, and is it faster?

    python benchmarks/tflite_batch.py ARTIFACT.tflite [...] [--threads 1] [--rounds 7]

For each artifact (fixed batch 1, as ``edgepose convert`` writes TFLite): the runtime with the batch resized to
P = 3 and 6 (``resize_tensor_input`` + ``allocate_tensors`` on the artifact's own interpreter) against P calls of
batch 1: whether the outputs agree (max abs heatmap difference) and the time of both, interleaved rounds,
medians. Writes ``benchmarks/results/tflite_batch.{json,md}`` with the load average.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from edgepose.bench.machine import load_average  # noqa: E402
from edgepose.processing import TopDownPipeline  # noqa: E402
from edgepose.runtimes import load_runtime  # noqa: E402
from edgepose.spec import DEFAULT_MODEL, get_spec  # noqa: E402
from edgepose.synthetic import render_video  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("artifacts", nargs="+", type=Path)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--rounds", type=int, default=7)
    args = ap.parse_args()
    load_start = load_average()
    spec = get_spec(DEFAULT_MODEL)
    frame, people = next(render_video(11, 1, (480, 320), 6))
    boxes = np.asarray([p["bbox"] for p in people], np.float32)
    rows = []
    for path in args.artifacts:
        single = load_runtime(path, threads=args.threads)
        resized = load_runtime(path, threads=args.threads)
        fixed = resized.batch_size
        resized.batch_size = None  # the runtime face then hands the whole batch to the engine, which resizes
        pipe = TopDownPipeline(spec, flip_test=False, input_kind=single.input_kind)
        for p in (3, 6):
            c, s = pipe.boxes_to_center_scale(boxes[:p])
            batch = pipe.preprocess(frame, c, s)
            ref = np.concatenate([single(batch[i : i + 1]) for i in range(p)])
            got = resized(batch)
            t_b, t_s = [], []
            for _ in range(args.rounds):
                t0 = time.perf_counter()
                resized(batch)
                t1 = time.perf_counter()
                for i in range(p):
                    single(batch[i : i + 1])
                t2 = time.perf_counter()
                t_b.append((t1 - t0) * 1e3)
                t_s.append((t2 - t1) * 1e3)
            b, s1 = statistics.median(t_b), statistics.median(t_s)
            rows.append({"artifact": path.name, "fixed_batch": fixed, "persons": p,
                         "max_abs_diff": float(np.abs(got - ref).max()), "resized_ms": round(b, 2),
                         "one_by_one_ms": round(s1, 2), "ratio": round(b / s1, 3)})  # fmt: skip
            print(rows[-1], flush=True)
    doc = {"command": " ".join(["python", "benchmarks/tflite_batch.py", *sys.argv[1:]]), "threads": args.threads,
           "load_start": load_start, "load_end": load_average(), "rows": rows}  # fmt: skip
    out = ROOT / "benchmarks" / "results"
    (out / "tflite_batch.json").write_text(json.dumps(doc, indent=1) + "\n")
    md = [f"# TFLite batch through resize_tensor_input\n\nCommand: `{doc['command']}`  \nLoad average "
          f"{doc['load_start']} (start) / {doc['load_end']} (end), one engine call per pass, no flip\n",
          "| artifact | fixed batch | P | max abs diff vs batch 1 | resized ms | one by one ms | ratio |",
          "|---|---|---|---|---|---|---|"]  # fmt: skip
    md += [f"| {r['artifact']} | {r['fixed_batch']} | {r['persons']} | {r['max_abs_diff']:.2e} | {r['resized_ms']} | "
           f"{r['one_by_one_ms']} | {r['ratio']} |" for r in rows]
    (out / "tflite_batch.md").write_text("\n".join(md) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
