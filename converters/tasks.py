"""The task seam of the converters: one :class:`Task` per ``ModelSpec.task`` ("pose", "detection").

Every step of :func:`edgepose.converters.api.convert` that depends on what the model computes asks the task of
the spec (:func:`task_for`), never the model's name:

* ``rewrites_head``: whether the head forms of :mod:`.transforms` apply (a pose model's deconvolution head;
  the detector has none: ``--head auto`` keeps it as it is, another form is refused); ``export_rewrite``: an
  exact rewrite of the whole model before export (the detector's: the sigmoid before the output Concat, so
  that INT8 does not give the centre logits and the box sizes one scale).
* ``default_calibration(spec, make)``: the bundled / cached calibration set (pose: crops of the synthetic train
  split; detection: letterboxed frames of the ``scenes_train`` generator,
  :func:`edgepose.calibration.synthetic_scene_calibration`).
* ``parity_frames(spec, n)``: the parity inputs when the calibration set holds none out (pose: synthetic crops;
  detection: letterboxed synthetic scenes), and what they are called in the metadata.
* ``compare`` / ``check`` / ``tolerance``: the parity figures (tensor figures; decoded keypoints for pose,
  decoded boxes for detection), the criteria they must meet, and the tolerance record.
* ``control(spec, opts, cset)``: the control split and its metric (pose: the dataset's headline through the
  top-down pipeline; detection: COCO box AP on letterboxed ``scenes_val`` frames).
* ``every_precision``: the control check scores every artifact (detection: FP32 and FP16 too), not INT8 only.
* ``reference_accuracy``: the PyTorch accuracy recorded in every artifact.
* ``plain_node_names``: the ONNX export's node names without the leading ``/`` (the detector's FPN: onnx2tf).
* ``app_metadata(spec, input_kind)``: the block an app needs to run the artifact without edgepose (``None``: nothing
  beyond the pose metadata of before).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np

from edgepose.errors import EdgeposeError
from edgepose.processing import INPUT_FLOAT, INPUT_UINT8
from edgepose.spec import TASKS, ModelSpec

from . import parity, transforms
from .int8.control import ControlOptions


@dataclass(frozen=True)
class Task:
    name: str
    rewrites_head: bool
    default_calibration: Callable[[ModelSpec, bool], Path]
    parity_frames: Callable[[ModelSpec, int], np.ndarray]
    parity_from: str  # what parity_frames are, for the metadata
    compare: Callable[[np.ndarray, np.ndarray, ModelSpec], dict[str, Any]]
    check: Callable[[dict[str, Any], str], list[str]]
    tolerance: Callable[[str], dict[str, Any]]
    control: Callable[[ModelSpec, ControlOptions | None, list[str]], Any]
    reference_accuracy: Callable[[ModelSpec, Any, str], dict[str, Any] | None]
    app_metadata: Callable[[ModelSpec, str], dict[str, Any] | None]  # (spec, the artifacts' input kind)
    every_precision: bool = False
    # the control images the check scores on without --control-size (None: the pose default, 100; 300 under
    # --max-drop)
    control_images: int | None = None
    plain_node_names: bool = False  # export with node names free of the leading "/" (export_onnx's plain_names)
    # an exact rewrite of the whole model before export (``None``: none), and what it did (the metadata's
    # ``conversion.graph_rewrites``); the pose head's own forms are ``rewrites_head``'s
    export_rewrite: Callable[[Any], Any] | None = None
    export_rewrites: tuple[str, ...] = ()


TASK_REGISTRY: dict[str, Task] = {}


def register_task(task: Task) -> Task:
    if task.name not in TASKS:
        raise ValueError(f"task {task.name!r} is not one of edgepose.spec.TASKS ({', '.join(TASKS)})")
    TASK_REGISTRY[task.name] = task
    return task


def task_for(spec: ModelSpec) -> Task:
    """The task of ``spec`` (its ``task`` field)."""
    try:
        return TASK_REGISTRY[spec.task]
    except KeyError:
        raise EdgeposeError(f"model {spec.name}: the converters know no task {spec.task!r} "
                            f"(known: {', '.join(TASK_REGISTRY)})") from None  # fmt: skip


# ------------------------------------------------------------------------------------------------ pose
def _pose_calibration(spec: ModelSpec, make: bool) -> Path:
    from edgepose.calibration import default_calibration_path

    return default_calibration_path(spec, make=make)


def _pose_control(spec: ModelSpec, opts: ControlOptions | None, calib_images: list[str]) -> Any:
    from .int8.control import control_set

    return control_set(spec, opts, calib_images)


def _pose_reference(spec: ModelSpec, torch_model: Any, sha: str) -> dict[str, Any] | None:
    from .reference import reference_accuracy

    return reference_accuracy(spec, torch_model, sha)


register_task(Task(
    "pose", rewrites_head=True, default_calibration=_pose_calibration,
    parity_frames=lambda spec, n: parity.synthetic_parity_crops(spec, n),
    parity_from=f"synthetic crops (seed {parity.PARITY_SEED})",
    compare=lambda ref, out, spec: parity.compare(ref, out), check=parity.check, tolerance=parity.tolerance_dict,
    control=_pose_control, reference_accuracy=_pose_reference, app_metadata=lambda spec, input_kind: None,
))  # fmt: skip


# ------------------------------------------------------------------------------------------- detection
DETECTION_CALIB = "default_detection_{h}x{w}.npz"
DETECTION_CONTROL_IMAGES = 300  # a detector's control split without --control-size: all of scenes_val


def _detection_calibration(spec: ModelSpec, make: bool) -> Path:
    """The detector's default set: letterboxed ``scenes_train`` frames, made once and cached."""
    from edgepose.calibration import calibration_dirs, synthetic_scene_calibration, write_calibration
    from edgepose.files import cache_dir

    name = DETECTION_CALIB.format(h=spec.input_size[1], w=spec.input_size[0])
    for d in [*calibration_dirs(), cache_dir("calibration")]:
        if (d / name).is_file():
            return d / name
    if not make:
        raise EdgeposeError(f"no default calibration set {name} for {spec.name}")
    return write_calibration(cache_dir("calibration") / name, synthetic_scene_calibration(spec), jpeg_quality=95)


def _detection_control(spec: ModelSpec, opts: ControlOptions | None, calib_images: list[str]) -> Any:
    from .int8.boxes import box_control_set

    return box_control_set(spec, opts)


def _detection_reference(spec: ModelSpec, torch_model: Any, sha: str) -> dict[str, Any] | None:
    """Box AP of the PyTorch detector on the whole ``scenes_val`` split (:func:`edgepose.detector_eval.score_detector`),
    cached by checkpoint and annotation file."""
    from edgepose.detector_eval import score_detector
    from edgepose.files import sha256_of
    from edgepose.synthetic import ensure_scenes

    from .int8.boxes import METRIC
    from .int8.control import torch_infer
    from .reference import cached_record

    ann, images = ensure_scenes("scenes_val")
    ann_sha = sha256_of(ann)

    def measure() -> dict[str, Any]:
        import torch

        res = score_detector(torch_infer(torch_model), spec, ann, images)
        return {"metric": METRIC, "value": res["metrics"].get("AP"), "metrics": res["metrics"], "dataset": "coco",
                "split": "scenes_val", "ann": ann.name, "ann_sha256": ann_sha, "bbox_file_sha256": None,
                "flip_test": False, "num_images": res["images"], "num_samples": res["persons"],
                "score_threshold": spec.score_threshold, "checkpoint_sha256": sha,
                "engine": f"torch {torch.__version__} (CPU, FP32)"}  # fmt: skip

    return cached_record(f"det1|{spec.name}|{sha}|{ann_sha}|{spec.score_threshold}", measure)


def detection_app_metadata(spec: ModelSpec, input_kind: str = INPUT_FLOAT) -> dict[str, Any]:
    """What an app needs to run a converted detector without edgepose: input, letterbox, output decoding.
    ``input_kind``: the artifacts' input (``--input uint8``: the letterboxed frame's RGB bytes, NHWC, normalised
    inside the model)."""
    from edgepose.detection import DETECTION_CHANNELS, STRIDE, pad_value

    from .export import INPUT_NAME, OUTPUT_NAME

    w, h = spec.input_size
    u8 = input_kind == INPUT_UINT8
    return {
        "task": "detection",
        "input": {"name": INPUT_NAME, "width": w, "height": h, "shape": [1, h, w, 3] if u8 else [1, 3, h, w],
                  "layout": "NHWC" if u8 else "NCHW", "color": "RGB", "dtype": "uint8" if u8 else "float32",
                  "mean": list(spec.mean), "std": list(spec.std),
                  "normalise": "none here: the letterboxed frame's RGB bytes; (pixel - mean) / std is inside the model"
                  if u8 else "(pixel - mean) / std per channel, pixels 0..255 RGB"},
        "letterbox": {"pad_value": list(pad_value(spec)),
                      "rule": "s = min(W / w, H / h); resize to (round(w * s), round(h * s)) bilinear, each clamped "
                              "to 1..W / 1..H; place at dx = (W - nw) // 2, dy = (H - nh) // 2; the rest pad_value; "
                              "a box goes back as x = (x' - dx) * w / nw, y = (y' - dy) * h / nh, clipped"},
        "output": {"name": OUTPUT_NAME, "shape": [1, DETECTION_CHANNELS, h // STRIDE, w // STRIDE],
                   "layout": "NCHW", "stride": STRIDE,
                   "channels": ["centre_heatmap_sigmoid", "box_w_fraction_of_input_width",
                                "box_h_fraction_of_input_height", "centre_offset_x_cells", "centre_offset_y_cells"]},
        "decode": {"method": "centernet", "peaks": "3x3 local maxima of channel 0 (a cell equal to its 3x3 max-pool)",
                   "top_k": 100, "score_threshold": spec.score_threshold,
                   "box": "cx = (x + off_x) * stride, cy = (y + off_y) * stride, bw = w_frac * W, bh = h_frac * H "
                          "(input pixels, pixel edges)",
                   "nms": "greedy, class-agnostic, after the letterbox is undone", "nms_iou": 0.6,
                   "classes": ["person"]},
    }  # fmt: skip


register_task(Task(
    "detection", rewrites_head=False, default_calibration=_detection_calibration,
    parity_frames=parity.scene_parity_frames,
    parity_from="letterboxed synthetic scenes (scenes_train generator, past the split)",
    compare=parity.compare_boxes, check=parity.check_boxes, tolerance=parity.box_tolerance_dict,
    control=_detection_control, reference_accuracy=_detection_reference, app_metadata=detection_app_metadata,
    every_precision=True, plain_node_names=True,
    # all of scenes_val (300 frames, ~3 s per artifact): a box-AP drop of 0.01 is within the noise of 100 frames
    # (plain TFLite INT8 of the demo detector: 0.0116 on the first 100, 0.0079 on all 300)
    control_images=DETECTION_CONTROL_IMAGES,
    export_rewrite=transforms.rewrite_detector, export_rewrites=tuple(transforms.DETECTOR_REWRITES),
))  # fmt: skip


__all__ = ["Task", "TASK_REGISTRY", "register_task", "task_for", "detection_app_metadata"]
