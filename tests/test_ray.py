"""Eval and bench through a real local Ray instance: predictions and metrics identical to the single-process
run, also when a worker dies mid-run (restarted by Ray, or gone for good and replaced)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from edgepose.errors import EdgeposeError
from edgepose.evaluate import evaluate_dataset
from edgepose.pipelined import Item, batch_bounds, plan_items


@pytest.fixture(scope="module")
def ray_local():
    ray = pytest.importorskip("ray", reason="Ray is not installed (pip install 'edgepose[scale]')")
    if ray.is_initialized():
        ray.shutdown()
    ray.init(num_cpus=2, include_dashboard=False, object_store_memory=100 * 1024**2, log_to_driver=False,
             logging_level="ERROR")  # fmt: skip
    yield ray
    ray.shutdown()


@pytest.fixture(scope="module")
def serial_run(eval_models, val_subset):
    """The single-process reference: serial eval, one engine thread (as each Ray worker below)."""
    from edgepose.runtimes import load_runtime

    spec, ds = val_subset
    rt = load_runtime(eval_models["onnx"], threads=1)
    return evaluate_dataset(spec, rt, ds, batch_size=3, progress=False, mode="serial")


def _keypoints(result) -> np.ndarray:
    return np.array([p["keypoints"] + [p["score"]] for p in result.predictions])


def _ray_eval(eval_models, val_subset, **options):
    from edgepose.scale import RayOptions, evaluate_on_ray, model_files

    spec, ds = val_subset
    opts = RayOptions(actors=2, threads=1, shard_batches=1, progress=False, **options)
    return evaluate_on_ray(spec, model_files(eval_models["onnx"]), ds, opts, batch_size=3)


def test_shards_are_whole_batches_of_the_single_process_plan(val_subset):
    from edgepose.scale import shard_plan

    _, ds = val_subset
    items = plan_items(ds.samples, ds.stack("center"), ds.stack("scale"))
    flat = np.concatenate([it.indices for it in items])
    for bs, sb in ((3, 1), (3, 2), (4, 3), (100, 1)):
        shards = shard_plan(items, bs, sb)
        got = np.concatenate([np.concatenate([it.indices for it in sh.items]) for sh in shards])
        assert np.array_equal(got, flat)  # every sample once, in order
        starts = np.cumsum([0] + [sh.size for sh in shards])[:-1]
        assert [int(s) for s in starts] == [lo for lo, _ in batch_bounds(len(flat), bs * sb)]
        for sh in shards:
            assert all(isinstance(it, Item) and len(it) for it in sh.items)
    # an image whose crops straddle a shard boundary is in both shards, each with its own crops
    shards = shard_plan(items, 3, 1)
    images = [it.source for sh in shards for it in sh.items]
    assert len(images) > len(set(images))


@pytest.mark.parametrize("ship", [False, True], ids=["workers-read-images", "driver-ships-crops"])
def test_ray_eval_equals_single_process(ray_local, eval_models, val_subset, serial_run, ship):
    res = _ray_eval(eval_models, val_subset, ship_crops=ship)
    assert np.array_equal(_keypoints(res), _keypoints(serial_run))
    assert res.metrics == serial_run.metrics
    ex = res.info["executor"]
    assert ex["mode"] == "ray" and ex["actors"] == 2 and ex["ship_crops"] is ship and ex["shards"] >= 5
    assert ex["worker_processes"] == 2 and ex["runtime"]["engine"] == "onnxruntime"
    assert ex["runtime"]["path"] == str(eval_models["onnx"])


def test_ray_eval_survives_a_worker_killed_mid_run(ray_local, eval_models, val_subset, serial_run):
    """ray.kill(no_restart=False) of the worker that ran the first shard, while it runs its next one: Ray
    restarts the worker process and re-runs that shard there."""
    killed = []

    def kill_once(event):
        if not killed:
            killed.append(event["pid"])
            ray_local.kill(event["actor"], no_restart=False)

    res = _ray_eval(eval_models, val_subset, on_result=kill_once)
    assert killed
    assert np.array_equal(_keypoints(res), _keypoints(serial_run)) and res.metrics == serial_run.metrics
    assert res.info["executor"]["worker_processes"] == 3  # the restarted worker is a new process
    assert res.info["executor"]["actors_replaced"] == 0


def test_ray_eval_survives_a_worker_gone_for_good(ray_local, eval_models, val_subset, serial_run):
    """ray.kill(no_restart=True): its shards fail; the driver replaces the worker and runs them again."""
    killed = []

    def kill_once(event):
        if not killed:
            killed.append(event["pid"])
            ray_local.kill(event["actor"], no_restart=True)

    res = _ray_eval(eval_models, val_subset, on_result=kill_once)
    assert np.array_equal(_keypoints(res), _keypoints(serial_run)) and res.metrics == serial_run.metrics
    ex = res.info["executor"]
    assert ex["actors_replaced"] == 1 and ex["shards_resubmitted"] >= 1


def test_ray_worker_that_cannot_open_the_model_is_one_line(ray_local, eval_models, val_subset, tmp_path):
    from edgepose.scale import RayOptions, evaluate_on_ray, model_files

    bad = tmp_path / "broken.onnx"
    bad.write_bytes(b"not an onnx file")
    (tmp_path / "broken.onnx.json").write_bytes(eval_models["onnx"].with_name(eval_models["onnx"].name + ".json")
                                                .read_bytes())  # fmt: skip
    spec, ds = val_subset
    with pytest.raises(EdgeposeError, match=r"^Ray worker cannot open broken.onnx: .*broken.onnx: ONNX Runtime cannot"):
        evaluate_on_ray(spec, model_files(bad), ds, RayOptions(actors=1, threads=1, progress=False), batch_size=3)


def test_bench_ray_accuracy_rows_equal_local(ray_local, eval_models, val_subset, serial_run, tmp_path):
    from edgepose.cli import main

    spec, ds = val_subset
    out = tmp_path / "b.json"
    argv = ["bench", "--ray", "--model", spec.name, "--no-reference", "--artifacts", str(eval_models["onnx"]),
            "--ann", str(ds.ann_file), "--images", str(ds.image_dir), "--threads", "1", "--runs", "2",
            "--warmup", "0", "--quiet", "--json", str(out)]  # fmt: skip
    bench_batch = 16  # bench's eval batch: compare with the single-process eval at the same batch
    from edgepose.runtimes import load_runtime

    local = evaluate_dataset(spec, load_runtime(eval_models["onnx"], threads=1), ds, batch_size=bench_batch,
                             progress=False, mode="serial")  # fmt: skip
    assert main(argv) == 0
    rep = json.loads(out.read_text())
    [row] = rep["rows"]
    assert row["status"] == "ok" and row["accuracy"]["metrics"] == local.metrics
    assert row["model"]["p50_ms"] > 0  # timing measured here
    assert any("Ray jobs" in n and "one row at a time" in n for n in rep["notes"])
