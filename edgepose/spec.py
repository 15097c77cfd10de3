"""Model specs: every fact about a zoo model that code downstream needs.

A spec is the single source of truth for input size, normalisation, keypoints, flip pairs, box padding,
checkpoint and published results (the ``pretrained_cfg`` idea from timm). Nothing else keeps a copy.
Specs are registered in a plain dict through :func:`register`; adding a model means adding one spec.
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass, field
from typing import Callable

from .errors import EdgeposeError

__all__ = [
    "ModelSpec",
    "DatasetInfo",
    "MODELS",
    "DATASETS",
    "register",
    "get_spec",
    "list_models",
    "DEFAULT_MODEL",
    "spec_for_checkpoint",
    "TASKS",
    "spec_from_metadata",
    "spec_for_artifact",
    "check_artifact_model",
    "check_metadata_types",
]

MMPOSE_URL = "https://download.openmmlab.com/mmpose/"
IMAGENET_MEAN = (123.675, 116.28, 103.53)  # RGB, 0-255 scale
IMAGENET_STD = (58.395, 57.12, 57.375)


@dataclass(frozen=True)
class DatasetInfo:
    """Keypoint layout of a dataset (mmpose's dataset_info)."""

    name: str
    keypoints: tuple[str, ...]
    skeleton: tuple[tuple[int, int], ...]
    flip_pairs: tuple[tuple[int, int], ...]
    metric: str  # "coco_ap" | "pckh" | "hand_pck" | "hand_pckh"
    box_padding: float = 1.25
    box_rule: str = "xywh"  # "xywh" (aspect-corrected box) or "mpii" (json centre/scale)
    sigmas: tuple[float, ...] | None = None  # OKS sigmas (COCO only)

    @property
    def num_keypoints(self) -> int:
        return len(self.keypoints)


COCO_KEYPOINTS = (
    "nose", "left_eye", "right_eye", "left_ear", "right_ear",
    "left_shoulder", "right_shoulder", "left_elbow", "right_elbow",
    "left_wrist", "right_wrist", "left_hip", "right_hip",
    "left_knee", "right_knee", "left_ankle", "right_ankle",
)  # fmt: skip
COCO_SKELETON = (
    (15, 13), (13, 11), (16, 14), (14, 12), (11, 12), (5, 11), (6, 12), (5, 6), (5, 7),
    (6, 8), (7, 9), (8, 10), (1, 2), (0, 1), (0, 2), (1, 3), (2, 4), (3, 5), (4, 6),
)  # fmt: skip
COCO_SIGMAS = tuple(
    s / 10.0
    for s in (.26, .25, .25, .35, .35, .79, .79, .72, .72, .62, .62, 1.07, 1.07, .87, .87, .89, .89)
)  # fmt: skip
MPII_KEYPOINTS = (
    "right_ankle", "right_knee", "right_hip", "left_hip", "left_knee", "left_ankle",
    "pelvis", "thorax", "upper_neck", "head_top",
    "right_wrist", "right_elbow", "right_shoulder", "left_shoulder", "left_elbow", "left_wrist",
)  # fmt: skip
MPII_SKELETON = (
    (0, 1), (1, 2), (2, 6), (6, 3), (3, 4), (4, 5), (6, 7), (7, 8), (8, 9),
    (8, 12), (12, 11), (11, 10), (8, 13), (13, 14), (14, 15),
)  # fmt: skip
HAND_KEYPOINTS = ("wrist",) + tuple(
    f"{finger}{i}" for finger in ("thumb", "forefinger", "middle_finger", "ring_finger", "pinky_finger")
    for i in range(1, 5)
)  # fmt: skip
HAND_SKELETON = tuple(
    pair for base in (1, 5, 9, 13, 17)
    for pair in ((0, base), (base, base + 1), (base + 1, base + 2), (base + 2, base + 3))
)  # fmt: skip

DATASETS: dict[str, DatasetInfo] = {
    "coco": DatasetInfo(
        "coco", COCO_KEYPOINTS, COCO_SKELETON,
        ((1, 2), (3, 4), (5, 6), (7, 8), (9, 10), (11, 12), (13, 14), (15, 16)),
        metric="coco_ap", sigmas=COCO_SIGMAS,
    ),
    "mpii": DatasetInfo(
        "mpii", MPII_KEYPOINTS, MPII_SKELETON,
        ((0, 5), (1, 4), (2, 3), (10, 15), (11, 14), (12, 13)),
        metric="pckh", box_rule="mpii",
    ),
    "onehand10k": DatasetInfo("onehand10k", HAND_KEYPOINTS, HAND_SKELETON, (), metric="hand_pck"),
    "panoptic": DatasetInfo(
        "panoptic", HAND_KEYPOINTS, HAND_SKELETON, (), metric="hand_pckh", box_padding=1.76
    ),
    "rhd": DatasetInfo("rhd", HAND_KEYPOINTS, HAND_SKELETON, (), metric="hand_pck"),
}  # fmt: skip


@dataclass(frozen=True)
class ModelSpec:
    """Everything about one zoo model. Sizes are (width, height), as mmpose's ``image_size``."""

    name: str
    dataset: str
    input_size: tuple[int, int]
    checkpoint: str  # URL, or "package:<file>" for weights shipped inside edgepose
    checkpoint_sha256: str = ""  # full sha256 of the checkpoint file, verified on load when set
    published: dict[str, float] = field(default_factory=dict)
    config: str = ""
    train_sigma: float = 2.0
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    flip_test: bool = True
    shift_heatmap: bool = True
    description: str = ""
    task: str = "pose"  # one of TASKS: "pose" (top-down heatmaps of keypoints) or "detection" (person boxes)
    score_threshold: float = 0.0  # detection: the default peak score threshold of the device-side decode

    @property
    def is_detector(self) -> bool:
        return self.task == "detection"

    @property
    def info(self) -> DatasetInfo:
        return DATASETS[self.dataset]

    @property
    def num_keypoints(self) -> int:
        return self.info.num_keypoints

    @property
    def heatmap_size(self) -> tuple[int, int]:
        return (self.input_size[0] // 4, self.input_size[1] // 4)

    @property
    def keypoints(self) -> tuple[str, ...]:
        return self.info.keypoints

    @property
    def skeleton(self) -> tuple[tuple[int, int], ...]:
        return self.info.skeleton

    @property
    def flip_pairs(self) -> tuple[tuple[int, int], ...]:
        return self.info.flip_pairs

    @property
    def box_padding(self) -> float:
        return self.info.box_padding

    @property
    def checkpoint_hash(self) -> str | None:
        """The sha256 prefix mmcv's ``publish_model`` puts in the file name (``-d1e58e7b_20200727.pth``)."""
        return checkpoint_hash_from_name(self.checkpoint)

    def to_dict(self) -> dict:
        """A JSON-friendly description (stored in every artifact's metadata)."""
        d = dataclasses.asdict(self)
        if self.task == "detection":  # person boxes: the keypoint layout of the dataset does not apply
            w, h = self.heatmap_size
            d.update(
                heatmap_size=[w, h],
                output={
                    "shape": [1, 5, h, w], "stride": 4, "layout": "letterbox",
                    "channels": ["centre_heatmap_sigmoid", "box_w_fraction", "box_h_fraction",
                                 "centre_offset_x_cells", "centre_offset_y_cells"],
                },
            )  # fmt: skip
            return d
        d.update(
            num_keypoints=self.num_keypoints,
            heatmap_size=list(self.heatmap_size),
            keypoints=list(self.keypoints),
            skeleton=[list(p) for p in self.skeleton],
            flip_pairs=[list(p) for p in self.flip_pairs],
            box_padding=self.box_padding,
            box_rule=self.info.box_rule,
            metric=self.info.metric,
        )
        return d


_HASH_RE = re.compile(r"-([0-9a-f]{8})(?:_\d{8})?\.pth$")


def checkpoint_hash_from_name(name: str) -> str | None:
    m = _HASH_RE.search(name)
    return m.group(1) if m else None


TASKS = ("pose", "detection")
MODELS: dict[str, ModelSpec] = {}
DEFAULT_MODEL = "demo_coco_256x192"


def register(fn: Callable[[], ModelSpec]) -> Callable[[], ModelSpec]:
    """Decorator: the function returns a spec, which is added to :data:`MODELS` under its name."""
    spec = fn()
    if spec.name in MODELS:
        raise ValueError(f"model {spec.name!r} registered twice")
    if spec.dataset not in DATASETS:
        raise ValueError(f"model {spec.name!r}: unknown dataset {spec.dataset!r}")
    if spec.task not in TASKS:
        raise ValueError(f"model {spec.name!r}: unknown task {spec.task!r}; tasks: {', '.join(TASKS)}")
    MODELS[spec.name] = spec
    return fn


def get_spec(name: str) -> ModelSpec:
    """The registered model ``name``; an unknown name raises :class:`EdgeposeError` listing the known ones."""
    try:
        return MODELS[name]
    except KeyError:
        raise EdgeposeError(f"unknown model {name!r}; known models: {', '.join(MODELS)}") from None


def list_models() -> list[str]:
    return list(MODELS)


_CFG = "configs/{kind}/2d_kpt_sview_rgb_img/topdown_heatmap/{ds}/mobilenetv2_{ds2}_{size}.py"


@register
def coco_256x192() -> ModelSpec:
    return ModelSpec(
        "coco_256x192", "coco", (192, 256),
        MMPOSE_URL + "top_down/mobilenetv2/mobilenetv2_coco_256x192-d1e58e7b_20200727.pth",
        published={"AP": 0.646, "AP50": 0.874, "AP75": 0.723, "AR": 0.707, "AR50": 0.917},
        config=_CFG.format(kind="body", ds="coco", ds2="coco", size="256x192"),
        description="COCO body, 17 keypoints",
    )  # fmt: skip


@register
def coco_384x288() -> ModelSpec:
    return ModelSpec(
        "coco_384x288", "coco", (288, 384),
        MMPOSE_URL + "top_down/mobilenetv2/mobilenetv2_coco_384x288-26be4816_20200727.pth",
        published={"AP": 0.673, "AP50": 0.879, "AP75": 0.743, "AR": 0.729, "AR50": 0.916},
        config=_CFG.format(kind="body", ds="coco", ds2="coco", size="384x288"),
        train_sigma=3.0, description="COCO body, 17 keypoints",
    )  # fmt: skip


@register
def mpii_256x256() -> ModelSpec:
    return ModelSpec(
        "mpii_256x256", "mpii", (256, 256),
        MMPOSE_URL + "top_down/mobilenetv2/mobilenetv2_mpii_256x256-e068afa7_20200812.pth",
        published={"PCKh": 0.854, "PCKh@0.1": 0.235},
        config=_CFG.format(kind="body", ds="mpii", ds2="mpii", size="256x256"),
        description="MPII body, 16 keypoints",
    )  # fmt: skip


# The hand models come in two releases. The model cards (and mmpose's README up to v0.12/v0.13) publish the
# first checkpoints (2020-12-18; RHD 2021-03-27): those are the plain names, so a file or URL copied from a
# card finds its own spec, hash and numbers. mmpose re-released all three on 2021-03-30 with better numbers:
# those are the ``_20210330`` variants. (mmpose v0.10's README linked the 2020-12-18 files under
# top_down/mobilenetv2/; later READMEs under hand/mobilenetv2/, used here. Either URL is recognised by its
# file name, see :func:`spec_for_checkpoint`.)
_HAND = MMPOSE_URL + "hand/mobilenetv2/"
_HAND_RELEASES = {  # name: (dataset, config ds, ckpt stem, card file, card numbers, later file, later numbers)
    "onehand10k_256x256": (
        "onehand10k", "onehand10k", "OneHand10K hand, 21 keypoints",
        "mobilenetv2_onehand10k_256x256-55d34d7d_20201218.pth", {"PCK@0.2": 0.984, "AUC": 0.526, "EPE": 29.52},
        "mobilenetv2_onehand10k_256x256-f3a3d90e_20210330.pth", {"PCK@0.2": 0.986, "AUC": 0.537, "EPE": 28.60},
    ),
    "panoptic_256x256": (
        "panoptic", "panoptic2d", "CMU Panoptic hand, 21 keypoints",
        "mobilenetv2_panoptic_256x256-b9ec9b68_20201218.pth", {"PCKh@0.7": 0.998, "AUC": 0.684, "EPE": 10.09},
        "mobilenetv2_panoptic_256x256-b733d98c_20210330.pth", {"PCKh@0.7": 0.998, "AUC": 0.694, "EPE": 9.70},
    ),
    "rhd_256x256": (
        "rhd", "rhd2d", "RHD hand, 21 keypoints",
        "mobilenetv2_rhd2d_256x256-b3bca4bd_20210327.pth", {"PCK@0.2": 0.977, "AUC": 0.873, "EPE": 3.14},
        "mobilenetv2_rhd2d_256x256-85fa02db_20210330.pth", {"PCK@0.2": 0.985, "AUC": 0.883, "EPE": 2.80},
    ),
}  # fmt: skip


def _hand_specs(name: str) -> tuple[ModelSpec, ModelSpec]:
    ds, cfg_ds, desc, card, card_pub, later, later_pub = _HAND_RELEASES[name]
    config = _CFG.format(kind="hand", ds=cfg_ds, ds2=cfg_ds, size="256x256")
    date = card.rsplit("_", 1)[-1][:8]
    return (
        ModelSpec(name, ds, (256, 256), _HAND + card, published=card_pub, config=config,
                  description=f"{desc} (model card checkpoint, {date[:4]}-{date[4:6]}-{date[6:]})"),
        ModelSpec(f"{name}_20210330", ds, (256, 256), _HAND + later, published=later_pub, config=config,
                  description=f"{desc} (mmpose's re-release, 2021-03-30)"),
    )  # fmt: skip


for _name in _HAND_RELEASES:
    for _spec in _hand_specs(_name):
        register(lambda _spec=_spec: _spec)


@register
def demo_coco_256x192() -> ModelSpec:
    return ModelSpec(
        "demo_coco_256x192", "coco", (192, 256), "package:demo_coco_256x192.pth",
        checkpoint_sha256="9e38b63e695afc0ea243949a8e139181519ca4524ace82e7c5ef0544edf31227",
        description="coco_256x192 architecture trained by edgepose on synthetic figures (demo only)",
    )  # fmt: skip


# the bundled detector checkpoint's full sha256 (checked on load)
DEMO_DETECTOR_SHA256 = "b62d2aeff4a1cf00bf5cbeeb4540734a83e650de05a942882d9ae965de1c2b34"


@register
def demo_person_detector() -> ModelSpec:
    # CenterNet-style person detector on the pose models' MobileNetV2 (edgepose.models.CenterNetDetector):
    # letterboxed 320x256 (W x H) frame in, one [1, 5, 64, 80] tensor out (sigmoid centre heatmap, box w and h as
    # fractions of the input, centre offset in stride-4 cells); decoded by edgepose.detection. The "coco"
    # dataset names its one class (person); keypoint facts of the spec do not apply to a detector.
    return ModelSpec(
        "demo_person_detector", "coco", (320, 256), "package:demo_person_detector.pth",
        checkpoint_sha256=DEMO_DETECTOR_SHA256, flip_test=False, shift_heatmap=False, task="detection",
        score_threshold=0.05,
        description="CenterNet-style person detector trained by edgepose on synthetic scenes (demo only)",
    )  # fmt: skip


def spec_for_checkpoint(source: str | None) -> ModelSpec | None:
    """The zoo model whose published checkpoint file has the name of ``source`` (a path or URL), if any: a file
    copied from a model card finds its own spec, expected hash and published numbers."""
    if not source:
        return None
    name = str(source).replace("\\", "/").rsplit("/", 1)[-1]
    for spec in MODELS.values():
        if spec.checkpoint.rsplit("/", 1)[-1] == name and not spec.checkpoint.startswith("package:"):
            return spec
    return None


def spec_from_metadata(meta: dict, source: str = "artifact metadata") -> ModelSpec:
    """The spec an artifact was made from: the registered one by name, else rebuilt from its stored dict.

    A metadata document of the wrong shape (``"model": "x"``, a size that is not two whole numbers, an unknown
    keypoint layout) is one :class:`EdgeposeError` naming ``source``, not an ``AttributeError``."""
    if not isinstance(meta, dict):
        raise EdgeposeError(f"{source}: metadata is not a JSON object")
    model = meta.get("model", meta)
    if not isinstance(model, dict):
        raise EdgeposeError(f"{source}: metadata 'model' is {type(model).__name__} {model!r:.40}, not an object")
    name = model.get("name")
    if isinstance(name, str) and name in MODELS:
        return MODELS[name]
    fields = {f.name: f for f in dataclasses.fields(ModelSpec)}
    kwargs = {k: v for k, v in model.items() if k in fields}

    def bad(key: str, what: str):
        return EdgeposeError(f"{source}: metadata model '{key}' is {kwargs.get(key)!r:.40}, not {what}")

    if not isinstance(name, str) or not name:
        raise bad("name", "a model name")
    if kwargs.get("dataset") not in DATASETS:
        raise bad("dataset", f"one of {', '.join(DATASETS)}")
    size = kwargs.get("input_size")
    if not (isinstance(size, list) and len(size) == 2 and all(type(v) is int and 8 <= v <= 8192 for v in size)):
        raise bad("input_size", "[width, height] in whole pixels")
    for key in ("mean", "std"):
        v = kwargs.get(key, list(getattr(ModelSpec, key)))
        if not (isinstance(v, (list, tuple)) and len(v) == 3 and all(type(x) in (int, float) for x in v)):
            raise bad(key, "three numbers")
        kwargs[key] = tuple(v)
    kwargs["input_size"] = tuple(size)
    for key in ("checkpoint", "checkpoint_sha256", "config", "description"):
        if not isinstance(kwargs.setdefault(key, ""), str):
            raise bad(key, "a string")
    if not isinstance(kwargs.get("published", {}), dict):
        raise bad("published", "an object")
    app = meta.get("app") if "model" in meta else None
    if "task" not in kwargs and isinstance(app, dict) and app.get("task") in TASKS:
        kwargs["task"] = app["task"]  # a converted detector says what it is in its app block, too
    if kwargs.setdefault("task", "pose") not in TASKS:
        raise bad("task", f"one of {', '.join(TASKS)}")
    thr = kwargs.setdefault("score_threshold", 0.0)
    if type(thr) not in (int, float) or not 0.0 <= thr <= 1.0:
        raise bad("score_threshold", "a score between 0 and 1")
    try:
        return ModelSpec(**kwargs)
    except (TypeError, ValueError) as e:
        raise EdgeposeError(f"{source}: model entry does not describe a model ({e})") from None


# The sections of an artifact's metadata that readers walk into, and what each must be when present.
_META_OBJECTS = ("model", "layout", "input", "output", "tools", "source", "conversion", "parity", "file",
                 "companions", "calibration", "accuracy_control", "app")  # fmt: skip
_META_LAYOUTS = ("NCHW", "NHWC")


def check_metadata_types(meta: dict, source: str | object) -> None:
    """One line naming ``source`` when an artifact's metadata has a section of the wrong JSON type (``"model":
    "x"``, ``"layout": 5``), instead of an ``AttributeError`` deep in a reader. ``null`` stands for absent, except
    for the sections every engine reads (model, layout, input, output)."""
    for key in _META_OBJECTS:
        v = meta.get(key)
        if (v is not None or key in ("model", "layout", "input", "output") and key in meta) and not isinstance(v, dict):
            raise EdgeposeError(f"{source}: metadata '{key}' is {type(v).__name__} {v!r:.40}, not an object")
    for key in ("input", "output"):
        layout = (meta.get("layout") or {}).get(key)
        if layout is not None and layout not in _META_LAYOUTS:
            raise EdgeposeError(f"{source}: metadata layout '{key}' is {layout!r:.40}, not one of "
                                f"{', '.join(_META_LAYOUTS)}")  # fmt: skip
        shape = (meta.get(key) or {}).get("shape")
        if shape is not None and not (isinstance(shape, list) and all(v is None or type(v) is int for v in shape)):
            raise EdgeposeError(f"{source}: metadata {key} 'shape' is {shape!r:.40}, not a list of whole numbers")


def check_artifact_model(source: str | object, spec: ModelSpec, meta: dict) -> None:
    """The artifact at ``source`` (metadata ``meta``) must be for ``spec``: the same model name, and a rebuilt
    spec the same keypoint count and input size. The one check of predict, eval and bench."""
    if not meta or "model" not in meta:
        return
    made = spec_from_metadata(meta, f"{source}")
    if made.name != spec.name:
        raise EdgeposeError(f"{source}: artifact is for model {made.name}, not {spec.name} (pass --model "
                            f"{made.name}, or leave --model out)")  # fmt: skip
    if made.num_keypoints != spec.num_keypoints:
        raise EdgeposeError(f"{source}: artifact has {made.num_keypoints} keypoints, model {spec.name} has "
                            f"{spec.num_keypoints}")  # fmt: skip
    if tuple(made.input_size) != tuple(spec.input_size):
        w, h = made.input_size
        raise EdgeposeError(f"{source}: artifact takes {w}x{h} crops, model {spec.name} takes "
                            f"{spec.input_size[0]}x{spec.input_size[1]}")  # fmt: skip


def spec_for_artifact(model: str | None, meta: dict, source: str | object) -> ModelSpec:
    """The spec to run an artifact with: ``--model`` when given (checked against the artifact's metadata by
    :func:`check_artifact_model`), else the artifact's own."""
    if model is None:
        return spec_from_metadata(meta, f"{source}")
    spec = get_spec(model)
    check_artifact_model(source, spec, meta)
    return spec
