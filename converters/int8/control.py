"""INT8 judged on the task metric: the control split every INT8 artifact is scored on. Format-free.

* **Control split** (:class:`ControlSet`): real evaluation data, scored exactly as ``edgepose eval`` scores it
  (ground-truth boxes, flip test, the dataset's own metric), on images disjoint from the calibration crops'. For
  a demo model it is the first ``size`` images of its synthetic val split (the bundled calibration set comes
  from the synthetic *train* split); for a zoo model, the files given with ``--control-ann/--control-images``.
  The crops are made once and the PyTorch FP32 score is computed once (the reference every drop is taken from).
* The acceptance check and ``--max-drop`` (:mod:`.check`) score each INT8 artifact on it; the layer search
  (:mod:`.search`) re-scores its candidates on it; a target's own accuracy-control method (registered as
  ``controls=``) gets it as its validation data.
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import math
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable

import numpy as np

from edgepose.errors import EdgeposeError
from edgepose.spec import DATASETS, ModelSpec

from ..base import TARGETS

log = logging.getLogger(__name__)

# The headline metric of each dataset kind (the same names as edgepose.bench's MAIN_METRIC)
HEADLINE = {"coco_ap": "AP", "pckh": "PCKh", "hand_pck": "PCK@0.2", "hand_pckh": "PCKh@0.7"}
DEFAULT_CONTROL_IMAGES = 100
# under --max-drop: a budget of a few thousandths needs more images than the plain check's 100. Measured
# (benchmarks/results/int8_unseen.md): an OpenVINO INT8 artifact within 0.003 on the first 100 demo val images
# lost 0.018 AP on unseen synthetic data and 0.013 on the other 200 val images; on all 300 the same search is
# refused with one line. So --max-drop scores on up to 300 images unless --control-size says otherwise.
MAX_DROP_CONTROL_IMAGES = 300
DEFAULT_TASK_BUDGET = 0.03  # like bench's INT8 budget: a larger drop fails the conversion unless allowed
CONFIRM_TOP = 8  # candidate layers whose effect on the output is measured one by one before the search
SEARCH = "search"  # the accuracy-control method every target has (int8/search.py)
RANK_CROPS = 16  # control crops the layer ranking and the one-by-one confirmation run on


@dataclass
class ControlOptions:
    """Where the control split comes from (``None`` ann/images: the demo model's synthetic val split)."""

    ann: str | Path | None = None
    images: str | Path | None = None
    dataset: str | None = None
    size: int | None = None  # images; None: DEFAULT_CONTROL_IMAGES, or MAX_DROP_CONTROL_IMAGES under --max-drop
    flip_test: bool = True
    batch_size: int = 16
    rank_crops: int = RANK_CROPS
    confirm_top: int = CONFIRM_TOP
    # a target's accuracy-control method, by target name (default: edgepose's layer search, "search"); the other
    # names are the ones the target registers as ``controls``: the CLI's ``--<target>-control``
    methods: dict[str, str] = field(default_factory=dict)


class CropInputs:
    """What a control set feeds an engine, from its uint8 ``crops`` (pose crops or a detector's letterboxed
    frames) and its ``spec``: the normalised inputs once, or the crops themselves for ``--input uint8``.
    A dataclass using it declares ``_inputs: np.ndarray | None = field(default=None, repr=False)``."""

    spec: ModelSpec
    crops: np.ndarray
    _inputs: np.ndarray | None

    @property
    def inputs(self) -> np.ndarray:
        """(N, 3, H, W) float32: the crops normalised with the model's mean/std (what PyTorch takes)."""
        if self._inputs is None:
            from edgepose.processing import normalize

            self._inputs = normalize(self.crops, self.spec.mean, self.spec.std)
        return self._inputs

    def inputs_for(self, infer: Any, rows: Any = slice(None)) -> np.ndarray:
        """The crops ``rows`` as ``infer`` takes them: uint8 NHWC (an artifact made with ``--input uint8``)
        or normalised float NCHW."""
        from edgepose.processing import INPUT_UINT8, input_kind_of

        return np.ascontiguousarray(self.crops[rows] if input_kind_of(infer) == INPUT_UINT8 else self.inputs[rows])


@dataclass
class ControlSet(CropInputs):
    spec: ModelSpec
    ds: Any  # edgepose.datasets.Dataset restricted to the control images
    metric: str
    info: dict[str, Any]
    crops: np.ndarray  # (N, H, W, 3) uint8 RGB crops, one per instance
    image_index: np.ndarray  # (N,) index of each instance's image in ``images``
    images: list[Any]  # image ids, control order
    flip_test: bool = True
    batch_size: int = 16
    rank_crops: int = RANK_CROPS
    confirm_top: int = CONFIRM_TOP
    methods: dict[str, str] = field(default_factory=dict)  # ControlOptions.methods
    reference: float | None = None  # PyTorch FP32 value
    reference_keypoints: np.ndarray | None = None
    reference_infer: Callable[[np.ndarray], np.ndarray] | None = None
    _subsets: dict = field(default_factory=dict, repr=False)
    _inputs: np.ndarray | None = field(default=None, repr=False)

    # ------------------------------------------------------------------ scoring
    def predict(self, infer: Callable[[np.ndarray], np.ndarray], rows: np.ndarray | None = None) -> np.ndarray:
        """Keypoints (n, K, 3) of the instances ``rows`` (default all), through the shared pipeline."""
        from edgepose.processing import TopDownPipeline, input_kind_of

        rows = np.arange(len(self.crops)) if rows is None else np.asarray(rows)
        pipe = TopDownPipeline(self.spec, flip_test=self.flip_test, input_kind=input_kind_of(infer))
        centers = np.stack([self.ds.samples[i].center for i in rows]).astype(np.float32)
        scales = np.stack([self.ds.samples[i].scale for i in rows]).astype(np.float32)
        out = np.zeros((len(rows), self.spec.num_keypoints, 3), np.float32)
        for a in range(0, len(rows), self.batch_size):
            sel = rows[a : a + self.batch_size]
            hm = pipe.forward(infer, self.inputs_for(infer, sel))
            out[a : a + len(sel)] = pipe.decode(hm, centers[a : a + len(sel)], scales[a : a + len(sel)])
        return out

    def value(self, keypoints: np.ndarray, images: list[int] | None = None) -> float:
        """The headline metric of ``keypoints`` (all instances, or those of the image positions ``images``)."""
        from edgepose.evaluate import score

        if images is None:
            ds, kp = self.ds, keypoints
        else:
            key = tuple(sorted(set(int(i) for i in images)))
            if key not in self._subsets:
                rows = np.flatnonzero(np.isin(self.image_index, key))
                self._subsets[key] = (subset_dataset(self.ds, rows), rows)
            ds, rows = self._subsets[key]
            kp = keypoints if len(keypoints) == len(rows) else keypoints[rows]
        metrics, _ = score(ds, kp, self.spec)
        v = metrics.get(self.metric)
        return float("nan") if v is None else float(v)

    def evaluate(self, infer: Callable[[np.ndarray], np.ndarray]) -> tuple[float, np.ndarray]:
        kp = self.predict(infer)
        return self.value(kp), kp

    def per_image(self, keypoints: np.ndarray, images: list[int] | None = None) -> list[float]:
        """One value per image (``images``: positions, default all; ``keypoints``: of their instances, in
        order), higher is better: the mean OKS of its instances against the ground truth (COCO), else the
        image's own metric. What NNCF ranks layers by."""
        images = list(range(len(self.images))) if images is None else [int(i) for i in images]
        rows = np.flatnonzero(np.isin(self.image_index, images))
        if len(keypoints) != len(rows):
            keypoints = keypoints[rows]
        if DATASETS[self.ds.name].metric != "coco_ap":
            return [self.value(keypoints[self.image_index[rows] == i], [i]) for i in images]
        oks = instance_oks(self.ds, rows, keypoints, DATASETS["coco"].sigmas)
        out = []
        for i in images:
            v = oks[self.image_index[rows] == i]
            out.append(float(np.nanmean(v)) if np.isfinite(v).any() else 0.0)
        return out

    def score_images(self, infer: Callable[[np.ndarray], np.ndarray], images: list[int]) -> tuple[float, list]:
        """(metric over ``images``, one value per image): NNCF's validation function."""
        images = [int(i) for i in images]
        rows = np.flatnonzero(np.isin(self.image_index, images))
        kp = self.predict(infer, rows)
        return self.value(kp, images), self.per_image(kp, images)

    def set_reference(self, torch_model: Any, checkpoint_sha256: str | None = None) -> float:
        """Score the PyTorch FP32 model once: the value every drop is taken from. With the checkpoint's sha256
        the keypoints are cached (``~/.cache/edgepose/control``), keyed by checkpoint, control images and
        pipeline, so that a second conversion of the same model skips it."""
        from edgepose import __version__
        from edgepose.files import atomic_path, cache_dir

        self.reference_infer = torch_infer(torch_model)
        key = "|".join(map(str, (checkpoint_sha256, self.spec.name, self.info["image_ids_sha256"], self.ds.name,
                                 self.info["num_instances"], self.flip_test, __version__)))  # fmt: skip
        path = cache_dir("control") / f"{hashlib.sha256(key.encode()).hexdigest()[:24]}.npz"
        kp = None
        if checkpoint_sha256 and path.is_file():
            try:
                with np.load(path, allow_pickle=False) as z:
                    if str(z["key"]) == key:
                        kp = z["keypoints"]
            except (OSError, ValueError, KeyError):
                kp = None
        if kp is None:
            kp = self.predict(self.reference_infer)
            if checkpoint_sha256:
                with atomic_path(path, suffix=".npz") as tmp:
                    np.savez(tmp, key=np.array(key), keypoints=kp)
        self.reference, self.reference_keypoints = self.value(kp), kp
        self.info["reference"] = {"runtime": "PyTorch FP32", self.metric: self.reference}
        return self.reference

    def reference_heatmaps(self, x: np.ndarray) -> np.ndarray:
        """PyTorch FP32 heatmaps of the crops ``x`` (no flip)."""
        return np.asarray(self.reference_infer(x), np.float64)

    def drop_of(self, infer: Callable[[np.ndarray], np.ndarray]) -> tuple[float, float]:
        """(value, drop against the PyTorch reference) of a runtime on the control split."""
        value, _ = self.evaluate(infer)
        return value, float(self.reference - value)


def instance_oks(ds: Any, rows: Any, keypoints: np.ndarray, sigmas: Any) -> np.ndarray:
    """COCO OKS of the predicted instances ``keypoints`` (of the samples ``rows``) against their own ground
    truth, with the annotation's area as COCOeval uses it (NaN where an instance has no labelled joint)."""
    areas = {}
    if ds.gt:
        areas = {a.get("id"): float(a.get("area", 0) or 0) for a in ds.gt.get("annotations", [])}
    var = (np.asarray(sigmas, np.float64) * 2) ** 2
    out = np.full(len(rows), np.nan)
    for i, r in enumerate(rows):
        s = ds.samples[int(r)]
        gt = np.asarray(s.keypoints, np.float64)
        vis = gt[:, 2] > 0
        if not vis.any():
            continue
        area = areas.get(s.annotation_id) or float(np.prod(s.bbox[2:]))
        d2 = ((keypoints[i, :, :2] - gt[:, :2]) ** 2).sum(-1)
        e = d2 / var / (area + np.spacing(1)) / 2
        out[i] = float(np.exp(-e[vis]).mean())
    return out


def subset_dataset(ds: Any, rows: np.ndarray) -> Any:
    """``ds`` restricted to the samples ``rows`` (and, for COCO, the ground truth of their images)."""
    rows = [int(r) for r in rows]
    samples = [ds.samples[r] for r in rows]
    gt = ds.gt
    if gt is not None:
        ids = {s.image_id for s in samples}
        gt = {**gt, "images": [im for im in gt.get("images", []) if im.get("id") in ids],
              "annotations": [a for a in gt.get("annotations", []) if a.get("image_id") in ids]}  # fmt: skip
    mpii = ds.mpii_gt
    if mpii is not None:
        mpii = dataclasses.replace(mpii, joints=mpii.joints[rows], visible=mpii.visible[rows],
                                   head_norms=mpii.head_norms[rows])  # fmt: skip
    return dataclasses.replace(ds, samples=samples, gt=gt, mpii_gt=mpii)


def images_in_order(ds: Any) -> list[Any]:
    """The dataset's image ids with instances, in file order."""
    seen: dict[Any, None] = {}
    for s in ds.samples:
        seen.setdefault(s.image_id, None)
    return list(seen)


def control_set(
    spec: ModelSpec, opts: ControlOptions | None, calib_images: list[str] | None = None
) -> ControlSet | None:
    """The control split for ``spec`` (``None`` when there is no evaluation data: a zoo model without files);
    :meth:`ControlSet.set_reference` scores the PyTorch model on it."""
    from edgepose.datasets import default_data, load_dataset
    from edgepose.processing import INPUT_UINT8, TopDownPipeline, read_image

    opts = opts or ControlOptions()
    if (opts.ann is None) != (opts.images is None):
        raise EdgeposeError("--control-ann and --control-images go together")
    if opts.size is None:
        opts = replace(opts, size=DEFAULT_CONTROL_IMAGES)
    if opts.size < 1:
        raise EdgeposeError(f"--control-size must be at least 1 image, got {opts.size}")
    if opts.ann is None:
        default = default_data(spec)
        if default is None:
            return None
        dataset, ann, images = default
        where = "synthetic val split"
    else:
        dataset, ann, images = opts.dataset or spec.dataset, Path(opts.ann), Path(opts.images)
        where = "control files"
    full = load_dataset(dataset, ann, images, spec)
    ids = images_in_order(full)[: opts.size]
    rows = np.flatnonzero(np.isin(np.array([s.image_id for s in full.samples], dtype=object), ids))
    ds = subset_dataset(full, rows)
    names = sorted({s.image.name for s in ds.samples})
    shared = sorted(set(names) & set(calib_images or []))
    if shared:
        raise EdgeposeError(f"{ann}: the control split shares {len(shared)} image(s) with the calibration set "
                            f"(e.g. {shared[0]}); control on images the crops did not come from")  # fmt: skip
    pos = {img: i for i, img in enumerate(ids)}
    pipe = TopDownPipeline(spec, input_kind=INPUT_UINT8)
    crops = np.empty((len(ds.samples), spec.input_size[1], spec.input_size[0], 3), np.uint8)
    by_image: dict[Path, list[int]] = {}
    for i, s in enumerate(ds.samples):
        by_image.setdefault(s.image, []).append(i)
    for path, idx in by_image.items():
        c = np.stack([ds.samples[i].center for i in idx]).astype(np.float32)
        sc = np.stack([ds.samples[i].scale for i in idx]).astype(np.float32)
        crops[idx] = pipe.preprocess(read_image(path), c, sc)
    digest = hashlib.sha256("\n".join(str(i) for i in sorted(ids, key=str)).encode()).hexdigest()
    info = {"source": where, "dataset": dataset, "ann": ann.name, "ann_path": str(ann), "images": str(images),
            "selection": f"first {len(ids)} images with instances, in file order", "num_images": len(ids),
            "num_instances": len(ds.samples), "image_ids_sha256": digest, "boxes": "ground truth",
            "flip_test": bool(opts.flip_test), "disjoint_from_calibration": True}  # fmt: skip
    metric = HEADLINE[DATASETS[dataset].metric]
    return ControlSet(spec, ds, metric, info, crops, np.array([pos[s.image_id] for s in ds.samples]), ids,
                      opts.flip_test, opts.batch_size, rank_crops=opts.rank_crops,
                      confirm_top=opts.confirm_top, methods=dict(opts.methods))  # fmt: skip


def check_control_options(spec: ModelSpec, opts: ControlOptions | None, need_int8: bool, max_drop: float | None,
                          input_kind: str | None = None) -> None:  # fmt: skip
    """The cheap checks of ``--max-drop`` and the control options, before any download or work."""
    from edgepose.datasets import default_data
    from edgepose.processing import INPUT_UINT8

    opts = opts or ControlOptions()
    if max_drop is not None and not math.isfinite(float(max_drop)):
        raise EdgeposeError(f"--max-drop must be a finite number, got {max_drop}")
    if (opts.ann is None) != (opts.images is None):
        raise EdgeposeError("--control-ann and --control-images go together")
    if opts.size is not None and opts.size < 1:
        raise EdgeposeError(f"--control-size must be at least 1 image, got {opts.size}")
    for target, method in opts.methods.items():
        allowed = (SEARCH, *(TARGETS[target].controls if target in TARGETS else ()))
        if method not in allowed:
            raise EdgeposeError(f"--{target}-control must be one of {', '.join(allowed)}, got {method!r}")
    for what, p in (("--control-ann", opts.ann), ("--control-images", opts.images)):
        if p is not None and not Path(p).exists():
            raise EdgeposeError(f"{p}: {what} not found")
    if max_drop is None or not need_int8:
        return
    if input_kind == INPUT_UINT8:  # the layer search feeds float crops
        raise EdgeposeError("--max-drop with --input uint8 is not supported yet: convert with --input float")
    if opts.ann is None and default_data(spec) is None:
        raise EdgeposeError(f"--max-drop needs evaluation data for {spec.name}: pass --control-ann and "
                            "--control-images (a split the calibration images are not from)")  # fmt: skip


def control_size(opts: ControlOptions | None, max_drop: float | None, task_default: int | None = None) -> int:
    """The control images a conversion scores on: ``--control-size`` when given, else the task's own default
    (``task_default``: a detector's 300), else 100, or 300 under ``--max-drop`` (:data:`MAX_DROP_CONTROL_IMAGES`)."""
    if opts is not None and opts.size is not None:
        return opts.size
    if task_default is not None:
        return max(task_default, MAX_DROP_CONTROL_IMAGES) if max_drop is not None else task_default
    return MAX_DROP_CONTROL_IMAGES if max_drop is not None else DEFAULT_CONTROL_IMAGES


def control_for(spec: ModelSpec, opts: ControlOptions | None, cset: Any, need_int8: bool, max_drop: float | None,
                notes: list[str], make: Callable[..., Any] | None = None,
                default_size: int | None = None) -> ControlSet | None:  # fmt: skip
    """The control split of a conversion (``None`` without INT8 or without evaluation data: a zoo model with
    no ``--control-ann``, said in ``notes``; ``--max-drop`` then fails with one line). ``make(spec, opts,
    calibration image names)``: the task's control split (default :func:`control_set`, a pose model's);
    ``need_int8``: whether any artifact is scored on it (a detector's every artifact is); ``default_size``: the
    task's control images when ``--control-size`` is not given (:func:`control_size`)."""
    if not need_int8:
        if max_drop is not None:
            notes.append("--max-drop applies to INT8 artifacts only; none asked for")
        return None
    opts = replace(opts or ControlOptions(), size=control_size(opts, max_drop, default_size))
    cs = (make or control_set)(spec, opts, cset.meta.get("images", []) if cset is not None else [])
    if cs is None:
        if max_drop is not None:
            raise EdgeposeError(f"--max-drop needs evaluation data for {spec.name}: pass --control-ann and "
                                "--control-images (a split the calibration images are not from)")  # fmt: skip
        notes.append("no evaluation data: INT8 accuracy on the task metric not checked "
                     "(--control-ann/--control-images)")  # fmt: skip
    return cs


def torch_infer(model: Any) -> Callable[[np.ndarray], np.ndarray]:
    import torch

    def infer(x: np.ndarray) -> np.ndarray:
        with torch.inference_mode():
            return model(torch.from_numpy(np.ascontiguousarray(x))).numpy()

    return infer


__all__ = ["ControlOptions", "ControlSet", "CropInputs", "control_set", "control_for", "control_size",
           "check_control_options", "torch_infer", "HEADLINE", "DEFAULT_TASK_BUDGET", "DEFAULT_CONTROL_IMAGES",
           "MAX_DROP_CONTROL_IMAGES", "subset_dataset", "instance_oks", "images_in_order"]  # fmt: skip
