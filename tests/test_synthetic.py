"""The synthetic COCO-keypoint generator and the demo model trained on it."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import cv2
import numpy as np
import pytest

from edgepose import synthetic
from edgepose.spec import COCO_KEYPOINTS, COCO_SKELETON, get_spec

LEFT = [i for i, n in enumerate(COCO_KEYPOINTS) if n.startswith("left_")]
RIGHT = [COCO_KEYPOINTS.index(COCO_KEYPOINTS[i].replace("left_", "right_")) for i in LEFT]


@pytest.fixture(scope="session")
def small_split(tmp_path_factory) -> tuple[Path, Path]:
    return synthetic.generate(tmp_path_factory.mktemp("syn"), "val", num_images=40, seed=11)


@pytest.fixture(scope="session")
def val_split(tmp_path_factory) -> tuple[Path, Path]:
    """The real val split, generated through the cache logic into a private cache folder."""
    cache = tmp_path_factory.mktemp("cache")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("EDGEPOSE_CACHE", str(cache))
        ann, images = synthetic.ensure_split("val")
        mtime = ann.stat().st_mtime_ns
        again = synthetic.ensure_split("val")  # second call reuses the cache, regenerates nothing
    assert again == (ann, images) and ann.stat().st_mtime_ns == mtime
    assert ann == cache / "synthetic" / "val-v1" / "annotations.json"
    assert [p.name for p in (cache / "synthetic").iterdir()] == ["val-v1"]  # no half-written temp folder left
    return ann, images


def test_same_seed_same_bytes_other_seed_differs(tmp_path):
    a, ia = synthetic.generate(tmp_path / "a", "val", num_images=4, seed=5)
    b, ib = synthetic.generate(tmp_path / "b", "val", num_images=4, seed=5)
    c, _ = synthetic.generate(tmp_path / "c", "val", num_images=4, seed=6)
    assert a.read_bytes() == b.read_bytes()
    assert sorted(p.name for p in ia.iterdir()) == sorted(p.name for p in ib.iterdir())
    for p in ia.iterdir():
        assert p.read_bytes() == (ib / p.name).read_bytes()
    assert a.read_bytes() != c.read_bytes()


def test_annotations_well_formed(small_split):
    ann, images = small_split
    doc = json.loads(ann.read_text())
    (cat,) = doc["categories"]
    assert cat["id"] == 1 and cat["name"] == "person"
    assert cat["keypoints"] == list(COCO_KEYPOINTS)
    assert cat["skeleton"] == [[a + 1, b + 1] for a, b in COCO_SKELETON]
    imgs = {im["id"]: im for im in doc["images"]}
    assert len(imgs) == 40
    assert len({a["id"] for a in doc["annotations"]}) == len(doc["annotations"])
    vis_counts = np.zeros(3, int)
    for im in doc["images"]:
        arr = cv2.imread(str(images / im["file_name"]))
        assert arr is not None and arr.shape[:2] == (im["height"], im["width"])
    for a in doc["annotations"]:
        im = imgs[a["image_id"]]
        w, h = im["width"], im["height"]
        assert a["category_id"] == 1 and a["iscrowd"] == 0
        kp = np.array(a["keypoints"], dtype=float).reshape(-1, 3)
        assert kp.shape == (17, 3)
        v = kp[:, 2]
        assert set(v.tolist()) <= {0.0, 1.0, 2.0}
        vis_counts += np.bincount(v.astype(int), minlength=3)
        assert a["num_keypoints"] == int((v > 0).sum()) > 0
        # labelled keypoints lie inside the image; unlabelled ones are (0, 0, 0) as in COCO
        lab = kp[v > 0]
        assert np.all((lab[:, 0] >= 0) & (lab[:, 0] < w) & (lab[:, 1] >= 0) & (lab[:, 1] < h))
        assert np.all(kp[v == 0, :2] == 0)
        x, y, bw, bh = a["bbox"]
        assert bw > 0 and bh > 0 and x >= 0 and y >= 0 and x + bw <= w and y + bh <= h
        assert a["area"] == pytest.approx(bw * bh, rel=1e-3)
        # every labelled keypoint of a figure lies on the figure, hence inside its box (1 px slack)
        assert np.all((lab[:, 0] >= x - 1) & (lab[:, 0] <= x + bw + 1))
        assert np.all((lab[:, 1] >= y - 1) & (lab[:, 1] <= y + bh + 1))
    # the data really has occlusion and truncation, and is mostly visible
    assert vis_counts[0] > 0 and vis_counts[1] > 0
    assert vis_counts[2] > 0.6 * vis_counts.sum()


def _rgb_at(img: np.ndarray, xy) -> np.ndarray:
    x, y = int(round(xy[0])), int(round(xy[1]))
    return img[max(0, y - 1) : y + 2, max(0, x - 1) : x + 2].reshape(-1, 3).mean(0)


def test_left_and_right_drawn_in_different_colours():
    """At visible shoulders, elbows, hips and knees the left and right joints differ clearly in colour."""
    pairs = [(COCO_KEYPOINTS.index(f"left_{j}"), COCO_KEYPOINTS.index(f"right_{j}"))
             for j in ("shoulder", "elbow", "hip", "knee")]  # fmt: skip
    dists = []
    for i in range(30):
        img, persons = synthetic.render_image(np.random.default_rng([3, i]))
        img = img.astype(float)
        for p in persons:
            kp = p["keypoints"]
            for a, b in pairs:
                if kp[a, 2] == 2 and kp[b, 2] == 2:
                    dists.append(np.linalg.norm(_rgb_at(img, kp[a]) - _rgb_at(img, kp[b])))
    dists = np.array(dists)
    assert len(dists) > 100
    # a crossing limb may cover a joint now and then; the two sides are otherwise clearly apart
    assert np.median(dists) > 60 and (dists > 25).mean() > 0.85


def test_facing_camera_left_is_on_the_image_right():
    """Figures face the camera: with an upright torso the left shoulder/hip lie right of the right ones."""
    ls, rs, lh, rh = (COCO_KEYPOINTS.index(n) for n in ("left_shoulder", "right_shoulder", "left_hip", "right_hip"))
    upright = ok = 0
    for i in range(40):
        _, persons = synthetic.render_image(np.random.default_rng([4, i]))
        for p in persons:
            kp = p["keypoints"]
            if kp[[ls, rs, lh, rh], 2].min() == 0:
                continue
            up = (kp[ls, :2] + kp[rs, :2]) / 2 - (kp[lh, :2] + kp[rh, :2]) / 2
            if up[1] < -abs(up[0]) * 2:  # torso within ~27 degrees of upright
                upright += 1
                ok += kp[ls, 0] > kp[rs, 0] and kp[lh, 0] > kp[rh, 0]
    assert upright > 20 and ok == upright


def test_val_split_size(val_split):
    ann, images = val_split
    doc = json.loads(ann.read_text())
    assert len(doc["annotations"]) >= 500
    assert len(doc["images"]) == synthetic.SPLITS["val"][0]
    sizes = np.array([(im["width"], im["height"]) for im in doc["images"]])
    assert sizes.min() >= 256 and sizes.max() <= 400
    assert sum(p.stat().st_size for p in images.iterdir()) < 40e6


def test_synth_cli(tmp_path, capsys):
    from edgepose.cli import main

    assert main(["synth", "--split", "train", "--out", str(tmp_path / "s"), "--num-images", "3", "--seed", "9"]) == 0
    doc = json.loads((tmp_path / "s" / "annotations.json").read_text())
    assert len(doc["images"]) == 3 and len(list((tmp_path / "s" / "images").glob("*.jpg"))) == 3
    with pytest.raises(SystemExit) as e:  # argparse's exit: the value is refused before any work
        main(["synth", "--out", str(tmp_path / "t"), "--num-images", "0"])
    assert e.value.code == 2 and "num-images" in capsys.readouterr().err and not (tmp_path / "t").exists()


# ------------------------------------------------------------------------------------- demo model
def _demo_file() -> Path:
    path = Path(synthetic.__file__).parent / "assets" / "demo_coco_256x192.pth"
    if not path.is_file():
        pytest.skip(f"{path} not present yet")
    return path


def test_demo_weights_recorded_and_strict():
    import torch

    from edgepose.models import load_model

    path = _demo_file()
    spec = get_spec("demo_coco_256x192")
    assert spec.checkpoint_sha256 == hashlib.sha256(path.read_bytes()).hexdigest()
    assert path.stat().st_size <= 20e6
    ck = torch.load(path, map_location="cpu", weights_only=False)
    assert set(ck) == {"meta", "state_dict"}
    assert ck["state_dict"]["keypoint_head.final_layer.weight"].dtype == torch.float16
    model = load_model("demo_coco_256x192", progress=False)
    assert sum(p.numel() for p in model.parameters()) > 9e6


@pytest.fixture(scope="session")
def demo_predictions(small_split):
    """The demo model (PyTorch, flip test) on the first 12 images of a split it never saw."""
    import torch

    from edgepose.models import load_model
    from edgepose.processing import TopDownPipeline, clean_coco_box, read_image

    _demo_file()
    spec = get_spec("demo_coco_256x192")
    model = load_model(spec, progress=False)
    pipe = TopDownPipeline(spec)
    doc = json.loads(small_split[0].read_text())
    imgs = {im["id"]: im for im in doc["images"][:12]}
    gts, preds, maps = [], [], []
    torch.set_num_threads(min(2, os.cpu_count() or 1))
    for iid, im in imgs.items():
        anns = [a for a in doc["annotations"] if a["image_id"] == iid]
        boxes = np.array([clean_coco_box(a["bbox"], im["width"], im["height"]) for a in anns])
        img = read_image(small_split[1] / im["file_name"])
        c, s = pipe.boxes_to_center_scale(boxes)
        with torch.no_grad():
            hm = pipe.forward(lambda x: model(torch.from_numpy(x)).numpy(), pipe.preprocess(img, c, s))
        preds.append(pipe.decode(hm, c, s))
        maps.append(hm)
        gts += [(np.array(a["keypoints"], float).reshape(17, 3), a["bbox"]) for a in anns]
    return gts, np.concatenate(preds), np.concatenate(maps)


def test_demo_heatmaps_are_peaked(demo_predictions):
    _, _, maps = demo_predictions
    flat = maps.reshape(len(maps), 17, -1)
    peak = flat.max(2)
    # an untrained head (std 0.001 init) gives |heatmap| < 0.01 everywhere; trained peaks approach 1
    assert np.median(peak) > 0.4
    assert np.median(peak / (np.abs(flat).mean(2) + 1e-6)) > 20


def test_demo_pck(demo_predictions):
    """PCK@0.1 of the larger box side on visible keypoints of unseen images."""
    gts, preds, _ = demo_predictions
    hits = total = 0
    for (gt, box), pr in zip(gts, preds):
        vis = gt[:, 2] == 2
        d = np.linalg.norm(pr[vis, :2] - gt[vis, :2], axis=1)
        hits += int((d < 0.1 * max(box[2], box[3])).sum())
        total += int(vis.sum())
    assert total > 200 and hits / total > 0.8
