"""INT8 accuracy control on the demo model: the proof recorded in ``benchmarks/results/int8_control.*``.

    python benchmarks/int8_control.py [--control-size 100] [--threads 2] [--darken 0.5] [--skip-hard] [--skip-demo]
                                      [--skip-nncf]

1. **Demo, bundled calibration set, ``--max-drop 0.0003``**: ONNX and TFLite INT8, plain and controlled, each
   scored on the control split (the first ``--control-size`` images of the synthetic val split) and on the
   *rest* of the val split (reported as it comes, also where it is larger than on the control split).
2. **Hard case**: a poor calibration set made here from the 4 real COCO sample photos (8 crops of their
   people, darkened to ``--darken``; the demo model only knows synthetic figures), meant to make plain INT8 drop
   more than 0.01 AP (the result says whether it did);
   all three targets converted plain and with ``--max-drop 0.005`` (OpenVINO twice: edgepose's layer search,
   the default, and NNCF's ``quantize_with_accuracy_control``, ``--openvino-control nncf``; ``--skip-nncf``
   leaves the second out); the per-layer report of each plain artifact names the layers to blame
   (``int8_layers_<target>.{md,png}``). Each target's rows are saved as soon as they are done.
3. **The all-black calibration set** is refused (the one-line error is recorded).

Writes ``results/int8_control.json``, ``.md`` and ``.png`` (drops per target, plain and controlled, on the
control split and on the rest of the val split). Timings are not results (the machine may be loaded); the JSON
records the load average at start and end.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

RESULTS = Path(__file__).resolve().parent / "results"
SAMPLES = Path(__file__).resolve().parents[2] / "shared" / "data" / "mmpose_samples" / "coco"
MODEL = "demo_coco_256x192"
DARKEN = 0.5  # the hard case: the 8 COCO crops at 50 % brightness (--darken)


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def poor_set(path: Path, darken: float = DARKEN) -> Path:
    """8 crops of the people in the 4 COCO sample photos (1 photo held out), darkened to ``darken``."""
    from edgepose.calibration import CalibrationSet, from_dataset, write_calibration
    from edgepose.spec import get_spec

    spec = get_spec(MODEL)
    c = from_dataset(spec, "coco", SAMPLES / "test_coco.json", SAMPLES, num=8, holdout=2, seed=0,
                     allow_eval_split=True)  # fmt: skip  (mmpose's test file, not edgepose's eval split)
    dark = CalibrationSet((c.crops * darken).astype(np.uint8), (c.holdout * darken).astype(np.uint8),
                          {**c.meta, "variant": f"brightness x{darken}"})  # fmt: skip
    return write_calibration(path, dark)


def black_set(path: Path) -> Path:
    from edgepose.calibration import CalibrationSet, write_calibration

    z = np.zeros((32, 256, 192, 3), np.uint8)
    return write_calibration(path, CalibrationSet(z, z[:8], {"variant": "all black"}))


class Rest:
    """The val images outside the control split, with the PyTorch reference scored once."""

    def __init__(self, control_size: int, torch_model):
        from edgepose.converters.int8.control import images_in_order, subset_dataset, torch_infer

        from edgepose.datasets import default_data, load_dataset
        from edgepose.spec import get_spec

        self.spec = get_spec(MODEL)
        dataset, ann, images = default_data(self.spec)
        full = load_dataset(dataset, ann, images, self.spec)
        rest = set(images_in_order(full)[control_size:])
        rows = [i for i, s in enumerate(full.samples) if s.image_id in rest]
        self.ds = subset_dataset(full, np.array(rows))
        self.info = {"num_images": len(rest), "num_instances": len(rows)}
        self.reference = self.value(torch_infer(torch_model))

    def value(self, infer) -> float:
        from edgepose.evaluate import evaluate_dataset

        return float(evaluate_dataset(self.spec, infer, self.ds, progress=False).metrics["AP"])

    def drop(self, path: Path, threads: int | None) -> float:
        from edgepose.runtimes import load_runtime

        return self.reference - self.value(load_runtime(path, threads=threads))


def convert(targets: str, out: Path, threads: int | None, control_size: int, openvino: str = "search", **kw) -> dict:
    from edgepose.converters.api import convert as run
    from edgepose.converters.int8.control import ControlOptions

    from edgepose.errors import EdgeposeError

    t0 = time.perf_counter()
    try:
        res = run(model=MODEL, targets=targets, precisions="int8", out=out, threads=threads, progress=True,
                  control=ControlOptions(size=control_size, methods={"openvino": openvino}), reference_accuracy=False,
                  **kw)  # fmt: skip
    except EdgeposeError as e:
        return {"error": str(e), "seconds": round(time.perf_counter() - t0, 1)}
    arts = {}
    for a in res.artifacts:
        m = a.metadata
        ctrl = m.get("accuracy_control") or {}
        lat = json.loads((a.path.parent / (a.path.name + ".json")).read_text()).get("accuracy_control", {})
        arts[a.target] = {"path": str(a.path), "control_drop": m["parity"]["task"]["drop"],
                          "control_value": m["parity"]["task"]["value"], "parity_snr_db": m["parity"]["snr_db"],
                          "float_layers": ctrl.get("float_layers", []), "float_ops": ctrl.get("float_ops"),
                          "plain_control_drop": (ctrl.get("plain") or {}).get("drop"),
                          "latency": lat.get("latency"), "steps": ctrl.get("steps"), "method": ctrl.get("method"),
                          "control": m["parity"]["task"]["control"]}  # fmt: skip
    return {"artifacts": arts, "seconds": round(time.perf_counter() - t0, 1)}


def case(name: str, targets: str, budget: float, work: Path, rest: Rest, args, openvino: str = "search",
         plain: dict | None = None, **kw) -> dict:  # fmt: skip
    """Plain and controlled conversions of ``targets`` (``plain``: the plain conversion done already)."""
    if plain is None:
        log(f"{name}: plain INT8 ({targets})")
        plain = convert(targets, work / f"{name}_plain_{targets}", args.threads, args.control_size,
                        allow_parity_failure=True, **kw)  # fmt: skip  (kept however far it drops: it is measured)
    log(f"{name}: --max-drop {budget} ({targets}{', NNCF accuracy control' if openvino == 'nncf' else ''})")
    ctrl = convert(targets, work / f"{name}_ctrl_{targets}_{openvino}", args.threads, args.control_size,
                   openvino=openvino, max_drop=budget, **kw)  # fmt: skip
    rows = []
    for t in targets.split(","):
        p, c = (plain.get("artifacts") or {}).get(t), (ctrl.get("artifacts") or {}).get(t)
        row = {"target": t + (" (NNCF's accuracy control)" if t == "openvino" and openvino == "nncf" else ""),
               "budget": budget, "search_s": ctrl.get("seconds")}  # fmt: skip
        if p or c:
            row["control"] = (p or c)["control"]
        if p:
            log(f"{name}: {t} plain on the rest of val")
            row.update(plain_control_drop=p["control_drop"], plain_rest_drop=rest.drop(Path(p["path"]), args.threads))
            if args.layers:
                from edgepose.converters.inspect import inspect_layers, write_report

                rep = inspect_layers(p["path"], threads=args.threads)
                write_report(rep, RESULTS / f"int8_layers_{name}_{t}")
                row["blame"] = [{"layer": la.name, "op": la.op, "share": la.share, "snr_db": la.snr_db}
                                for la in sorted(rep.layers, key=lambda la: -la.added)[:5]]  # fmt: skip
        if c:
            log(f"{name}: {t} controlled on the rest of val")
            if row.get("plain_control_drop") is None:  # also in the controlled run's record
                row["plain_control_drop"] = c["plain_control_drop"]
            row.update(controlled_control_drop=c["control_drop"], float_layers=c["float_layers"],
                       float_ops=c["float_ops"], latency=c["latency"], steps=c["steps"], method=c["method"],
                       controlled_rest_drop=rest.drop(Path(c["path"]), args.threads))  # fmt: skip
        elif "error" in ctrl:
            row["controlled_error"] = ctrl["error"]
        rows.append(row)
    return {"rows": rows, "seconds": {"plain": plain.get("seconds"), "controlled": ctrl.get("seconds")},
            "plain_error": plain.get("error"), "plain": plain}  # fmt: skip


ORDER = ["onnx", "tflite", "openvino", "openvino-nncf"]


def _share_plain(rows: list[dict]) -> None:
    """Both OpenVINO rows start from the same plain artifact: fill the NNCF row's plain figures from the other."""
    by = {_run_key(r): r for r in rows}
    a, b = by.get("openvino"), by.get("openvino-nncf")
    if a and b:
        for k in ("plain_control_drop", "plain_rest_drop", "blame"):
            if b.get(k) is None and a.get(k) is not None:
                b[k] = a[k]


def _run_key(row: dict) -> str:
    """onnx, tflite, openvino or openvino-nncf: which run a hard-case row came from."""
    return "openvino-nncf" if "NNCF" in row["target"] else row["target"]


def markdown(doc: dict) -> str:
    out = [f"# INT8 accuracy control ({doc['model']})", "",
           f"{doc['date']}, {doc['machine']}, load average {doc['load_start']} at start, {doc['load_end']} at end; "
           f"control split: first {doc['control_size']} images of the synthetic val split ({doc['control_instances']}"
           f" instances), rest: the other {doc['rest']['num_images']} images ({doc['rest']['num_instances']} "
           "instances)."
           " Drops are AP of PyTorch FP32 minus AP of the artifact (positive = worse).", ""]  # fmt: skip
    for name, c in doc["cases"].items():
        when = f" Recorded {c['recorded']} (an earlier run, kept: `--skip-demo`)." if c.get("recorded") else ""
        out += [f"## {name}", "", c["what"] + when, "",
                "| target | budget | plain drop (control) | plain drop (rest) | controlled drop (control) | "
                "controlled drop (rest) | layers in float | conversion with control | latency plain → controlled |",
                "|---|---:|---:|---:|---:|---:|---:|---:|---|"]  # fmt: skip
        for r in c["rows"]:
            lat = r.get("latency") or {}
            lat_s = (f"{lat['plain_ms']:.1f} → {lat['controlled_ms']:.1f} ms ({lat['cost_pct']:+.0f}%, measured under "
                     "load, re-run idle)") if lat else "-"
            f = lambda k, r=r: f"{r[k]:+.4f}" if isinstance(r.get(k), float) else "-"  # noqa: E731
            fl = len(r["float_layers"]) if "float_layers" in r else r.get("controlled_error", "-")
            secs = f"{r['search_s'] / 60:.1f} min" if r.get("search_s") else "-"
            secs += f" (run {r['recorded'][:10]})" if r.get("recorded") else ""
            out.append(f"| {r['target']} | {r['budget']:g} | {f('plain_control_drop')} | {f('plain_rest_drop')} | "
                       f"{f('controlled_control_drop')} | {f('controlled_rest_drop')} | {fl} | {secs} | {lat_s} |")
        for r in c["rows"]:
            if r.get("float_layers"):
                names = ", ".join(f"`{n.split(';')[0]}`" for n in r["float_layers"])
                out.append(f"\n{r['target']}: kept in float: {names}")
            if r.get("float_ops"):
                ops = ", ".join(f"`{n}`" for n in r["float_ops"])
                out.append(f"\n{r['target']}: ops the quantiser left in float: {ops}")
            if r.get("blame"):
                out.append(f"\n{r['target']} plain, layers adding the most noise: " + ", ".join(
                    f"`{b['layer'].split(';')[0]}` ({100 * b['share']:.0f}%)" for b in r["blame"]))
        out.append("")
    if doc.get("black"):
        out += ["## All-black calibration set", "", f"`edgepose convert --calib black.npz` → `{doc['black']}`", ""]
    return "\n".join(out) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--control-size", type=int, default=100)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--skip-demo", action="store_true")
    ap.add_argument("--skip-hard", action="store_true")
    ap.add_argument("--no-layers", dest="layers", action="store_false")
    ap.add_argument("--skip-nncf", action="store_true", help="no OpenVINO row with NNCF's own accuracy control")
    ap.add_argument("--hard-only", metavar="RUNS", help="re-run only these hard-case rows (onnx, tflite, openvino, "
                    "openvino-nncf; comma-separated), keeping the others from results/int8_control.json")
    ap.add_argument("--darken", type=float, default=DARKEN, help="brightness factor of the hard case's crops")
    args = ap.parse_args()
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from conversion_times import machine

    from edgepose.cli import setup_logging

    setup_logging()  # convert's progress (control drops, search steps) on stderr

    from edgepose.calibration import read_calibration
    from edgepose.errors import EdgeposeError
    from edgepose.models import load_model
    from edgepose.spec import get_spec

    # the recorded results, read before this run saves anything (the demo case is saved as soon as it is done)
    recorded = json.loads((RESULTS / "int8_control.json").read_text()) if (
        RESULTS / "int8_control.json").is_file() else {}  # fmt: skip
    doc = {"model": MODEL, "date": datetime.now(timezone.utc).isoformat(timespec="seconds"), "control_size":
           args.control_size, "load_start": round(os.getloadavg()[0], 2), "cases": {}}  # fmt: skip
    m = machine()
    doc["machine"] = f"{m['cpu']}, {m['cores']} cores, {args.threads} threads"
    rest = Rest(args.control_size, load_model(get_spec(MODEL), None, progress=False))
    doc["rest"] = {**rest.info, "reference_AP": rest.reference}
    with tempfile.TemporaryDirectory(prefix="int8-control-") as tmp:
        work = Path(tmp)
        black = black_set(work / "black.npz")
        try:
            from edgepose.calibration import check_calibration

            check_calibration(read_calibration(black, get_spec(MODEL)))
            doc["black"] = "NOT REFUSED"
        except EdgeposeError as e:
            doc["black"] = f"edgepose: error: {e}"
        if not args.skip_demo:
            demo = case("demo", "onnx,tflite", 0.0003, work, rest, args)
            demo.pop("plain")
            doc["cases"]["demo"] = {"what": "Bundled calibration set (128 crops of the synthetic train split, 100 "
                                    "used), `--max-drop 0.0003`.", **demo}  # fmt: skip
            save(doc)  # each case as soon as it is done: a long hard case does not lose the demo's
        elif recorded:  # keep the recorded demo case, said with its date
            if "demo" in recorded.get("cases", {}) and recorded.get("control_size") == args.control_size:
                doc["cases"]["demo"] = {**recorded["cases"]["demo"], "recorded": recorded["date"],
                                        "load": [recorded.get("load_start"), recorded.get("load_end")]}  # fmt: skip
        if not args.skip_hard and (SAMPLES / "test_coco.json").is_file():
            calib = poor_set(work / "poor.npz", args.darken)
            hard = doc["cases"]["hard"] = {
                "what": f"Poor calibration set: 8 crops of the people in 3 of the 4 COCO sample photos (real photos, "
                        f"out of domain for the synthetic-figure model) at {int(args.darken * 100)} % brightness, "
                        "`--max-drop 0.005`.", "rows": [], "seconds": {}}  # fmt: skip
            runs = [("onnx", "search"), ("tflite", "search"), ("openvino", "search")]
            runs += [] if args.skip_nncf else [("openvino", "nncf")]
            if args.hard_only:  # re-run these; the other rows come from the recorded results, said with their date
                want = set(args.hard_only.split(","))
                kept = [r for r in (recorded.get("cases", {}).get("hard") or {}).get("rows", [])
                        if _run_key(r) not in want]  # fmt: skip
                hard["rows"] += [{**r, "recorded": r.get("recorded") or recorded["date"]} for r in kept]
                runs = [(t, m) for t, m in runs if (t if m == "search" else f"{t}-{m}") in want]
            plains: dict[str, dict] = {}
            for target, method in runs:  # one target at a time, saved as it finishes
                r = case("hard", target, 0.005, work, rest, args, openvino=method, plain=plains.get(target),
                         calib=calib, allow_poor_calib=True)  # fmt: skip  (the health check refuses it: 0.56)
                plains[target] = r.pop("plain")
                hard["rows"] = sorted(hard["rows"] + r["rows"], key=lambda row: ORDER.index(_run_key(row)))
                hard["seconds"][f"{target}_{method}"] = r["seconds"]
                _share_plain(hard["rows"])
                save(doc)
    save(doc)


def save(doc: dict) -> None:
    from edgepose.files import atomic_write

    ctrl = [r["control"] for c in doc["cases"].values() for r in c["rows"] if r.get("control")]
    doc["control_instances"] = ctrl[0]["num_instances"] if ctrl else None
    doc["control_image_ids_sha256"] = ctrl[0]["image_ids_sha256"] if ctrl else None
    doc["load_end"] = round(os.getloadavg()[0], 2)

    RESULTS.mkdir(parents=True, exist_ok=True)
    atomic_write(RESULTS / "int8_control.json", json.dumps(doc, indent=2, default=str) + "\n")
    atomic_write(RESULTS / "int8_control.md", markdown(doc))
    plot(doc, RESULTS / "int8_control.png")
    log(f"-> {RESULTS / 'int8_control.md'}")


def plot(doc: dict, path: Path) -> None:
    """Grouped bars: per case and target, plain and controlled drop on the control split and on the rest."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [(name, r) for name, c in doc["cases"].items() for r in c["rows"]]
    if not rows:
        return
    keys = [("plain_control_drop", "plain, control"), ("plain_rest_drop", "plain, rest of val"),
            ("controlled_control_drop", "controlled, control"), ("controlled_rest_drop", "controlled, rest of val")]
    fig, ax = plt.subplots(figsize=(max(6, 1.6 * len(rows)), 4))
    x = np.arange(len(rows))
    for i, (k, label) in enumerate(keys):
        ax.bar(x + (i - 1.5) * 0.2, [r.get(k) if isinstance(r.get(k), float) else 0.0 for _, r in rows], 0.2,
               label=label)  # fmt: skip
    for j, (_, r) in enumerate(rows):
        ax.hlines(r["budget"], j - 0.4, j + 0.4, colors="k", linestyles="dashed")
    ax.axhline(0, color="grey", lw=0.5)
    ax.set_xticks(x, [f"{n}\n{r['target']}" for n, r in rows])
    ax.set_ylabel("AP drop vs PyTorch FP32 (dashed: budget)")
    ax.set_title(f"INT8 accuracy control, {doc['model']}")
    ax.legend(fontsize=8)
    fig.tight_layout()
    tmp = path.with_suffix(".tmp.png")
    fig.savefig(tmp, dpi=110)
    plt.close(fig)
    os.replace(tmp, path)


if __name__ == "__main__":
    main()
