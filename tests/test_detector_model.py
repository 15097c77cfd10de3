"""The person detector in PyTorch: graph contract, mmdet-like checkpoint layout, strict loading, the bundled weights."""

from __future__ import annotations

import shutil

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from edgepose import EdgeposeError, synthetic  # noqa: E402
from edgepose.checkpoint import save_mmpose_checkpoint  # noqa: E402
from edgepose.detector_eval import score_detector  # noqa: E402
from edgepose.models import CenterNetDetector, build_model, load_model  # noqa: E402
from edgepose.spec import get_spec  # noqa: E402

SPEC = get_spec("demo_person_detector")


@pytest.fixture(scope="module")
def pose():
    return load_model("demo_coco_256x192", progress=False)


def test_graph_contract_one_output_sigmoid_heatmap(pose):
    torch.manual_seed(0)
    model = CenterNetDetector().init_from_pose(pose).eval()
    w, h = SPEC.input_size
    x = torch.randn(2, 3, h, w)
    with torch.no_grad():
        out, raw = model(x), model.forward_raw(x)
    assert tuple(out.shape) == (2, 5, h // 4, w // 4)
    torch.testing.assert_close(out[:, 0], 1 / (1 + torch.exp(-raw[:, 0])))  # the sigmoid, independently written
    torch.testing.assert_close(out[:, 1:], raw[:, 1:])
    prefixes = {k.split(".", 1)[0] for k in model.state_dict()}
    assert prefixes == {"backbone", "neck", "bbox_head"}
    for k, v in pose.backbone.state_dict().items():  # the backbone is the pose model's, every tensor
        torch.testing.assert_close(model.backbone.state_dict()[k], v)
    assert isinstance(build_model(SPEC), CenterNetDetector)


def test_checkpoint_round_trip_and_strict_refusals(tmp_path, pose):
    model = CenterNetDetector().init_from_pose(pose).eval()
    path = save_mmpose_checkpoint(model, tmp_path / "det.pth", meta={"edgepose": SPEC.name})
    loaded = load_model(SPEC, str(path), progress=False)
    x = torch.randn(1, 3, 256, 320)
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), model(x))
    pose_ckpt = save_mmpose_checkpoint(pose, tmp_path / "pose.pth")
    with pytest.raises(EdgeposeError, match=r"does not match the model: .*a pose checkpoint \(keypoint_head"):
        load_model(SPEC, str(pose_ckpt), progress=False)
    with pytest.raises(EdgeposeError, match=r"a detector checkpoint \(bbox_head"):
        load_model("demo_coco_256x192", str(path), progress=False)
    state = dict(model.state_dict())
    state.pop("bbox_head.wh.bias")
    save_mmpose_checkpoint(state, tmp_path / "cut.pth")
    with pytest.raises(EdgeposeError, match="1 missing key"):
        load_model(SPEC, str(tmp_path / "cut.pth"), progress=False)


def test_bundled_detector_is_checked_and_finds_people(tmp_path):
    """The shipped fp16 weights load strictly with their sha256; on the first val scenes they score like a
    detector (COCOeval bbox), and a changed copy under the bundled name is refused."""
    if not SPEC.checkpoint_sha256:
        pytest.skip("no detector checkpoint bundled in this tree")
    model = load_model(SPEC, progress=False)
    ann, images = synthetic.ensure_scenes("scenes_val")

    def infer(x):
        with torch.no_grad():
            return model(torch.from_numpy(x)).numpy()

    res = score_detector(infer, SPEC, ann, images, limit=12)
    assert res["persons"] >= 20 and res["metrics"]["AP50"] >= 0.8
    from edgepose.checkpoint import ASSETS, load_state_dict_strict

    bad = tmp_path / "demo_person_detector.pth"
    shutil.copy(ASSETS / "demo_person_detector.pth", bad)
    with open(bad, "ab") as f:
        f.write(b"\0")
    with pytest.raises(EdgeposeError, match="sha256 does not match"):
        load_state_dict_strict(CenterNetDetector(), bad, sha256=SPEC.checkpoint_sha256)
    assert np.isfinite(infer(np.zeros((1, 3, 256, 320), np.float32))).all()
