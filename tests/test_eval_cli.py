"""``edgepose eval`` end to end on the five sample sets with randomly initialised models."""

from __future__ import annotations

import json

import numpy as np
import pytest

pytest.importorskip("torch")

from edgepose.cli import main  # noqa: E402
from edgepose.datasets import resolve_data  # noqa: E402
from edgepose.evaluate import evaluate  # noqa: E402
from edgepose.spec import get_spec  # noqa: E402
from tests.helpers import SAMPLES, require  # noqa: E402

SETS = {
    "coco": ("coco_256x192", "test_coco.json", 12, ["AP", "AP50", "AP75", "APm", "APl", "AR", "AR50"]),
    "mpii": ("mpii_256x256", "test_mpii.json", 5, ["PCKh", "PCKh@0.1"]),
    "onehand10k": ("onehand10k_256x256", "test_onehand10k.json", 4, ["PCK@0.2", "AUC", "EPE"]),
    "panoptic": ("panoptic_256x256", "test_panoptic.json", 4, ["PCKh@0.7", "AUC", "EPE"]),
    "rhd": ("rhd_256x256", "test_rhd.json", 3, ["PCK@0.2", "AUC", "EPE"]),
}


@pytest.fixture(scope="session")
def random_checkpoints(tmp_path_factory):
    """One randomly initialised mmpose-layout checkpoint per keypoint count (17, 16, 21), made once."""
    from edgepose.checkpoint import save_mmpose_checkpoint
    from edgepose.models import build_model

    root = tmp_path_factory.mktemp("eval_ckpt")
    out = {}
    for model in ("coco_256x192", "mpii_256x256", "onehand10k_256x256"):
        k = get_spec(model).num_keypoints
        out[k] = save_mmpose_checkpoint(build_model(get_spec(model)).init_weights(0), root / f"random_k{k}.pth")
    return out


def _args(name: str, ckpt, tmp_path, *extra: str) -> list[str]:
    model, ann, _, _ = SETS[name]
    return [
        "eval", "--model", model, "--checkpoint", str(ckpt), "--dataset", name,
        "--ann", str(require(SAMPLES / name / ann)), "--images", str(SAMPLES / name),
        "--out", str(tmp_path / "metrics.json"), "--predictions", str(tmp_path / "preds.json"), "--no-progress", *extra,
    ]  # fmt: skip


@pytest.mark.parametrize("name", list(SETS))
def test_eval_end_to_end(name, random_checkpoints, tmp_path, capsys):
    model, _, n, keys = SETS[name]
    k = get_spec(model).num_keypoints
    flip = [] if name in ("coco", "rhd") else ["--no-flip"]  # the flip path twice is enough; keeps CI short
    assert main(_args(name, random_checkpoints[k], tmp_path, *flip, "--batch-size", "3")) == 0
    doc = json.loads((tmp_path / "metrics.json").read_text())
    assert doc["model"] == model and doc["dataset"] == name and doc["num_samples"] == n
    assert doc["flip_test"] is (not flip) and doc["runtime"]["engine"] == "torch"
    m = doc["metrics"]
    for key in keys:
        assert key in m, key
        if key == "EPE":
            assert m[key] > 0
        else:
            assert m[key] is None or 0.0 <= m[key] <= 1.0, (key, m[key])
    if name == "mpii":
        assert doc["head_size_source"] == "joints"
    preds = json.loads((tmp_path / "preds.json").read_text())
    assert len(preds) == n
    for p in preds:
        assert len(p["keypoints"]) == 3 * k and len(p["bbox"]) == 4 and np.isfinite(p["score"])
        assert ("annotation_id" in p) and p["image_id"] is not None
    out = capsys.readouterr().out
    assert keys[0] in out and "published" in out


def test_eval_with_detection_boxes(random_checkpoints, tmp_path):
    det = require(SAMPLES / "coco" / "test_coco_det_AP_H_56.json")
    n = sum(d["score"] >= 0.8 for d in json.loads(det.read_text()))
    args = _args(
        "coco", random_checkpoints[17], tmp_path, "--bbox-file", str(det), "--det-bbox-thr", "0.8", "--no-flip"
    )
    assert main(args) == 0
    doc = json.loads((tmp_path / "metrics.json").read_text())
    assert doc["num_samples"] == n and doc["boxes"] == "detections" and doc["det_bbox_thr"] == 0.8
    preds = json.loads((tmp_path / "preds.json").read_text())
    assert len(preds) == n and all("annotation_id" not in p for p in preds)


@pytest.mark.parametrize("problem", ["missing", "malformed"])
def test_bad_annotation_file_exits_2_with_one_line(problem, random_checkpoints, tmp_path, capsys):
    ann = tmp_path / "ann.json"
    if problem == "malformed":
        ann.write_text("{not json")
    args = _args("onehand10k", random_checkpoints[21], tmp_path)
    args[args.index("--ann") + 1] = str(ann)
    assert main(args) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and str(ann) in err
    assert ("not found" if problem == "missing" else "not valid JSON") in err
    assert not (tmp_path / "metrics.json").exists()


def test_evaluate_with_an_oracle_gives_perfect_hand_scores():
    """A fake model that draws each ground-truth joint as a peak in its heatmap: the whole pipeline (crop,
    decode, map back, metric) must give PCK 1 and a sub-pixel-scale EPE."""
    from edgepose.datasets import load_dataset
    from edgepose.evaluate import evaluate_dataset
    from edgepose.processing import get_affine_transform

    spec = get_spec("rhd_256x256")
    ds = load_dataset("rhd", require(SAMPLES / "rhd" / "test_rhd.json"), SAMPLES / "rhd", spec)
    w, h = spec.heatmap_size
    queue = []  # ground truth in heatmap coordinates, in the order the crops are made
    for s in ds.samples:
        m = get_affine_transform(s.center, s.scale, (w, h))
        queue.append(np.c_[s.keypoints[:, :2], np.ones(21)] @ m.T)

    def oracle(batch):
        out = np.zeros((len(batch), 21, h, w), np.float32)
        yy, xx = np.mgrid[0:h, 0:w]
        for i in range(len(batch)):
            for j, (x, y) in enumerate(queue.pop(0)):
                out[i, j] = np.exp(-((xx - x) ** 2 + (yy - y) ** 2) / (2 * 2.0**2))
        return out

    result = evaluate_dataset(spec, oracle, ds, flip_test=False, batch_size=2, progress=False)
    assert result.metrics["PCK@0.2"] == 1.0
    # integer argmax + quarter offset: error at most ~0.35 heatmap px = 0.35 * 4 * scale*200/256 image px
    assert result.metrics["EPE"] < 0.36 * max(s.scale[0] * 200 / w for s in ds.samples)
    assert result.info["num_samples"] == 3 and result.info["flip_test"] is False


def test_demo_defaults_to_the_synthetic_split(monkeypatch):
    import edgepose.synthetic as synthetic

    ann, images = require(SAMPLES / "coco" / "test_coco.json"), SAMPLES / "coco"
    monkeypatch.setattr(synthetic, "ensure_split", lambda split="val": (ann, images))
    assert resolve_data(get_spec("demo_coco_256x192")) == ("coco", ann, images)
    from edgepose.errors import EdgeposeError

    with pytest.raises(EdgeposeError, match="give the annotation file"):
        evaluate(get_spec("coco_256x192"), lambda b: b)
