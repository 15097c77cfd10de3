"""``edgepose calibrate``: an INT8 calibration set (crops made by the shared pipeline) from training images."""

from __future__ import annotations

import sys

from ..errors import EdgeposeError
from ._args import int_range, non_negative_int, positive_int


def register(sub) -> None:
    p = sub.add_parser(
        "calibrate",
        help="make an INT8 calibration set (.npz of crops) from a training split or an image folder",
        description="Crops made exactly as inference makes them, from a dataset's training split (ground-truth "
        "boxes) or a folder of images (the whole image as the box). Evaluation splits are refused.",
    )
    p.add_argument("--model", help="zoo model name (sets the input size; default: the demo model)")
    p.add_argument("--images", required=True, help="image folder (alone: every image, whole image as the box)")
    p.add_argument("--dataset", help="dataset reader for --ann: coco, mpii, onehand10k, panoptic, rhd")
    p.add_argument("--ann", help="annotation file of the training split (with --dataset)")
    p.add_argument("--num", type=positive_int, default=128, help="calibration crops (default: 128)")
    p.add_argument("--holdout", type=non_negative_int, default=32,
                   help="held-out crops for the parity check (default: 32)")
    p.add_argument("--seed", type=int, default=0, help="which images are picked (default: 0)")
    p.add_argument("--allow-eval-split", action="store_true", help="accept a val/test split (not recommended)")
    p.add_argument("--jpeg", type=int_range(1, 100), metavar="QUALITY",
                   help="store crops JPEG-encoded, quality 1..100 (e.g. 95): ~10x smaller")
    p.add_argument("--out", required=True, help="output .npz file")
    p.set_defaults(handler=run)


def run(args) -> int:
    from ..calibration import from_dataset, from_image_folder, write_calibration
    from ..spec import DEFAULT_MODEL, get_spec

    spec = get_spec(args.model or DEFAULT_MODEL)
    if bool(args.dataset) != bool(args.ann):
        raise EdgeposeError("--dataset and --ann go together (or give --images alone for a folder)")
    if not str(args.out).endswith(".npz"):
        raise EdgeposeError(f"{args.out}: the output must be an .npz file")
    from ..files import check_distinct, check_writable

    check_writable(args.out, "--out")
    check_distinct([("--out", args.out)], [("--ann", getattr(args, "ann", None))])
    if args.dataset:
        cset = from_dataset(spec, args.dataset, args.ann, args.images, args.num, args.holdout, args.seed,
                            args.allow_eval_split)  # fmt: skip
    else:
        cset = from_image_folder(spec, args.images, args.num, args.holdout, args.seed, args.allow_eval_split)
    if len(cset.crops) < args.num:
        print(f"edgepose: warning: --num {args.num}: the images hold only {len(cset.crops)} usable person crop(s) "
              f"beside the holdout; the set has {len(cset.crops)}", file=sys.stderr)  # fmt: skip
    path = write_calibration(args.out, cset, jpeg_quality=args.jpeg)
    w, h = cset.input_size
    print(f"{path}: {len(cset.crops)} calibration + {len(cset.holdout)} holdout crops {w}x{h} for {spec.name} "
          f"({path.stat().st_size / 1e6:.1f} MB)")  # fmt: skip
    return 0
