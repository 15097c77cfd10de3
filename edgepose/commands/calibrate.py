"""``edgepose calibrate``: an INT8 calibration set (crops made by the shared pipeline) from training images, or
distilled from the model itself (``--distill``); each set passes the calibration health check before it is written."""

from __future__ import annotations

import importlib.util
import sys

from ..errors import EdgeposeError
from ._args import int_range, non_negative_int, positive_int


def register(sub) -> None:
    p = sub.add_parser(
        "calibrate",
        help="make an INT8 calibration set (.npz of crops) from a training split, an image folder, or the model",
        description="Crops made exactly as inference makes them, from a dataset's training split (ground-truth "
        "boxes) or a folder of images (the whole image as the box), or distilled from the model's BatchNorm "
        "statistics (--distill, no images). Evaluation splits are refused. With PyTorch installed, the set is "
        "checked against the model's BatchNorm statistics first and refused when unrepresentative.",
    )
    p.add_argument("--model", help="zoo model name (sets the input size; default: the demo model)")
    p.add_argument("--checkpoint", help="PyTorch checkpoint for the health check and --distill (default: the model's)")
    p.add_argument("--images", help="image folder (alone: every image, whole image as the box; a detector: every "
                   "image letterboxed; a detector without --images: frames of the synthetic scenes_train split)")
    p.add_argument("--distill", action="store_true",
                   help="no images: crops optimised until every BatchNorm layer's input statistics match its running "
                        "statistics (ZeroQ), seeded and reproducible")
    p.add_argument("--dataset", help="dataset reader for --ann: coco, mpii, onehand10k, panoptic, rhd")
    p.add_argument("--ann", help="annotation file of the training split (with --dataset)")
    p.add_argument("--num", type=positive_int, help="calibration crops (default: 128; --distill: 32)")
    p.add_argument("--holdout", type=non_negative_int,
                   help="held-out crops for the parity check (default: 32; --distill: 0, convert then checks parity "
                        "on synthetic crops)")
    p.add_argument("--seed", type=int, default=0,
                   help="which images are picked, or the distillation's seed (default: 0)")
    p.add_argument("--allow-eval-split", action="store_true", help="accept a val/test split (not recommended)")
    p.add_argument("--allow-poor-calib", action="store_true",
                   help="write the set even when the health check finds it unrepresentative (not recommended)")
    p.add_argument("--jpeg", type=int_range(1, 100), metavar="QUALITY",
                   help="store crops JPEG-encoded, quality 1..100 (e.g. 95): ~10x smaller")
    p.add_argument("--out", required=True, help="output .npz file")
    p.set_defaults(handler=run)


def run(args) -> int:
    from ..calibration import from_dataset, from_image_folder, write_calibration
    from ..spec import DEFAULT_MODEL, get_spec

    spec = get_spec(args.model or DEFAULT_MODEL)
    if args.distill and (args.images or args.dataset or args.ann):
        raise EdgeposeError("--distill makes crops without images: leave out --images, --dataset and --ann")
    synthetic_scenes = spec.is_detector and not (args.distill or args.images or args.dataset or args.ann)
    if not args.distill and not args.images and not synthetic_scenes:
        raise EdgeposeError("give --images DIR (with --dataset and --ann for a training split), or --distill")
    if bool(args.dataset) != bool(args.ann):
        raise EdgeposeError("--dataset and --ann go together (or give --images alone for a folder)")
    if not str(args.out).endswith(".npz"):
        raise EdgeposeError(f"{args.out}: the output must be an .npz file")
    from ..files import check_distinct, check_writable

    check_writable(args.out, "--out")
    check_distinct([("--out", args.out)], [("--ann", getattr(args, "ann", None))])
    num = args.num or (32 if args.distill else 128)
    holdout = args.holdout if args.holdout is not None else (0 if args.distill else 16 if synthetic_scenes else 32)
    have_torch = importlib.util.find_spec("torch") is not None
    if args.distill and not have_torch:
        raise EdgeposeError("--distill needs PyTorch: pip install 'edgepose[convert]'")
    model = None
    if have_torch:
        from ..models import load_model

        model = load_model(spec, args.checkpoint, progress=False)
    if synthetic_scenes:  # a detector without images: letterboxed frames of the scenes_train generator
        from ..calibration import synthetic_scene_calibration

        cset = synthetic_scene_calibration(spec, num, holdout)
    elif args.distill:
        from ..converters.int8.distill import distilled_set

        cset = distilled_set(model, spec, num, holdout, args.seed)
    elif args.dataset:
        cset = from_dataset(spec, args.dataset, args.ann, args.images, num, holdout, args.seed,
                            args.allow_eval_split)  # fmt: skip
    else:
        cset = from_image_folder(spec, args.images, num, holdout, args.seed, args.allow_eval_split)
    if model is not None:
        from ..converters.int8.health import assess, enforce

        h = assess(model, spec, cset.crops)
        print(h.table())
        enforce(h, str(args.out), args.allow_poor_calib, cset.meta.get("source"))  # refused: nothing written
        cset.meta["health"] = h.summary()
    else:
        print("calibration health: not checked (needs PyTorch: pip install 'edgepose[convert]')")
    if len(cset.crops) < num:  # said once the set is accepted (a refused set says only why)
        print(f"edgepose: warning: --num {num}: the images hold only {len(cset.crops)} usable person crop(s) "
              f"beside the holdout; the set has {len(cset.crops)}", file=sys.stderr)  # fmt: skip
    path = write_calibration(args.out, cset, jpeg_quality=args.jpeg)
    w, h = cset.input_size
    print(f"{path}: {len(cset.crops)} calibration + {len(cset.holdout)} holdout crops {w}x{h} for {spec.name} "
          f"({path.stat().st_size / 1e6:.1f} MB)")  # fmt: skip
    return 0
