"""``edgepose synth``: write a synthetic COCO-format person-keypoint split (images + annotations.json)."""

from __future__ import annotations


def register(sub) -> None:
    p = sub.add_parser("synth", help="generate the synthetic COCO-keypoint data set (demo model's data)")
    p.add_argument("--split", default="val", choices=["val", "train"], help="which split's defaults to use")
    p.add_argument("--out", required=True, help="output folder (gets images/ and annotations.json)")
    p.add_argument("--num-images", type=int, help="number of images (default: the split's)")
    p.add_argument("--seed", type=int, help="random seed (default: the split's; same seed, same bytes)")
    p.set_defaults(handler=run)


def run(args) -> int:
    import json

    from ..synthetic import generate

    ann, images = generate(args.out, args.split, args.num_images, args.seed)
    doc = json.loads(ann.read_text())
    print(f"{len(doc['images'])} images, {len(doc['annotations'])} persons -> {ann} ({images})")
    return 0
