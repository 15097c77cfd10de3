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

    _check_inputs(args)
    report = inspect_layers(args.artifact, args.float_path, args.calib, args.num_crops, args.threads)
    print(report.table(args.top))
    if args.out:
        for line in write_report(report, args.out):
            print(f"wrote {line}")
    return 0


def _check_inputs(args) -> None:
    """Everything that can be known before the analysis: the output paths, the artifact's and the float model's
    integrity (the checks every load runs), and the calibration set (as convert checks it)."""
    from pathlib import Path

    from ..calibration import check_calibration, read_calibration
    from ..files import check_distinct, check_writable
    from ..runtimes.artifact import artifact_inputs, read_metadata, tflite_problem, verify_artifact
    from ..spec import spec_from_metadata

    art = Path(args.artifact)
    if args.out is not None:
        out = Path(args.out)
        if str(args.out).endswith(("/", "\\")) or out.is_dir():
            raise EdgeposeError(f"--out {args.out}: is a folder; give a file stem (inspect writes STEM.json, STEM.md "
                                "and STEM.png)")  # fmt: skip
        stem = out.with_suffix("") if out.suffix in (".json", ".md", ".png") else out
        outs = [("--out", stem.with_suffix(s)) for s in (".json", ".md", ".png")]
        for what, path in outs:
            check_writable(path, what)
        check_distinct(outs, [*artifact_inputs(art, "artifact"), *artifact_inputs(args.float_path, "--float"),
                              ("--calib", args.calib)])  # fmt: skip
    if not art.is_file():
        return  # inspect_layers says what is wrong with it
    verify_artifact(art)
    if args.float_path is not None:
        fref = Path(args.float_path)
        if not fref.is_file():
            raise EdgeposeError(f"--float {fref}: float model not found")
        if fref.suffix.lower() != art.suffix.lower():
            raise EdgeposeError(f"--float {fref}: a {fref.suffix or 'suffix-less'} file; the float model of "
                                f"{art.name} must be a {art.suffix} file")  # fmt: skip
        verify_artifact(fref)
        why = tflite_problem(fref) if fref.suffix.lower() == ".tflite" else None
        if fref.suffix.lower() == ".onnx":
            try:
                import onnx

                onnx.load_model(str(fref), load_external_data=False)
            except ImportError:
                pass
            except Exception as e:  # noqa: BLE001 - protobuf's DecodeError and friends: a damaged file
                why = f"not a readable ONNX model ({type(e).__name__}: {str(e).splitlines()[0][:80] if str(e) else ''})"
        if why:
            raise EdgeposeError(f"--float {fref}: {why}")
    if args.calib:
        meta = read_metadata(art)
        spec = spec_from_metadata(meta, str(art)) if meta.get("model") else None
        cset = read_calibration(args.calib, spec)
        if not len(cset.holdout):
            raise EdgeposeError(f"--calib {args.calib}: holds no holdout crops to run (make one with 'edgepose "
                                "calibrate --holdout N')")  # fmt: skip
        check_calibration(cset, None, spec)
