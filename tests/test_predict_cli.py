"""``edgepose predict`` end to end with an mmpose-layout checkpoint on a real sample image."""

from __future__ import annotations

import json

import cv2
import pytest

pytest.importorskip("torch")

from edgepose.cli import main  # noqa: E402
from tests.helpers import SAMPLES, mmpose_checkpoint, require  # noqa: E402


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    return mmpose_checkpoint(tmp_path_factory.mktemp("ck") / "coco.pth")


def test_predict_draws_and_writes_json(tmp_path, ckpt):
    img = require(SAMPLES / "coco" / "000000000785.jpg")
    out, js = tmp_path / "out.png", tmp_path / "out.json"
    boxes = ["--bbox", "280,44,218,346", "--bbox", "10,10,100,200"]
    rc = main(["predict", str(img), "--model", "coco_256x192", "--checkpoint", str(ckpt), *boxes,
               "--out", str(out), "--json", str(js)])  # fmt: skip
    assert rc == 0
    drawn, src = cv2.imread(str(out)), cv2.imread(str(img))
    assert drawn.shape == src.shape and (drawn != src).any()  # at least the box outline was drawn
    data = json.loads(js.read_text())
    assert data["model"] == "coco_256x192" and len(data["persons"]) == 2
    assert data["persons"][0]["bbox"] == [280, 44, 218, 346]
    kp = data["persons"][0]["keypoints"]
    assert len(kp) == 17 and all(len(k) == 3 for k in kp)
    assert len(data["keypoint_names"]) == 17


def test_predict_whole_image_when_no_box(tmp_path, ckpt):
    img = require(SAMPLES / "coco" / "000000040083.jpg")
    js = tmp_path / "o.json"
    assert main(["predict", str(img), "--model", "coco_256x192", "--checkpoint", str(ckpt),
                 "--out", str(tmp_path / "o.jpg"), "--json", str(js)]) == 0  # fmt: skip
    h, w = cv2.imread(str(img)).shape[:2]
    assert json.loads(js.read_text())["persons"][0]["bbox"] == [0, 0, w, h]


@pytest.mark.parametrize(
    "extra, needle",
    [(["--bbox", "1,2,3"], "expected x,y,w,h"), (["--bbox", "0,0,-5,10"], "positive width")],
)
def test_bad_bbox_is_one_line_error(tmp_path, ckpt, capsys, extra, needle):
    img = require(SAMPLES / "coco" / "000000000785.jpg")
    out = tmp_path / "o.png"
    rc = main(["predict", str(img), "--model", "coco_256x192", "--checkpoint", str(ckpt), "--out", str(out), *extra])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and needle in err and len(err.splitlines()) == 1 and not out.exists()


def test_missing_image_names_the_file(tmp_path, ckpt, capsys):
    out = tmp_path / "o.png"
    rc = main(["predict", str(tmp_path / "nope.jpg"), "--model", "coco_256x192", "--checkpoint", str(ckpt),
               "--out", str(out)])  # fmt: skip
    err = capsys.readouterr().err.strip()
    assert rc == 2 and "nope.jpg: image file not found" in err and not out.exists()
