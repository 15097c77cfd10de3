"""``edgepose eval``: score a checkpoint or an artifact on an evaluation set, exactly as mmpose scores it."""

from __future__ import annotations

from ..spec import DATASETS
from ._args import (
    detector_args,
    detector_options,
    finite_float,
    fraction,
    non_negative_int,
    positive_int,
    refuse_detector_flags,
    sha256_arg,
    threads,
)


def register(sub) -> None:
    p = sub.add_parser("eval", help="evaluate a model (checkpoint or artifact) with mmpose's metrics")
    p.add_argument("--model", help="zoo model name (default: the demo model, or the artifact's own)")
    src = p.add_mutually_exclusive_group()
    src.add_argument("--checkpoint", help="PyTorch checkpoint path or URL (default: the model's own)")
    src.add_argument("--artifact", help="a converted artifact (.onnx, .tflite, .xml, .pth) to run")
    sha256_arg(p)
    p.add_argument("--dataset", choices=list(DATASETS), help="evaluation set format (default: the model's)")
    p.add_argument("--ann", help="annotation file (COCO json, mmpose MPII json, hand json)")
    p.add_argument("--images", help="image folder")
    p.add_argument("--data", choices=["val", "train", "scenes_val", "scenes_train"], help="a synthetic split "
                   "instead of --ann/--images (scenes_*: multi-person scenes with boxes and keypoints)")  # fmt: skip
    p.add_argument("--bbox-file", help="COCO person detection results to crop from instead of ground-truth boxes")
    p.add_argument("--detector", help="score a person detector (demo_person_detector's .pth or artifact, or a "
                   "user's mmdeploy/YOLO export): its COCO box AP, and with a pose model (--model, --checkpoint, "
                   "--artifact) the keypoint AP with its boxes beside the AP with ground-truth boxes (default data: "
                   "the synthetic scenes_val split)")  # fmt: skip
    p.add_argument("--det-score-thr", type=fraction, help="the detector's decode threshold (default: the demo "
                   "detector's own 0.05; 0.001 for user layouts, as mmdet's and ultralytics' val)")  # fmt: skip
    detector_args(p)
    p.add_argument("--det-bbox-thr", type=finite_float, default=0.0,
                   help="keep detections with score >= this (default 0)")  # fmt: skip
    p.add_argument("--no-flip", action="store_true", help="disable the flip test")
    p.add_argument("--batch-size", type=positive_int, default=16, help="crops per inference call (default 16)")
    p.add_argument("--threads", type=threads, help="inference threads, at least 1 (with --ray: per worker, "
                   "default 1)")
    p.add_argument("--serial", action="store_true", help="read, crop, infer and decode one after the other (the "
                   "reference path; by default they overlap, with the same keypoints bit for bit)")  # fmt: skip
    p.add_argument("--workers", type=non_negative_int, default=2, help="threads that read, crop and decode beside "
                   "the engine (default 2; 0: on the calling thread, overlapping only with an engine's async "
                   "face)")  # fmt: skip
    ray = p.add_argument_group("Ray (pip install 'edgepose[scale]'; see README 'Evaluation at scale')")
    ray.add_argument("--ray", nargs="?", const="", metavar="ADDRESS", help="shard the dataset over Ray workers: "
                     "ADDRESS of a cluster (host:6379, ray://host:10001, auto), or none for RAY_ADDRESS, a running "
                     "local instance, else a new local one")  # fmt: skip
    ray.add_argument("--ray-actors", type=positive_int, metavar="N",
                     help="workers (default: the cluster's CPUs / --threads)")  # fmt: skip
    ray.add_argument("--ray-ship-crops", action="store_true", help="the driver reads and crops the images and ships "
                     "the crops (default: workers read --images, a path every node must see)")  # fmt: skip
    ray.add_argument("--ray-retries", type=non_negative_int, default=3, metavar="N", help="restarts of a dead "
                     "worker and re-runs of its shard (default 3)")  # fmt: skip
    p.add_argument("--predictions", help="also write every instance's keypoints (before OKS-NMS) as JSON")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--skip-bad-images", action="store_true", help="skip unreadable or truncated images (counted "
                   "and named in a warning, and in the metrics file) instead of stopping at the first one")  # fmt: skip
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
    from ..datasets import load_dataset, resolve_data
    from ..errors import EdgeposeError
    from ..evaluate import EvalOptions, evaluate_dataset
    from ..files import atomic_path, check_distinct, check_writable, json_text
    from ..predict import write_json
    from ..runtimes.artifact import artifact_inputs
    from ..runtimes.open import model_for_checkpoint, open_model
    from ..spec import get_spec

    if args.detector:
        return run_detector(args)
    refuse_detector_flags(args, "no --detector is given (keypoint AP on ground-truth or --bbox-file boxes)",
                          (("--det-score-thr", "det_score_thr", None),))  # --det-bbox-thr: --bbox-file's too
    check_writable(args.out, "--out")
    check_writable(args.predictions, "--predictions")
    check_distinct([("--out", args.out), ("--predictions", args.predictions)],
                   [("--ann", args.ann), ("--bbox-file", args.bbox_file), ("--checkpoint", args.checkpoint),
                    *artifact_inputs(args.artifact)])  # fmt: skip
    if (args.ann is None) != (args.images is None):
        raise EdgeposeError("--ann and --images go together")
    if args.model:
        spec = get_spec(args.model)
    else:  # an artifact names its own model; a checkpoint may be a zoo file; otherwise the demo model
        spec = None if args.artifact else model_for_checkpoint(None, args.checkpoint)

    if args.data:
        args.ann, args.images = _split_files(args)

    def load(spec):
        dataset, ann, images = resolve_data(spec, args.dataset, args.ann, args.images)
        return load_dataset(dataset, ann, images, spec, args.bbox_file, args.det_bbox_thr,
                            skip_bad_images=args.skip_bad_images)  # fmt: skip

    if args.workers < 0:
        raise EdgeposeError(f"--workers must be 0 or more, got {args.workers}")
    ds = load(spec) if spec is not None else None  # a bad file fails before any model is loaded
    opts = EvalOptions(flip_test=not args.no_flip, batch_size=args.batch_size, progress=not args.no_progress,
                       det_bbox_thr=args.det_bbox_thr, mode="serial" if args.serial else "pipelined",
                       workers=args.workers)  # fmt: skip
    if args.ray is not None:
        result, runtime_info, spec = _run_on_ray(args, ds, load, opts)
    else:
        spec, rt = open_model(args.model, args.checkpoint, args.artifact, args.threads, sha256=args.sha256)
        if ds is None:
            ds = load(spec)
        result = evaluate_dataset(spec, rt, ds, opts)
        runtime_info = rt.info() if hasattr(rt, "info") else {}
    doc = result.to_json()
    doc["runtime"] = runtime_info
    doc["published"] = dict(spec.published)
    text = json_text(doc, str(args.out), indent=2) + "\n"  # both documents made before either is written
    if args.predictions:  # one instance per line: COCO val has ~100k of them
        lines = ",\n".join(json_text(p, str(args.predictions), separators=(",", ":")) for p in result.predictions)
        with atomic_path(args.predictions) as tmp_pred, atomic_path(args.out) as tmp_out:
            tmp_pred.write_text(f"[\n{lines}\n]\n")
            tmp_out.write_text(text)
    else:
        write_json(args.out, doc)
    info = result.info
    flip = "on" if info["flip_test"] else "off"
    n, m = info["num_samples"], info["num_images"]
    print(f"{spec.name} on {info['dataset']}: {n} instances, {m} images, flip test {flip}")
    print(format_table(result.metrics, spec.published))
    print(f"-> {args.out}")
    return 0


def _run_on_ray(args, ds, load, eval_opts):
    """(result, runtime info of a worker, spec) of ``edgepose eval --ray``."""
    from ..runtimes.open import model_for_checkpoint
    from ..scale import RayOptions, evaluate_on_ray, open_model_files

    if args.sha256:  # the file the workers will load, checked here once
        from ..checkpoint import check_sha256, resolve_checkpoint

        if args.artifact:
            check_sha256(args.artifact, args.sha256)
        else:
            resolve_checkpoint(args.checkpoint or model_for_checkpoint(args.model, None).checkpoint, sha256=args.sha256)
    spec, model = open_model_files(args.model, args.checkpoint, args.artifact)
    if ds is None:
        ds = load(spec)
    opts = RayOptions(address=args.ray or None, actors=args.ray_actors, threads=args.threads or 1,
                      workers=args.workers, ship_crops=args.ray_ship_crops, retries=args.ray_retries,
                      progress=not args.no_progress)  # fmt: skip
    result = evaluate_on_ray(spec, model, ds, opts, eval_opts)
    return result, result.info["executor"].get("runtime", {}), spec


def _split_files(args, default: str | None = None):
    """(ann, images) of ``--data`` (a synthetic split, made on first use), else of --ann/--images."""
    from .. import synthetic
    from ..errors import EdgeposeError

    split = args.data or (default if args.ann is None and args.images is None else None)
    if split is None:
        if (args.ann is None) != (args.images is None):
            raise EdgeposeError("--ann and --images go together")
        return args.ann, args.images
    if args.ann or args.images:
        raise EdgeposeError(f"--data {split} names the data: drop --ann/--images")
    ann, images = synthetic.ensure_scenes(split) if split.startswith("scenes") else synthetic.ensure_split(split)
    return str(ann), str(images)


def run_detector(args) -> int:
    """``edgepose eval --detector DET``: box AP; with a pose model, keypoint AP with GT and with detected boxes."""
    from dataclasses import replace
    from pathlib import Path

    from ..datasets import resolve_data
    from ..detector_eval import pose_with_detector, score_detector
    from ..detectors import open_detector
    from ..errors import EdgeposeError
    from ..evaluate import EvalOptions
    from ..files import check_distinct, check_writable
    from ..predict import write_json
    from ..runtimes.artifact import artifact_inputs
    from ..runtimes.open import open_model

    for flag, bad in (("--ray", args.ray is not None), ("--bbox-file", args.bbox_file),
                      ("--predictions", args.predictions)):  # fmt: skip
        if bad:
            raise EdgeposeError(f"--detector: {flag} does not go with it (the detector gives the boxes)")
    check_writable(args.out, "--out")
    det_inputs = [("--detector", args.detector)] if args.detector.endswith(".pth") else \
        artifact_inputs(args.detector, "--detector")  # fmt: skip
    check_distinct([("--out", args.out)], [("--ann", args.ann), ("--checkpoint", args.checkpoint),
                                           *artifact_inputs(args.artifact), *det_inputs])  # fmt: skip
    ann, images = _split_files(args, default="scenes_val")
    with_pose = bool(args.model or args.checkpoint or args.artifact)
    opts = replace(detector_options(args, args.det_score_thr), evaluation=True)
    if with_pose:  # the data checked against the pose model before any model loads
        from ..runtimes.open import model_for_checkpoint
        from ..spec import get_spec

        spec0 = get_spec(args.model) if args.model else (None if args.artifact else
                                                         model_for_checkpoint(None, args.checkpoint))  # fmt: skip
        if spec0 is not None:
            resolve_data(spec0, "coco", ann, images)
    if not Path(ann).is_file():
        raise EdgeposeError(f"{ann}: annotation file not found")
    detector = open_detector(args.detector, args.threads, opts)
    doc: dict = {"detector": detector.info, "data": {"ann": str(ann), "images": str(images)}}
    if not with_pose:
        box = score_detector(detector.infer, None, ann, images, detect=detector.detect)
        box.pop("results")
        doc["box"] = box
        write_json(args.out, doc)
        print(f"{args.detector} on {ann}: {box['images']} images, {box['persons']} persons, "
              f"{box['detections']} detections")  # fmt: skip
        print(format_table({f"box {k}": v for k, v in box["metrics"].items() if k in ("AP", "AP50", "AP75", "AR")}))
        print(f"-> {args.out}")
        return 0
    spec, rt = open_model(args.model, args.checkpoint, args.artifact, args.threads, sha256=args.sha256)
    if spec.task != "pose" or spec.dataset != "coco":
        raise EdgeposeError(f"--detector: the pose model must be a COCO keypoint model; {spec.name} is a "
                            f"{spec.dataset} {spec.task} model")  # fmt: skip
    eopts = EvalOptions(flip_test=not args.no_flip, batch_size=args.batch_size, progress=not args.no_progress,
                        mode="serial" if args.serial else "pipelined", workers=args.workers)  # fmt: skip
    res = pose_with_detector(spec, rt, detector, ann, images, eopts, args.det_bbox_thr, args.skip_bad_images)
    gt, det = res["gt_boxes"], res["detected_boxes"]
    ap_gt, ap_det = gt.metrics.get("AP"), det.metrics.get("AP")
    doc.update(model=spec.name, runtime=rt.info() if hasattr(rt, "info") else {}, box=res["box"],
               keypoints={"gt_boxes": gt.to_json(), "detected_boxes": det.to_json(),
                          "AP_difference": None if ap_gt is None or ap_det is None else ap_gt - ap_det,
                          "det_bbox_thr": args.det_bbox_thr})  # fmt: skip
    write_json(args.out, doc)
    print(f"{spec.name} with {args.detector} on {ann}: {gt.info['num_images']} images; {gt.info['num_samples']} "
          f"ground-truth boxes, {det.info['num_samples']} detected boxes (score >= {args.det_bbox_thr:g}); flip test "
          f"{'on' if gt.info['flip_test'] else 'off'}")  # fmt: skip
    rows = {f"box {k}": res["box"]["metrics"].get(k) for k in ("AP", "AP50", "AR")}
    rows.update({f"keypoint {k} (GT boxes)": gt.metrics.get(k) for k in ("AP", "AP50")})
    rows.update({f"keypoint {k} (detected boxes)": det.metrics.get(k) for k in ("AP", "AP50")})
    print(format_table(rows))
    print(f"-> {args.out}")
    return 0

