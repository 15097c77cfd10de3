"""``edgepose inspect ARTIFACT --layers``: where an INT8 artifact's quantisation error comes from, layer by layer."""

from __future__ import annotations

from ..errors import EdgeposeError
from ._args import positive_int, threads


def register(sub) -> None:
    p = sub.add_parser(
        "inspect",
        help="per-layer INT8 error report of an ONNX, TFLite or OpenVINO INT8 artifact",
        description="Run an INT8 artifact and its float model on held-out crops and report, for every layer, the "
        "SNR and relative error of its activation against float, its share of the quantisation noise, and whether "
        "it runs in INT8 (console table; --out also writes JSON, Markdown and a bar plot).",
    )
    p.add_argument("artifact", help="an INT8 .onnx, .tflite or .xml artifact made by edgepose convert")
    p.add_argument("--layers", action="store_true", help="the per-layer report (the only report so far; default)")
    p.add_argument("--float", dest="float_path", help="the float model to compare with (default: the artifact's "
                   "FP32 sibling with the same head form, else one rebuilt from the checkpoint in its metadata)")
    p.add_argument("--calib", help="calibration set .npz whose holdout crops to run (default: the model's bundled set)")
    p.add_argument("--num-crops", type=positive_int, default=16, help="held-out crops to run (default: 16)")
    p.add_argument("--top", type=positive_int, help="show only the N layers adding the most noise")
    p.add_argument("--out", help="also write OUT.json, OUT.md and OUT.png")
    p.add_argument("--threads", type=threads, help="threads for the runs, at least 1")
    p.set_defaults(handler=run)


def run(args) -> int:
    try:
        from ..converters.inspect import inspect_layers, write_report
    except ImportError as e:  # the float model and the layer taps need the convert extras
        raise EdgeposeError(f"inspect --layers needs the convert extras ({e.name} missing): "
                            "pip install 'edgepose[convert]'") from None  # fmt: skip

    report = inspect_layers(args.artifact, args.float_path, args.calib, args.num_crops, args.threads)
    print(report.table(args.top))
    if args.out:
        for line in write_report(report, args.out):
            print(f"wrote {line}")
    return 0
