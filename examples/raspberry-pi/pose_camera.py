"""Pose of every person in front of a Raspberry Pi camera: detector + pose model (TFLite), tracking, drawing.

Needs only ``pip install 'edgepose[lite]'`` (numpy, OpenCV, LiteRT); Picamera2 (``sudo apt install
python3-picamera2``, with ``--system-site-packages`` in the venv) is used when it is installed and ``--camera
pi`` asks for it. Any OpenCV source works too: a USB camera index or a video file.

    python pose_camera.py --pose demo_coco_256x192_int8.tflite --detector demo_person_detector_int8.tflite \
        --camera pi --det-every 5 --smooth --out pose.mp4 --jsonl pose.jsonl
    python pose_camera.py --pose ... --detector ... --camera 0            # USB camera
    python pose_camera.py --pose ... --detector ... --camera clip.mp4     # a file

Ctrl-C stops it; the video and the JSON lines written so far stay whole. The loop is edgepose.app's
PoseTracker and run_loop, the same code as ``edgepose run``.
"""

from __future__ import annotations

import argparse
import sys

from edgepose.app import ImageSink, JsonlSink, PoseTracker, Source, VideoSink, open_source, read_boxes, run_loop
from edgepose.detectors import DetectorOptions, open_detector
from edgepose.errors import EdgeposeError
from edgepose.runtimes import load_runtime
from edgepose.spec import spec_for_artifact


def picamera_source(size=(640, 480), fps: float = 30.0) -> Source:
    """Frames from the Pi camera through Picamera2 ("BGR888" is R, G, B in memory: the RGB frames edgepose takes)."""
    try:
        from picamera2 import Picamera2
    except ImportError:
        raise EdgeposeError("--camera pi needs Picamera2: sudo apt install python3-picamera2 (and a venv made "
                            "with --system-site-packages)") from None  # fmt: skip
    cam = Picamera2()
    cam.configure(cam.create_video_configuration(main={"size": size, "format": "BGR888"},
                                                 controls={"FrameRate": fps}))  # fmt: skip

    def frames():
        cam.start()
        try:
            while True:
                yield cam.capture_array()
        finally:
            cam.stop()
            cam.close()

    return Source("Pi camera", fps, "camera", frames)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--pose", required=True, help="pose artifact (.tflite; .onnx/.xml where those engines exist)")
    det = ap.add_mutually_exclusive_group(required=True)
    det.add_argument("--detector", help="person detector: demo_person_detector converted, or a user's mmdeploy "
                     "or YOLO export (.tflite, .onnx, .xml)")  # fmt: skip
    ap.add_argument("--detector-layout", default="auto", choices=["auto", "edgepose", "mmdeploy", "yolo"])
    det.add_argument("--boxes", help="per-frame boxes from COCO annotations instead (edgepose synth --video)")
    ap.add_argument("--camera", default="pi", help="'pi' (Picamera2), a camera index, or a video file")
    ap.add_argument("--size", default="640x480", help="Pi camera frame size WxH")
    ap.add_argument("--det-every", type=int, default=5, help="detector on every K-th frame (default 5)")
    ap.add_argument("--smooth", action="store_true", help="One-Euro filter on the keypoints")
    ap.add_argument("--threads", type=int, default=4, help="engine threads (a Pi 4/5 has 4 cores)")
    ap.add_argument("--out", help="annotated video (.mp4) or a folder for PNG frames")
    ap.add_argument("--jsonl", help="keypoints as JSON lines, one per frame")
    ap.add_argument("--max-frames", type=int)
    args = ap.parse_args(argv)
    try:
        if args.camera == "pi":
            w, h = (int(v) for v in args.size.lower().split("x"))
            source = picamera_source((w, h))
        else:
            source = open_source(args.camera)
        pose_rt = load_runtime(args.pose, threads=args.threads)
        spec = spec_for_artifact(None, pose_rt.metadata, args.pose)
        if args.boxes:
            tracker = PoseTracker(spec, pose_rt, boxes_for=read_boxes(args.boxes), det_every=args.det_every,
                                  smooth=args.smooth, fps=source.fps)  # fmt: skip
        else:
            # edgepose's detector artifact, or a user's mmdeploy / YOLO export (layout read from its outputs)
            opened = open_detector(args.detector, args.threads, DetectorOptions(layout=args.detector_layout,
                                                                                score_threshold=0.3))  # fmt: skip
            tracker = PoseTracker(spec, pose_rt, opened.detect, opened.infer, det_every=args.det_every,
                                  smooth=args.smooth, fps=source.fps)  # fmt: skip
        video = VideoSink(args.out, source.fps) if args.out and args.out.endswith(".mp4") else None
        images = ImageSink(args.out) if args.out and video is None else None
        jsonl = JsonlSink(args.jsonl) if args.jsonl else None
        s = run_loop(tracker, source, video, images, jsonl, args.max_frames)
    except EdgeposeError as e:
        print(f"pose_camera: error: {e}", file=sys.stderr)
        return 2
    m = s.ms
    print(f"{s.frames} frames, {s.fps:.1f} fps (detect {m.get('detect', 0):.1f} ms, pose {m.get('pose', 0):.1f} ms, "
          f"track {m.get('track', 0):.1f} ms, draw {m.get('draw', 0):.1f} ms per frame)")  # fmt: skip
    return 128 + s.interrupted if s.interrupted else 0


if __name__ == "__main__":
    sys.exit(main())
