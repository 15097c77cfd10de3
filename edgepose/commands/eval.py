"""``edgepose eval``: score a checkpoint or an artifact on an evaluation set, exactly as mmpose scores it."""

from __future__ import annotations

import json

from ..spec import DATASETS


def register(sub) -> None:
    p = sub.add_parser("eval", help="evaluate a model (checkpoint or artifact) with mmpose's metrics")
    p.add_argument("--model", help="zoo model name (default: the demo model, or the artifact's own)")
    src = p.add_mutually_exclusive_group()
    src.add_argument("--checkpoint", help="PyTorch checkpoint path or URL (default: the model's own)")
    src.add_argument("--artifact", help="a converted artifact (.onnx, .tflite, .xml, .pth) to run")
    p.add_argument("--dataset", choices=list(DATASETS), help="evaluation set format (default: the model's)")
    p.add_argument("--ann", help="annotation file (COCO json, mmpose MPII json, hand json)")
    p.add_argument("--images", help="image folder")
    p.add_argument("--bbox-file", help="COCO person detection results to crop from instead of ground-truth boxes")
    p.add_argument("--det-bbox-thr", type=float, default=0.0, help="keep detections with score >= this (default 0)")
    p.add_argument("--no-flip", action="store_true", help="disable the flip test")
    p.add_argument("--batch-size", type=int, default=16, help="crops per inference call (default 16)")
    p.add_argument("--threads", type=int, help="inference threads")
    p.add_argument("--predictions", help="also write every instance's keypoints (before OKS-NMS) as JSON")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--out", required=True, help="metrics JSON file")
    p.set_defaults(handler=run)


def format_table(metrics: dict, published: dict | None = None) -> str:
    """Metrics as a small text table, with the published value beside each where the spec has one."""
    published = published or {}
    rows = [("metric", "value", "published")]
    for k, v in metrics.items():
        val = "n/a" if v is None else (f"{v:.2f}" if k == "EPE" else f"{v:.4f}")
        pub = published.get(k)
        rows.append((k, val, "" if pub is None else f"{pub:g}"))
    w = [max(len(r[i]) for r in rows) for i in range(3)]
    return "\n".join(f"{a:<{w[0]}}  {b:>{w[1]}}  {c:>{w[2]}}".rstrip() for a, b, c in rows)


def run(args) -> int:
    from ..datasets import load_dataset
    from ..errors import EdgeposeError
    from ..evaluate import evaluate_dataset, resolve_data
    from ..files import atomic_write
    from ..predict import write_json
    from ..runtimes.open import open_model
    from ..spec import DEFAULT_MODEL, get_spec

    if args.batch_size < 1:
        raise EdgeposeError(f"--batch-size must be at least 1, got {args.batch_size}")
    if (args.ann is None) != (args.images is None):
        raise EdgeposeError("--ann and --images go together")
    if args.model:
        spec = get_spec(args.model)
    else:  # an artifact names its own model; otherwise the demo model
        spec = None if args.artifact else get_spec(DEFAULT_MODEL)

    def load(spec):
        dataset, ann, images = resolve_data(spec, args.dataset, args.ann, args.images)
        return load_dataset(dataset, ann, images, spec, args.bbox_file, args.det_bbox_thr)

    ds = load(spec) if spec is not None else None  # a bad file fails before any model is loaded
    spec, rt = open_model(args.model, args.checkpoint, args.artifact, args.threads)
    if ds is None:
        ds = load(spec)
    result = evaluate_dataset(
        spec, rt, ds, flip_test=not args.no_flip, batch_size=args.batch_size, progress=not args.no_progress,
        det_bbox_thr=args.det_bbox_thr,
    )  # fmt: skip
    doc = result.to_json()
    doc["runtime"] = rt.info() if hasattr(rt, "info") else {}
    doc["published"] = dict(spec.published)
    write_json(args.out, doc)
    if args.predictions:  # one instance per line: COCO val has ~100k of them
        lines = ",\n".join(json.dumps(p, separators=(",", ":")) for p in result.predictions)
        atomic_write(args.predictions, f"[\n{lines}\n]\n".encode())
    info = result.info
    flip = "on" if info["flip_test"] else "off"
    n, m = info["num_samples"], info["num_images"]
    print(f"{spec.name} on {info['dataset']}: {n} instances, {m} images, flip test {flip}")
    print(format_table(result.metrics, spec.published))
    print(f"-> {args.out}")
    return 0
