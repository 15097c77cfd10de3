"""``edgepose convert``: a PyTorch checkpoint to checked ONNX / TFLite / OpenVINO artifacts."""

from __future__ import annotations

import sys

from ._args import fraction, non_empty, non_negative_float, positive_int, sha256_arg, threads


def register(sub) -> None:
    p = sub.add_parser(
        "convert",
        help="convert a model to ONNX, TFLite and/or OpenVINO IR, each checked against PyTorch",
        description="Convert a zoo model (default: the bundled demo model) and check every artifact against "
        "PyTorch on held-out crops. Writes <model>_<precision>.{onnx,tflite,xml+bin} and a .json sidecar.",
    )
    p.add_argument("--model", help="zoo model name (default: the demo model)")
    p.add_argument("--checkpoint", help="PyTorch checkpoint path or URL (default: the model's own)")
    sha256_arg(p)
    p.add_argument("--target", default="tflite", help="onnx, tflite, openvino or all; comma list (default: tflite)")
    p.add_argument("--precision", default="fp32,fp16,int8", help="comma list of fp32, fp16, int8 (default: all)")
    p.add_argument("--calib", help="calibration set .npz from 'edgepose calibrate' (default: the bundled one), or "
                   "'distill': crops distilled from the model's BatchNorm statistics, no images needed")
    p.add_argument("--allow-poor-calib", action="store_true", help="convert even when the calibration health check "
                   "finds the set unrepresentative of the training data (not recommended)")
    p.add_argument("--num-calib", type=positive_int, default=100, help="calibration crops to use (default: 100)")
    p.add_argument("--dynamic-batch", action="store_true", help="dynamic batch dimension (default: batch 1)")
    p.add_argument("--input", default="float", choices=("float", "uint8"), help="what the artifact takes: float "
                   "(default: float32 crops normalised with the model's mean/std, NCHW; TFLite NHWC) or uint8 (the "
                   "crop's RGB bytes, N x H x W x 3, every target: normalisation and transpose inside the model; "
                   "files are named <model>_<precision>_u8in.<suffix>)")  # fmt: skip
    p.add_argument("--int8-io", action="store_true", help="TFLite INT8 with int8 input/output (default: float)")
    p.add_argument("--allow-parity-failure", action="store_true",
                   help="keep artifacts outside their tolerance (tensor parity, or INT8 task-metric drop > 0.03)")
    g = p.add_argument_group("INT8 accuracy on the task metric (control split: real evaluation data, not calibration "
                             "images; the demo model's default: the first images of its synthetic val split)")
    g.add_argument("--max-drop", type=non_negative_float, metavar="X",
                   help="accuracy control: every INT8 artifact ends within X of PyTorch on the control split, in "
                        "the model's metric (AP, PCKh, PCK@0.2; e.g. 0.005), keeping the layers that hurt most in "
                        "float; or the command fails and writes nothing")
    g.add_argument("--max-float", type=fraction, default=0.2, metavar="FRACTION",
                   help="with --max-drop: the share of the model's MACs (counted on the ONNX graph: Conv, Gemm, "
                        "ConvTranspose) that may be kept in float (default 0.2); past it the command fails with "
                        "the best drop reached within it and writes nothing")
    g.add_argument("--control-ann", help="annotation file of the control split (a zoo model: needed for --max-drop)")
    g.add_argument("--control-images", help="image folder of the control split")
    g.add_argument("--control-dataset", help="its format: coco, mpii, onehand10k, panoptic, rhd (default: the model's)")
    g.add_argument("--control-size", type=positive_int,
                   help="control images, first in file order (default 100; 300 under --max-drop, where a budget "
                        "of thousandths needs them: see the README's INT8 section; a detector: all 300 scenes_val)")
    g.add_argument("--openvino-control", default="search", choices=("search", "nncf"),
                   help="OpenVINO's accuracy control: search (default: edgepose's layer search, as for ONNX and "
                        "TFLite; candidates NNCF-quantised with those layers ignored) or nncf "
                        "(nncf.quantize_with_accuracy_control; slower: it re-ranks after steps that do not help)")
    p.add_argument("--threads", type=threads, help="threads for the parity runs, at least 1")
    p.add_argument("--head", default="auto",
                   help="form of the deconvolution head in the exported graph: auto (each target's fastest, "
                   "measured), deconv (as trained, no rewrite), subpixel2x2 or subpixel3x3 (exact rewrites)")
    p.add_argument("--out", type=non_empty, help="output folder (default: artifacts/<model>/)")
    p.add_argument("--no-reference-accuracy", action="store_true", help="do not measure and record the PyTorch "
                   "original's accuracy on the default evaluation data (it lets a torch-less device report drops)")
    p.add_argument("--quiet", action="store_true", help="no progress lines")
    p.set_defaults(handler=run)


def run(args) -> int:
    from ..converters.api import convert
    from ..converters.int8.control import ControlOptions

    control = ControlOptions(args.control_ann, args.control_images, args.control_dataset, args.control_size,
                             methods={"openvino": args.openvino_control})
    result = convert(
        model=args.model, checkpoint=args.checkpoint, sha256=args.sha256, targets=args.target,
        precisions=args.precision, calib=args.calib, num_calib=args.num_calib, dynamic_batch=args.dynamic_batch,
        int8_io=args.int8_io, input=args.input,
        allow_parity_failure=args.allow_parity_failure, out=args.out, threads=args.threads, progress=not args.quiet,
        reference_accuracy=not args.no_reference_accuracy, head=args.head, max_drop=args.max_drop, control=control,
        allow_poor_calib=args.allow_poor_calib, max_float=args.max_float,
    )  # fmt: skip
    print(result.table())
    for a in result.artifacts:
        task = a.parity.get("task")
        if task:
            ctrl = a.metadata.get("accuracy_control") or {}
            extra = ""
            if ctrl:
                p = ctrl["plain"]["drop"]
                extra = f"; plain INT8 drop {p:+.4f}, {len(ctrl['float_layers'])} layer(s) kept in float"
                if ctrl.get("int8_macs_share") is not None:
                    extra += f", {100 * ctrl['int8_macs_share']:.1f} % of MACs in INT8"
                if ctrl.get("float_ops"):
                    extra += f" ({len(ctrl['float_ops'])} op(s) the quantiser left in float)"
            print(f"{a.path.name}: control {task['metric']} {task['value']:.4f} vs PyTorch {task['reference']:.4f}: "
                  f"drop {task['drop']:+.4f} (budget {task['max_drop']:g}, {task['control']['num_images']} images)"
                  f"{extra}")  # fmt: skip
    for note in result.notes:
        print(f"note: {note}", file=sys.stderr)
    failed = [a for a in result.artifacts if a.failed]
    if failed:
        print(f"warning: {len(failed)} artifact(s) outside tolerance kept (--allow-parity-failure)", file=sys.stderr)
    total = sum(v for k, v in result.timings.items())
    print(f"{len(result.artifacts)} artifact(s) in {result.out_dir}/ ({total:.0f} s)")
    return 0
