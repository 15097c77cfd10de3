"""``edgepose predict``: keypoints for one image, drawn as a skeleton (and optionally as JSON)."""

from __future__ import annotations


def register(sub) -> None:
    p = sub.add_parser("predict", help="run a model on one image and draw the skeleton")
    p.add_argument("image", help="input image")
    p.add_argument("--model", help="zoo model name (default: the demo model, or the artifact's own)")
    src = p.add_mutually_exclusive_group()
    src.add_argument("--checkpoint", help="PyTorch checkpoint path or URL (default: the model's own)")
    src.add_argument("--artifact", help="a converted artifact (.onnx, .tflite, .xml) to run instead of PyTorch")
    p.add_argument("--bbox", action="append", default=[], metavar="X,Y,W,H", help="person box; repeat for several")
    p.add_argument("--out", required=True, help="output image with the skeleton drawn")
    p.add_argument("--json", dest="json_out", help="write keypoints as JSON")
    p.add_argument("--no-flip", action="store_true", help="disable the flip test")
    p.add_argument("--decoder", default="default", choices=["default", "dark"], help="heatmap decoding rule")
    p.add_argument("--threads", type=int, help="inference threads")
    p.add_argument("--score-thr", type=float, default=0.3, help="draw keypoints above this score")
    p.set_defaults(handler=run)


def run(args) -> int:
    from ..predict import parse_bbox, predict_image, write_image, write_json
    from ..processing import read_image
    from ..visualize import draw_keypoints

    boxes = [parse_bbox(b) for b in args.bbox]
    image = read_image(args.image)  # read once, and fail on a bad image before loading any model
    from ..runtimes.open import open_model

    spec, rt = open_model(args.model, args.checkpoint, args.artifact, args.threads)
    pred = predict_image(spec, rt, args.image, boxes, flip_test=not args.no_flip, decoder=args.decoder, image=image)
    drawn = draw_keypoints(image, pred.keypoints, spec, pred.boxes, args.score_thr)
    write_image(args.out, drawn)
    if args.json_out:
        write_json(args.json_out, pred.to_json(spec))
    n = len(pred.keypoints)
    print(f"{args.image}: {n} person(s), mean keypoint score {pred.keypoints[..., 2].mean():.3f} -> {args.out}")
    return 0
