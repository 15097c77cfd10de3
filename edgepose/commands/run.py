"""``edgepose run``: the app's frame loop on an image, a folder, a video file or a camera (edgepose.app)."""

from __future__ import annotations

from ._args import (
    THREADS_HELP,
    detector_args,
    detector_options,
    fraction,
    non_empty,
    positive_float,
    positive_int,
    refuse_detector_flags,
    threads,
)


def register(sub) -> None:
    p = sub.add_parser("run", help="detect, pose and track every person of a video, camera, image or folder")
    p.add_argument("source", help="a video file, an image, a folder of images, or a camera index (0)")
    p.add_argument("--model", help="pose model name (default: the demo model, or the artifact's own)")
    pose = p.add_mutually_exclusive_group()
    pose.add_argument("--artifact", help="pose artifact (.onnx, .tflite, .xml; FP32 or INT8); default: PyTorch")
    pose.add_argument("--checkpoint", help="pose PyTorch checkpoint (default: the model's own)")
    det = p.add_mutually_exclusive_group()
    det.add_argument("--detector", help="person detector: an artifact of demo_person_detector (.onnx, .tflite, "
                     ".xml), its PyTorch checkpoint (.pth), or a user's export without edgepose metadata (mmdeploy "
                     "or YOLO layout, see --detector-layout); default: the bundled PyTorch demo_person_detector")
    det.add_argument("--boxes", help="COCO annotations giving each frame's person boxes instead of a detector "
                     "(edgepose synth --video's annotations.json; images carry frame_index)")
    p.add_argument("--out", type=non_empty, help="annotated output: a video (.mp4), a folder of PNG frames, or an "
                   "image file (.png, .jpg) for an image source")
    p.add_argument("--jsonl", type=non_empty, help="JSON lines, one per frame: frame, persons (track id, box, "
                   "keypoints, score)")
    p.add_argument("--det-every", type=positive_int, default=1, metavar="K",
                   help="run the detector on every K-th frame; between, boxes come from each track's keypoints")
    p.add_argument("--smooth", action="store_true", help="One-Euro filter on each track's keypoints")
    p.add_argument("--det-thr", type=fraction, default=0.3, help="detector score threshold (default 0.3)")
    p.add_argument("--track-thr", type=fraction, default=0.3,
                   help="a track's mean keypoint score under this runs the detector on the next frame")
    p.add_argument("--kpt-thr", type=fraction, default=0.3,
                   help="keypoints above this score make a track's next box, and are drawn")
    p.add_argument("--max-persons", type=positive_int, default=20, help="persons tracked at most (default 20)")
    p.add_argument("--max-frames", type=positive_int, help="stop after this many frames")
    p.add_argument("--fps", type=positive_float, help="frame rate of the output video (default: the source's)")
    p.add_argument("--no-flip", action="store_true", help="disable the flip test (half the pose engine's work)")
    p.add_argument("--one-by-one", action="store_true", help="one pose engine call per person instead of one "
                   "call for all persons of a frame")
    p.add_argument("--threads", type=threads, help=THREADS_HELP)
    p.add_argument("--quiet", action="store_true", help="no progress line")
    detector_args(p)
    p.set_defaults(handler=run)


def run(args) -> int:
    import sys
    from pathlib import Path

    from ..app import ImageSink, JsonlSink, PoseTracker, VideoSink, open_source, read_boxes, run_loop
    from ..errors import EdgeposeError
    from ..files import check_distinct, check_writable
    from ..runtimes.artifact import artifact_inputs
    from ..runtimes.open import open_model

    suffix = Path(args.out).suffix.lower() if args.out else ""
    video_out = suffix in (".mp4", ".avi", ".mov", ".mkv")
    image_out = suffix in (".png", ".jpg", ".jpeg", ".bmp")
    check_writable(args.out, "--out", folder=args.out is not None and not (video_out or image_out))
    check_writable(args.jsonl, "--jsonl")
    inputs = [("source", args.source), ("--boxes", args.boxes), ("--checkpoint", args.checkpoint),
              *artifact_inputs(args.artifact)]  # fmt: skip
    if args.detector and not args.detector.endswith(".pth"):
        inputs += artifact_inputs(args.detector, "--detector")
    elif args.detector:
        inputs.append(("--detector", args.detector))
    check_distinct([("--out", args.out), ("--jsonl", args.jsonl)], [(k, v) for k, v in inputs if v and
                                                                     not str(v).isdigit()])  # fmt: skip
    if args.boxes:
        refuse_detector_flags(args, "--boxes gives the boxes", (("--det-thr", "det_thr", 0.3),))
    source = open_source(args.source)  # a bad source fails before any model loads
    if image_out and source.total != 1:
        raise EdgeposeError(f"--out {args.out}: an image file holds one frame, and {source.name} is a "
                            f"{source.kind}; give a video (.mp4) or a folder")  # fmt: skip
    boxes_for = read_boxes(args.boxes) if args.boxes else None
    spec, pose_rt = open_model(args.model, args.checkpoint, args.artifact, args.threads,
                               batched=not args.one_by_one)
    if spec.task != "pose":
        raise EdgeposeError(f"--artifact {args.artifact}: a {spec.task} model, not a pose model")
    detector = det_rt = None
    if boxes_for is None:
        from ..detectors import open_detector

        opened = open_detector(args.detector, args.threads, detector_options(args, args.det_thr))
        detector, det_rt = opened.detect, opened.infer
    fps = args.fps or source.fps
    tracker = PoseTracker(spec, pose_rt, detector, det_rt, boxes_for=boxes_for, det_every=args.det_every,
                          smooth=args.smooth, kpt_thr=args.kpt_thr, min_track_score=args.track_thr,
                          max_persons=args.max_persons, flip_test=False if args.no_flip else None,
                          batched=not args.one_by_one, fps=fps)  # fmt: skip
    video = VideoSink(args.out, fps) if video_out else None
    images = ImageSink(args.out, single=image_out) if args.out and not video_out else None
    jsonl = JsonlSink(args.jsonl) if args.jsonl else None
    s = run_loop(tracker, source, video, images, jsonl, args.max_frames, progress=not args.quiet,
                 score_thr=args.kpt_thr)  # fmt: skip
    ms = s.ms
    wrote = ", ".join(x for x in (args.out, args.jsonl) if x) or "nothing written"
    print(f"{source.name}: {s.frames} frame(s), {s.fps:.1f} fps, detector on {s.detections}; per frame "
          f"{ms.get('frame', 0):.1f} ms (detect {ms.get('detect', 0):.1f}, pose {ms.get('pose', 0):.1f}, track "
          f"{ms.get('track', 0):.1f}, engines {ms.get('engine', 0):.1f}), draw {ms.get('draw', 0):.1f} ms -> {wrote}")
    if s.interrupted:
        print("edgepose: interrupted" if s.interrupted == 2 else f"edgepose: terminated (signal {s.interrupted})",
              file=sys.stderr)  # fmt: skip
        return 128 + s.interrupted
    return 0
