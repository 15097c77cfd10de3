"""Pipelined eval gives the serial path's keypoints bit for bit (real ONNX Runtime and OpenVINO, the trained
demo model, the synthetic val split), whatever it overlaps, merges or queues."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from edgepose.errors import EdgeposeError
from edgepose.evaluate import evaluate_dataset, predict_dataset


def _both(spec, infer, ds, batch_size=3, flip_test=True, workers=2):
    serial = evaluate_dataset(spec, infer, ds, flip_test=flip_test, batch_size=batch_size, progress=False,
                              mode="serial")  # fmt: skip
    piped = evaluate_dataset(spec, infer, ds, flip_test=flip_test, batch_size=batch_size, progress=False,
                             mode="pipelined", workers=workers)  # fmt: skip
    facts = piped.info["executor"]
    kp_s = np.array([p["keypoints"] for p in serial.predictions])
    kp_p = np.array([p["keypoints"] for p in piped.predictions])
    return serial, piped, kp_s, kp_p, facts


@pytest.mark.parametrize("key,workers", [("onnx", 2), ("onnx_u8", 2), ("ov", 2), ("ov_b1", 2), ("ov_b1", 0)])
def test_pipelined_is_bit_identical_to_serial(key, workers, eval_models, val_subset):
    from edgepose.runtimes import load_runtime

    spec, ds = val_subset
    rt = load_runtime(eval_models[key], threads=2)
    assert len(ds) > 9 and ds.num_images == 8  # batches of 3 then straddle images and end with a remainder
    serial, piped, kp_s, kp_p, facts = _both(spec, rt, ds, workers=workers)
    assert np.array_equal(kp_s, kp_p)
    assert serial.metrics == piped.metrics and serial.metrics["AP"] > 0.5  # a trained model, real keypoints
    assert serial.info["executor"] == {"mode": "serial"}
    assert facts["mode"] == "pipelined" and facts["workers"] == workers and facts["flip_merged"] is True
    assert facts["serial_calls_batch_sizes"] == []
    assert facts["async"] is key.startswith("ov")  # OpenVINO's AsyncInferQueue, ONNX Runtime sync
    # dynamic batch: each batch size (3, and the remainder) checked once; batch 1: one check covers all
    assert facts["fast_path_batch_sizes"] == (["any"] if key == "ov_b1" else list(dict.fromkeys([3, len(ds) % 3 or 3])))


@pytest.mark.parametrize("key", ["onnx", "onnx_u8"])
def test_shipped_crops_give_the_keypoints_of_images(key, eval_models, val_subset):
    """Items carrying ready-made uint8 crops (what a Ray driver ships) give the keypoints of items read from the
    image files, for a float-input and a uint8-input model."""
    from edgepose.pipelined import Facts, Item, crops_of, plan_items, predict_items
    from edgepose.processing import TopDownPipeline, input_kind_of
    from edgepose.runtimes import load_runtime

    spec, ds = val_subset
    rt = load_runtime(eval_models[key], threads=1)
    pipe = TopDownPipeline(spec, input_kind=input_kind_of(rt))
    items = plan_items(ds.samples, ds.stack("center").astype(np.float32), ds.stack("scale").astype(np.float32))
    shipped = [Item(crops_of(pipe, it), it.indices, it.centers, it.scales) for it in items]
    from_files = predict_items(pipe, rt, items, 4, facts=Facts())
    assert np.array_equal(predict_items(pipe, rt, shipped, 4, facts=Facts()), from_files)
    order = np.concatenate([it.indices for it in items])
    assert np.array_equal(from_files, predict_dataset(spec, rt, ds, batch_size=4, progress=False, mode="serial")[order])


def test_pipelined_without_flip(eval_models, val_subset):
    from edgepose.runtimes import load_runtime

    spec, ds = val_subset
    rt = load_runtime(eval_models["ov"], threads=1)
    _, _, kp_s, kp_p, facts = _both(spec, rt, ds, batch_size=4, flip_test=False)
    assert np.array_equal(kp_s, kp_p) and facts["async"] is True and facts["flip_merged"] is False


def test_pipelined_keeps_serial_calls_where_batch_shape_changes_numbers(eval_models, val_subset):
    """An engine whose numbers depend on the batch size (as one may pick other kernels per shape): merged flip
    calls would change the keypoints' scores, so the pipelined path must fall back to the serial calls."""
    from edgepose.runtimes import load_runtime

    spec, ds = val_subset
    rt = load_runtime(eval_models["onnx"], threads=1)

    def shape_dependent(x):
        return rt(x) + np.float32(1e-6) * len(x)

    facts: dict = {}
    serial = predict_dataset(spec, shape_dependent, ds, batch_size=3, progress=False, mode="serial")
    piped = predict_dataset(spec, shape_dependent, ds, batch_size=3, progress=False, facts=facts)
    assert np.array_equal(serial, piped)
    assert facts["fast_path_batch_sizes"] == [] and 3 in facts["serial_calls_batch_sizes"]
    # the check is not vacuous: trusting merged calls would have changed the scores
    from edgepose.pipelined import Facts, plan_items, predict_items
    from edgepose.processing import TopDownPipeline

    centers, scales = ds.stack("center").astype(np.float32), ds.stack("scale").astype(np.float32)
    items = plan_items(ds.samples, centers, scales)
    trusted = predict_items(TopDownPipeline(spec), shape_dependent, items, 3, flip_merge="on", facts=Facts())
    order = np.concatenate([it.indices for it in items])
    assert not np.array_equal(trusted, serial[order])


def test_async_face_matches_sync(eval_models):
    from edgepose.runtimes import load_runtime

    rng = np.random.default_rng(0)
    x = rng.standard_normal((5, 3, 256, 192)).astype(np.float32)
    for key in ("ov", "ov_b1"):
        rt = load_runtime(eval_models[key], threads=1)
        futures = [rt.infer_async(x), rt.infer_async(x[:2])]
        assert np.array_equal(futures[0].result(), rt(x)) and np.array_equal(futures[1].result(), rt(x[:2]))


def test_bad_image_fails_with_one_line_naming_it(eval_models, val_subset, tmp_path):
    from edgepose.datasets import Dataset
    from edgepose.runtimes import load_runtime

    spec, ds = val_subset
    images = tmp_path / "images"
    shutil.copytree(ds.image_dir, images, ignore=lambda d, names: [n for n in names
                                                                    if n not in {s.image.name for s in ds.samples}])
    bad = images / ds.samples[-1].image.name
    bad.write_bytes(b"not a jpeg")
    samples = [type(s)(**{**vars(s), "image": images / s.image.name}) for s in ds.samples]
    broken = Dataset(ds.name, ds.ann_file, images, samples, gt=ds.gt)
    rt = load_runtime(eval_models["onnx"], threads=1)
    for mode in ("serial", "pipelined"):
        with pytest.raises(EdgeposeError, match=f"{bad.name}: cannot read image"):
            predict_dataset(spec, rt, broken, batch_size=3, progress=False, mode=mode)


def test_eval_cli_serial_and_pipelined_write_the_same_files(eval_models, val_subset, tmp_path, capsys):
    from edgepose.cli import main

    spec, ds = val_subset
    out = {}
    for flag in ("--serial", None):
        name = "serial" if flag else "pipelined"
        argv = ["eval", "--artifact", str(eval_models["onnx"]), "--ann", str(ds.ann_file), "--images",
                str(ds.image_dir), "--batch-size", "4", "--threads", "1", "--no-progress",
                "--out", str(tmp_path / f"{name}.json"), "--predictions", str(tmp_path / f"{name}_pred.json")]
        assert main(argv + ([flag] if flag else [])) == 0
        out[name] = json.loads((tmp_path / f"{name}.json").read_text())
    assert (tmp_path / "serial_pred.json").read_bytes() == (tmp_path / "pipelined_pred.json").read_bytes()
    assert out["serial"]["metrics"] == out["pipelined"]["metrics"]
    assert out["pipelined"]["executor"]["mode"] == "pipelined" and out["serial"]["executor"]["mode"] == "serial"
