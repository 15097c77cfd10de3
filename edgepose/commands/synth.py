"""``edgepose synth``: write a synthetic COCO-format person-keypoint split (images + annotations.json)."""

from __future__ import annotations

from ._args import non_negative_int, positive_int


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
    p.set_defaults(handler=run)


def run(args) -> int:
    import json
    from pathlib import Path

    from ..files import check_writable
    from ..synthetic import SCENE_SPLITS, generate, generate_scenes

    check_writable(args.out, "--out", folder=True)
    check_writable(Path(args.out) / "images", "--out", folder=True)

    make = generate_scenes if args.split in SCENE_SPLITS else generate
    ann, images = make(args.out, args.split, args.num_images, args.seed)
    doc = json.loads(ann.read_text())
    print(f"{len(doc['images'])} images, {len(doc['annotations'])} persons -> {ann} ({images})")
    return 0
