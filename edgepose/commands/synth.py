"""``edgepose synth``: write a synthetic COCO-format person-keypoint split (images + annotations.json)."""

from __future__ import annotations

import argparse

from ._args import non_negative_int, positive_int


def size_arg(text: str) -> tuple[int, int]:
    """``WxH``: two whole numbers from 32 to 4096."""
    try:
        w, h = (int(v) for v in str(text).lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not WxH (e.g. 320x256)") from None
    if not (32 <= w <= 4096 and 32 <= h <= 4096):
        raise argparse.ArgumentTypeError(f"{text}: width and height must be between 32 and 4096")
    return w, h


def register(sub) -> None:
    p = sub.add_parser("synth", help="generate the synthetic COCO-keypoint data set (demo model's data)")
    p.add_argument(
        "--split", default="val", choices=["val", "train", "scenes_val", "scenes_train"],
        help="which split's defaults to use: val/train (pose crops' figures), scenes_val/scenes_train (multi-person "
        "scenes with person boxes, the demo detector's data)",
    )  # fmt: skip
    p.add_argument("--out", required=True, help="output folder (gets images/ and annotations.json)")
    p.add_argument("--num-images", type=positive_int, help="number of images (default: the split's)")
    p.add_argument("--seed", type=non_negative_int, help="random seed (default: the split's; same seed, same bytes)")
    p.add_argument("--video", action="store_true", help="write a video of moving, overlapping figures instead "
                   "(video.mp4 + annotations.json: one COCO image per frame, boxes and keypoints with track_id)")
    p.add_argument("--frames", type=positive_int, default=40, help="--video: number of frames (default 40)")
    p.add_argument("--persons", type=positive_int, default=3, help="--video: number of figures (default 3)")
    p.add_argument("--size", type=size_arg, default=(320, 256), metavar="WxH", help="--video: frame size "
                   "(default 320x256)")
    p.set_defaults(handler=run)


def run(args) -> int:
    import json
    from pathlib import Path

    from ..files import check_writable
    from ..synthetic import SCENE_SPLITS, generate, generate_scenes

    check_writable(args.out, "--out", folder=True)
    if args.video:
        from ..synthetic import VIDEO_SEED, generate_video

        seed = VIDEO_SEED if args.seed is None else args.seed
        ann, video = generate_video(args.out, args.frames, seed, args.persons, args.size)
        doc = json.loads(ann.read_text())
        print(f"{len(doc['images'])} frames, {len(doc['annotations'])} person boxes -> {video}, {ann}")
        return 0
    check_writable(Path(args.out) / "images", "--out", folder=True)

    make = generate_scenes if args.split in SCENE_SPLITS else generate
    ann, images = make(args.out, args.split, args.num_images, args.seed)
    doc = json.loads(ann.read_text())
    print(f"{len(doc['images'])} images, {len(doc['annotations'])} persons -> {ann} ({images})")
    return 0
