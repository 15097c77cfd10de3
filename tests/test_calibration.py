"""Calibration sets: crops as the pipeline makes them, disjoint holdout, eval splits refused, bad files."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest

from edgepose.calibration import (
    CalibrationSet,
    default_calibration_path,
    from_image_folder,
    is_eval_split,
    read_calibration,
    write_calibration,
)
from edgepose.cli import main
from edgepose.errors import EdgeposeError
from edgepose.spec import get_spec

SPEC = get_spec("demo_coco_256x192")  # input 192 x 256 (W x H), padding 1.25


def _folder(tmp_path, n=6, size=(96, 128)):
    d = tmp_path / "train_images"
    d.mkdir()
    rng = np.random.default_rng(0)
    for i in range(n):
        img = rng.integers(60, 255, (size[1], size[0], 3), dtype=np.uint8)  # never black
        cv2.imwrite(str(d / f"img{i}.png"), img)
    return d


def test_folder_crops_whole_image_with_padding(tmp_path):
    """A 96x128 image has the input's aspect; with padding 1.25 it spans 192/1.25 = 153.6 px of the 192-px
    crop, centred: black margins of (192 - 153.6) / 2 = 19.2 px left and right, 25.6 px top and bottom."""
    cset = from_image_folder(SPEC, _folder(tmp_path), num=4, holdout=1, seed=3)
    assert cset.crops.shape == (4, 256, 192, 3) and cset.holdout.shape == (1, 256, 192, 3)
    c = cset.crops.astype(int)
    assert (c[:, :, :18] == 0).all() and (c[:, :, 175:] == 0).all()
    assert (c[:, :24] == 0).all() and (c[:, 233:] == 0).all()
    assert (c[:, 30:225, 22:170] > 0).all()
    assert set(cset.meta["images"]).isdisjoint(cset.meta["holdout_images"])
    assert cset.meta["source"]["kind"] == "folder" and cset.meta["input_size"] == [192, 256]


def test_crop_content_matches_a_hand_made_affine(tmp_path):
    """Centre (48, 64) -> (96, 128), factor 192 / (96 * 1.25) = 1.6: the same warp built by hand."""
    d = _folder(tmp_path, n=1)
    cset = from_image_folder(SPEC, d, num=1, holdout=0)
    img = cv2.cvtColor(cv2.imread(str(d / "img0.png")), cv2.COLOR_BGR2RGB)
    f = 1.6
    m = np.array([[f, 0, 96 - 48 * f], [0, f, 128 - 64 * f]])
    ref = cv2.warpAffine(img, m, (192, 256), flags=cv2.INTER_LINEAR)
    assert np.abs(cset.crops[0].astype(int) - ref).max() <= 1


def test_write_read_round_trip_raw_and_jpeg(tmp_path):
    rng = np.random.default_rng(1)
    noise = rng.integers(0, 255, (3, 256, 192, 3), dtype=np.uint8)
    smooth = np.stack([cv2.GaussianBlur(n, (0, 0), 3) for n in noise])
    cset = CalibrationSet(smooth, smooth[:1].copy(), {"model": "x", "seed": 1})
    raw = read_calibration(write_calibration(tmp_path / "raw.npz", cset), SPEC)
    assert np.array_equal(raw.crops, smooth) and np.array_equal(raw.holdout, smooth[:1])
    assert raw.meta["seed"] == 1 and raw.meta["encoding"] == "raw"
    jpg = read_calibration(write_calibration(tmp_path / "j.npz", cset, jpeg_quality=95), SPEC)
    assert jpg.crops.shape == smooth.shape and jpg.meta["encoding"] == "jpeg95"
    assert np.abs(jpg.crops.astype(int) - smooth).mean() < 2.0
    x = jpg.calibration_batch(SPEC, 2)
    assert x.shape == (2, 3, 256, 192) and x.dtype == np.float32


def test_bad_files_one_line_errors_naming_the_file(tmp_path):
    cases = {
        "missing.npz": (None, "calibration file not found"),
        "garbage.npz": (b"not a zip", "not a calibration file"),
    }
    for name, (content, msg) in cases.items():
        p = tmp_path / name
        if content is not None:
            p.write_bytes(content)
        with pytest.raises(EdgeposeError) as e:
            read_calibration(p)
        assert str(e.value).startswith(f"{p}: {msg}") and "\n" not in str(e.value)
    p = tmp_path / "nocrops.npz"
    np.savez(p, other=np.zeros(3))
    with pytest.raises(EdgeposeError, match="has no 'crops' array"):
        read_calibration(p)
    p = tmp_path / "float.npz"
    np.savez(p, crops=np.zeros((2, 256, 192, 3), np.float32))
    with pytest.raises(EdgeposeError, match=r"'crops' must be uint8 \(N, H, W, 3\)"):
        read_calibration(p)
    p = tmp_path / "size.npz"
    np.savez(p, crops=np.zeros((2, 256, 256, 3), np.uint8))
    with pytest.raises(EdgeposeError, match=r"crops are 256x256 \(WxH\) but model demo_coco_256x192 takes 192x256"):
        read_calibration(p, SPEC)


def test_eval_splits_are_recognised():
    assert is_eval_split("coco/annotations/person_keypoints_val2017.json")
    assert is_eval_split("mpii/annotations/mpii_val.json") and is_eval_split("rhd/rhd_test.json")
    assert is_eval_split("/cache/edgepose/synthetic/val-v1/annotations.json")
    assert not is_eval_split("coco/annotations/person_keypoints_train2017.json")
    assert not is_eval_split("/cache/edgepose/synthetic/train-v1/annotations.json")
    assert not is_eval_split("data/interval_latest.json")


def test_calibrate_cli_on_a_dataset_and_refusing_val(tmp_path, capsys):
    from edgepose.synthetic import generate

    ann, images = generate(tmp_path / "train-v1", "train", num_images=5)
    out = tmp_path / "c.npz"
    rc = main(["calibrate", "--dataset", "coco", "--ann", str(ann), "--images", str(images), "--num", "4",
               "--holdout", "1", "--seed", "0", "--out", str(out)])  # fmt: skip
    assert rc == 0 and "4 calibration + 1 holdout crops 192x256" in capsys.readouterr().out
    cset = read_calibration(out, SPEC)
    assert cset.meta["source"]["split"] == "train" and len(cset.crops) == 4
    # the first crop is the instance the meta names, cropped around its box centre by hand
    data = json.loads(ann.read_text())
    name = cset.meta["images"][0]
    img_id = next(i["id"] for i in data["images"] if i["file_name"] == name)
    boxes = [a["bbox"] for a in data["annotations"] if a["image_id"] == img_id]
    img = cv2.cvtColor(cv2.imread(str(images / name)), cv2.COLOR_BGR2RGB)
    best = np.inf
    for x, y, w, h in boxes:  # cleaned GT box -> centre, aspect-corrected size * 1.25
        w2, h2 = min(w - 1, img.shape[1] - 1 - max(0, x)), min(h - 1, img.shape[0] - 1 - max(0, y))
        x, y = max(0, x), max(0, y)
        cx, cy = x + w2 / 2, y + h2 / 2
        hh = max(h2, w2 / 0.75) * 1.25
        f = 256 / hh
        m = np.array([[f, 0, 96 - cx * f], [0, f, 128 - cy * f]])
        ref = cv2.warpAffine(img, m, (192, 256), flags=cv2.INTER_LINEAR)
        best = min(best, np.abs(cset.crops[0].astype(int) - ref).mean())
    assert best < 1.0
    val = tmp_path / "val-v1"
    val.mkdir()
    (val / "annotations.json").write_text(ann.read_text())
    rc = main(["calibrate", "--dataset", "coco", "--ann", str(val / "annotations.json"), "--images", str(images),
               "--out", str(tmp_path / "v.npz")])  # fmt: skip
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1 and "is an evaluation split (val/test)" in err[0]
    assert not (tmp_path / "v.npz").exists()


def test_bundled_default_set_is_from_the_synthetic_train_split():
    path = default_calibration_path(SPEC, make=False)
    assert path.name == "default_256x192.npz" and path.stat().st_size < 5e6
    cset = read_calibration(path, SPEC)
    assert cset.crops.shape == (128, 256, 192, 3) and cset.holdout.shape == (32, 256, 192, 3)
    assert cset.meta["source"]["kind"] == "synthetic" and cset.meta["source"]["split"] == "train"
    assert all(n.startswith("train_") for n in cset.meta["images"] + cset.meta["holdout_images"])
    assert set(cset.meta["images"]).isdisjoint(cset.meta["holdout_images"])
    assert read_calibration(path, get_spec("coco_256x192")).input_size == (192, 256)  # same input size
