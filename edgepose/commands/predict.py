"""``edgepose predict``: keypoints for one image, drawn as a skeleton (and optionally as JSON)."""

from __future__ import annotations

from ._args import (
    THREADS_HELP,
    detector_args,
    detector_options,
    finite_float,
    fraction,
    refuse_detector_flags,
    sha256_arg,
    threads,
)


def register(sub) -> None:
    p = sub.add_parser("predict", help="run a model on one image and draw the skeleton")
    p.add_argument("image", help="input image")
    p.add_argument("--model", help="zoo model name (default: the demo model, or the artifact's own)")
    src = p.add_mutually_exclusive_group()
    src.add_argument("--checkpoint", help="PyTorch checkpoint path or URL (default: the model's own)")
    src.add_argument("--artifact", help="a converted artifact (.onnx, .tflite, .xml) to run instead of PyTorch")
    sha256_arg(p)
    boxes = p.add_mutually_exclusive_group()
    boxes.add_argument("--bbox", action="append", default=[], metavar="X,Y,W,H",
                       help="person box; repeat for several")  # fmt: skip
    boxes.add_argument("--detector", help="find the persons with a detector: demo_person_detector's .pth or "
                       "artifact, or a user's ONNX/TFLite/OpenVINO export (mmdeploy or YOLO layout)")  # fmt: skip
    p.add_argument("--det-thr", type=fraction, default=0.3, help="detector score threshold (default 0.3)")
    detector_args(p)
    p.add_argument("--out", required=True, help="output image with the skeleton drawn")
    p.add_argument("--json", dest="json_out", help="write keypoints as JSON")
    p.add_argument("--no-flip", action="store_true", help="disable the flip test")
    p.add_argument("--decoder", default="default", choices=["default", "dark"], help="heatmap decoding rule")
    p.add_argument("--threads", type=threads, help=THREADS_HELP)
    p.add_argument("--score-thr", type=finite_float, default=0.3, help="draw keypoints above this score")
    p.set_defaults(handler=run)


def run(args) -> int:
    from ..errors import EdgeposeError
    from ..files import check_distinct, check_writable
    from ..images import check_image_suffix
    from ..predict import parse_bbox, predict_image, write_image, write_json
    from ..processing import read_image
    from ..runtimes.artifact import artifact_inputs
    from ..visualize import draw_keypoints

    check_writable(args.out, "--out")
    check_writable(args.json_out, "--json")
    check_image_suffix(args.out, "--out")
    det_inputs = [("--detector", args.detector)] if str(args.detector).endswith(".pth") else \
        artifact_inputs(args.detector, "--detector")  # fmt: skip
    check_distinct([("--out", args.out), ("--json", args.json_out)],
                   [("image", args.image), ("--checkpoint", args.checkpoint), *artifact_inputs(args.artifact),
                    *det_inputs])  # fmt: skip
    if not args.detector:
        refuse_detector_flags(args, "no --detector is given (the boxes are --bbox or the whole image)",
                              (("--det-thr", "det_thr", 0.3),))  # fmt: skip
    boxes = [parse_bbox(b) for b in args.bbox]
    image = read_image(args.image)  # read once, and fail on a bad image before loading any model
    from ..runtimes.open import open_model

    if args.detector:
        from ..detectors import open_detector

        det = open_detector(args.detector, args.threads, detector_options(args, args.det_thr))
        found = det(image)
        if not len(found):
            raise EdgeposeError(f"{args.image}: --detector {args.detector} found no person above --det-thr "
                                f"{args.det_thr}")  # fmt: skip
        boxes = [[float(x1), float(y1), float(x2 - x1), float(y2 - y1)] for x1, y1, x2, y2, _ in found]
    spec, rt = open_model(args.model, args.checkpoint, args.artifact, args.threads, sha256=args.sha256)
    pred = predict_image(spec, rt, args.image, boxes, flip_test=not args.no_flip, decoder=args.decoder, image=image)
    drawn = draw_keypoints(image, pred.keypoints, spec, pred.boxes, args.score_thr)
    doc = pred.to_json(spec) if args.json_out else None
    write_image(args.out, drawn)
    if doc is not None:
        write_json(args.json_out, doc)
    n = len(pred.keypoints)
    print(f"{args.image}: {n} person(s), mean keypoint score {pred.keypoints[..., 2].mean():.3f} -> {args.out}")
    return 0
