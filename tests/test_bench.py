"""``edgepose bench``: outputs, numbers checked against their definitions, failed rows, exit status."""

from __future__ import annotations

import json
import os
import shutil
import statistics
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
from edgepose.converters.metadata import write_sidecar

from edgepose.bench import machine
from edgepose.bench.data import artifact_files, artifact_size, discover_artifacts, guess_precision
from edgepose.bench.report import replace_between_markers
from edgepose.bench.timing import summarize, time_calls
from edgepose.cli import main
from edgepose.runtimes import RUNTIMES

FAST = ["--runs", "5", "--warmup", "1", "--threads", "1", "--quiet"]


# ------------------------------------------------------------------------------------------ units
def test_summary_matches_statistics_module():
    rng = np.random.default_rng(3)
    ns = rng.integers(1_000_000, 9_000_000, 57)
    s = summarize(ns, items=2)
    ms = [v / 1e6 for v in ns.tolist()]
    q = statistics.quantiles(ms, n=100, method="inclusive")  # q[i] is the (i+1)-th percentile
    assert s["p50_ms"] == pytest.approx(statistics.median(ms))
    assert s["p90_ms"] == pytest.approx(q[89]) and s["p99_ms"] == pytest.approx(q[98])
    assert s["mean_ms"] == pytest.approx(statistics.fmean(ms))
    assert s["throughput_per_s"] == pytest.approx(2 * 1000 / statistics.fmean(ms))
    assert s["min_ms"] <= s["p50_ms"] <= s["p90_ms"] <= s["p99_ms"] <= s["max_ms"] and s["n"] == 57


def test_hand_computed_percentiles():
    s = summarize(np.arange(1, 101) * 1_000_000)  # 1..100 ms
    assert (s["p50_ms"], s["p90_ms"], s["p99_ms"]) == pytest.approx((50.5, 90.1, 99.01))


def test_time_calls_counts_warmup_and_runs():
    calls = []
    t = time_calls(lambda: calls.append(1), runs=7, warmup=3)
    assert len(calls) == 10 and t.shape == (7,) and (t >= 0).all()


def test_peak_memory_sees_an_allocation():
    if not machine.reset_peak_rss():
        pytest.skip("the RSS high-water mark cannot be reset on this OS")
    # in a fresh interpreter: threads left by earlier tests in this process (engines' pools) move RSS too
    code = ("import numpy as np\nfrom edgepose.bench import machine\nwith machine.PeakMemory() as m:\n"
            "    a = np.ones(40_000_000, dtype=np.uint8)\n    del a\nprint(m.method, m.delta)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert out[0] == "hwm" and 38e6 <= int(out[1]) <= 80e6, out  # 40 MB touched, then freed


def test_openvino_size_counts_xml_and_bin(tmp_path):
    xml, bin_ = tmp_path / "m_fp16.xml", tmp_path / "m_fp16.bin"
    xml.write_bytes(b"x" * 123)
    bin_.write_bytes(b"y" * 4567)
    (tmp_path / "m_fp16.xml.json").write_text("{}")
    assert [p.name for p in artifact_files(xml)] == ["m_fp16.xml", "m_fp16.bin"]
    assert artifact_size(xml) == 123 + 4567
    assert guess_precision(xml) == "fp16" and guess_precision(tmp_path / "m.onnx", {"precision": "INT8"}) == "int8"


def test_readme_markers_replaced_and_missing(tmp_path):
    text = "a\n<!-- bench:start -->\nold\n<!-- bench:end -->\nb\n"
    assert replace_between_markers(text, "| new |") == "a\n<!-- bench:start -->\n| new |\n<!-- bench:end -->\nb\n"
    assert replace_between_markers("no markers", "x") is None


def test_machine_info_has_the_facts():
    m = machine.machine_info(threads=2)
    assert m["threads"] == 2 and m["logical_cpus"] == os.cpu_count() and m["cpu"]
    assert m["versions"]["numpy"] == np.__version__ and m["python"] == ".".join(map(str, sys.version_info[:3]))


# ------------------------------------------------------------------------------------- end to end
@pytest.fixture(scope="session")
def bench_env(tmp_path_factory):
    """A random-weight demo checkpoint, artifacts made from it, and a 3-image synthetic COCO split."""
    pytest.importorskip("torch")
    from edgepose.checkpoint import save_mmpose_checkpoint
    from edgepose.models import build_model
    from edgepose.spec import get_spec
    from edgepose.synthetic import generate

    root = tmp_path_factory.mktemp("bench")
    spec = get_spec("demo_coco_256x192")
    model = build_model(spec).init_weights(0).eval()
    ckpt = save_mmpose_checkpoint(model, root / "ref.pth")
    arts = root / "artifacts"
    arts.mkdir()
    files = [shutil.copyfile(ckpt, arts / "demo_coco_256x192_fp32.pth")]
    if "onnxruntime" in RUNTIMES:
        files.append(_onnx_artifact(model, spec, arts / "demo_coco_256x192_fp32.onnx"))
    ann, images = generate(root / "val", "val", num_images=3, seed=5)
    return {"root": root, "ckpt": ckpt, "files": [Path(f) for f in files], "ann": ann, "images": images}


def _onnx_artifact(model, spec, path: Path) -> Path:
    """An ONNX file from torch.onnx.export with the metadata sidecar that edgepose convert writes."""
    import torch

    w, h = spec.input_size
    torch.onnx.export(model, torch.zeros(1, 3, h, w), str(path), input_names=["input"], output_names=["heatmaps"],
                      opset_version=17, dynamo=False)  # fmt: skip
    meta = {
        "model": spec.to_dict(),
        "precision": "fp32",
        "format": "onnx",
        "batch": 1,
        "layout": {"input": "NCHW", "output": "NCHW"},
    }
    write_sidecar(path, meta)
    return path


def _bench(env, tmp_path, *extra, files=None, limit="2"):
    out = {k: tmp_path / f"b.{k}" for k in ("json", "md", "png")}
    ref = [] if "--no-reference" in extra else ["--reference", str(env["ckpt"])]
    argv = ["bench", "--model", "demo_coco_256x192", *ref, "--ann", str(env["ann"]), "--images", str(env["images"]),
            *(["--limit", limit] if limit else []), "--json", str(out["json"]), "--markdown", str(out["md"]),
            "--plot", str(out["png"]), *FAST, *extra]  # fmt: skip
    argv += ["--artifacts", *map(str, files or env["files"])]
    rc = main(argv)
    report = json.loads(out["json"].read_text()) if out["json"].exists() else None
    return rc, report, out


def _check_report(rep: dict, out: dict, artifacts: list[Path], threads: int = 1) -> None:
    rows = rep["rows"]
    assert rows[0]["reference"] and sorted(r["path"] for r in rows[1:]) == sorted(map(str, artifacts))
    for r in rows:
        assert r["status"] == "ok", (r["name"], r.get("error"))
        for part in (r["model"], r["pipeline"]["no_flip"], r["pipeline"]["flip"]):
            assert part["p50_ms"] <= part["p90_ms"] <= part["p99_ms"] and part["n"] == 5
        assert r["size_bytes"] == sum(os.path.getsize(p) for p in [r["path"]] + _companions(r["path"]))
        acc = r["accuracy"]
        assert acc["metric"] == "AP" and 0.0 <= acc["value"] <= 1.0 and "AR" in acc["metrics"]
        if not r["reference"]:
            assert {"delta", "reference", "max_drop", "pass"} <= set(acc)
            assert acc["delta"] == pytest.approx(acc["value"] - rows[0]["accuracy"]["value"])
            assert acc["max_drop"] == {"fp32": 0.01, "fp16": 0.01, "int8": 0.03}[r["precision"]]
            if r["precision"] == "fp32" and r["precision_used"] != "fp32":  # e.g. OpenVINO's bf16 on AMX
                assert abs(acc["delta"]) < 0.05  # near PyTorch; the label says what ran
            elif r["precision"] == "fp32":  # the same weights in FP32 score what PyTorch scores
                assert abs(acc["delta"]) < 1e-3 and acc["pass"] is True
        assert r["memory"]["peak_rss_delta_bytes"] is not None and r["load_s"] > 0
    assert rep["machine"]["threads"] == threads and rep["config"]["dataset"]["num_images"] == 2
    md = out["md"].read_text()
    assert all(Path(r["path"]).name in md for r in rows[1:]) and "Machine:" in md
    png = cv2.imread(str(out["png"]))
    assert png is not None and png.shape[0] > 400 and png.shape[1] > 600
    umask = os.umask(0)
    os.umask(umask)
    assert all(os.stat(p).st_mode & 0o777 == 0o666 & ~umask for p in out.values())  # not a temp file's 0600


def test_bench_writes_json_markdown_plot(bench_env, tmp_path):
    rc, rep, out = _bench(bench_env, tmp_path)
    assert rc == 0
    _check_report(rep, out, bench_env["files"])


@pytest.mark.slow
def test_bench_every_converted_artifact(bench_env, demo_artifacts, demo_checkpoint, tmp_path):
    """All nine artifacts of ``edgepose convert --target all`` (the conftest's one shared conversion)."""
    env = dict(bench_env, ckpt=demo_checkpoint)
    arts = discover_artifacts([demo_artifacts])
    assert len(arts) == 9  # ONNX, TFLite and OpenVINO fp32/fp16/int8
    rc, rep, out = _bench(env, tmp_path, files=[demo_artifacts])
    assert rc == 0
    _check_report(rep, out, arts)
    ov = [r for r in rep["rows"] if r["format"] == "openvino" and r["precision"] == "fp32"][0]
    assert ov["precision_used"] == _plain_openvino_precision(ov["path"])  # the plugin's own choice, read back
    # each row says which graph rewrite its artifact's metadata records (the head rewrite), and the table lists it
    for r in rep["rows"][1:]:
        assert r["rewrites"] == json.loads(Path(r["path"] + ".json").read_text())["conversion"]["graph_rewrites"]
    rewrites = {g for r in rep["rows"][1:] for g in r["rewrites"]}
    assert rewrites and all(g in out["md"].read_text() for g in rewrites)


def _plain_openvino_precision(path) -> str:
    """What OpenVINO's CPU plugin computes an IR in when nobody asks (read here without edgepose)."""
    import openvino as ov

    hint = ov.Core().compile_model(str(path), "CPU").get_property("INFERENCE_PRECISION_HINT").to_string()
    return {"f32": "fp32", "bf16": "bf16", "f16": "fp16"}[hint]


def test_labels_say_what_ran():
    from edgepose.bench.report import label

    row = lambda fmt, prec, used, **kw: {"format": fmt, "precision": prec, "precision_used": used, "status": "ok", **kw}
    assert label(row("xml", "fp32", "bf16")) == "OpenVINO FP32 (ran bf16)"
    assert label(row("xml", "fp32", "fp32")) == "OpenVINO FP32"
    assert label(row("xml", "int8", "bf16")) == "OpenVINO INT8 (float ops bf16)"
    assert label(row("xml", "int8", "fp32")) == "OpenVINO INT8"
    assert label(row("tflite", "fp16", "fp32")) == "TFLite FP16 (ran fp32)"
    assert label(row("onnx", "fp32", "fp32")) == "ONNX FP32"
    assert label(row("pth", "fp32", "tf32", reference=True)) == "PyTorch FP32 (ran tf32) (ref)"
    u8 = row("tflite", "int8", "fp32", runtime_info={"input_kind": "uint8_nhwc_rgb"})
    assert label(u8) == "TFLite INT8 uint8-in"
    forced = row("xml", "fp16", "fp32", runtime_options={"inference_precision": "f32"})
    assert label(forced) == "OpenVINO FP16 (ran fp32) [inference_precision=f32]"


def test_strict_precision_adds_a_float32_row_where_the_default_is_not(bench_env, tmp_path):
    """An OpenVINO FP32 IR: the default row runs what the plugin picks (bf16 on AMX CPUs, said in its label),
    --strict-precision adds the same artifact with float32 forced; each row's accuracy is its own."""
    if not {"onnxruntime", "openvino"} <= set(RUNTIMES):
        pytest.skip("needs the onnxruntime and openvino runtimes")
    import openvino as ov

    from edgepose.artifact import read_metadata
    from edgepose.bench.report import label

    onnx = bench_env["files"][-1]
    xml = tmp_path / "demo_coco_256x192_fp32.xml"
    ov.save_model(ov.Core().read_model(str(onnx)), str(xml), compress_to_fp16=False)
    write_sidecar(xml, dict(read_metadata(onnx), format="openvino"))
    plain = _plain_openvino_precision(xml)
    rc, rep, out = _bench(bench_env, tmp_path, "--strict-precision", "--no-reference", files=[xml])
    assert rc == 0
    rows = rep["rows"]
    assert rows[0]["precision_used"] == plain and rows[0]["runtime_info"]["inference_precision_asked"] == "auto"
    if plain == "fp32":  # no bf16 on this CPU: the default row is the strict one already
        assert len(rows) == 1 and label(rows[0]) == "OpenVINO FP32"
        return
    default, strict = rows
    assert label(default) == f"OpenVINO FP32 (ran {plain})"
    assert label(strict) == "OpenVINO FP32 [inference_precision=f32]"
    assert strict["precision_used"] == "fp32" and strict["runtime_options"] == {"inference_precision": "f32"}
    assert strict["name"] == "demo_coco_256x192_fp32.xml [inference_precision=f32]"
    assert default["accuracy"]["value"] is not None and strict["accuracy"]["value"] is not None
    md = out["md"].read_text()
    assert f"demo_coco_256x192_fp32.xml (ran {plain})" in md and "[inference_precision=f32]" in md


def _companions(path: str) -> list[str]:
    p = Path(path)
    return [str(p.with_suffix(".bin"))] if p.suffix == ".xml" else []


def test_corrupt_and_missing_engine_rows_fail_alone(bench_env, tmp_path, monkeypatch):
    bad = tmp_path / "bad"
    bad.mkdir()
    good = bench_env["files"][-1]  # the ONNX file when ONNX Runtime is there (fast), else the .pth
    broken = []
    for suffix in (".onnx", ".tflite", ".pth"):
        f = bad / f"demo_coco_256x192_int8{suffix}"
        f.write_bytes(os.urandom(2048))
        shutil.copyfile(f"{good}.json", f"{f}.json") if Path(f"{good}.json").exists() else None
        broken.append(f)
    files = [good, *broken]
    if "openvino" in RUNTIMES:
        xml = bad / "demo_coco_256x192_fp32.xml"
        xml.write_text("<net/>")
        xml.with_suffix(".bin").write_bytes(b"\0" * 64)
        files.append(xml)
        monkeypatch.setitem(sys.modules, "openvino", None)  # the engine is "not installed"
    rc, rep, out = _bench(bench_env, tmp_path, "--no-accuracy", "--no-reference", files=files)
    assert rc == 0  # one artifact still ran
    by_name = {r["name"]: r for r in rep["rows"]}
    assert by_name[good.name]["status"] == "ok"
    for f in files[1:]:
        r = by_name[f.name]
        assert r["status"] == "failed" and r["error"] and "\n" not in r["error"], r
    if "openvino" in RUNTIMES:
        assert "openvino" in by_name["demo_coco_256x192_fp32.xml"]["error"].lower()
    assert "failed" in out["md"].read_text()


def test_exit_status_1_when_every_artifact_fails(bench_env, tmp_path):
    f = tmp_path / "demo_coco_256x192_fp32.pth"
    f.write_bytes(b"not a checkpoint")
    rc, rep, _ = _bench(bench_env, tmp_path, "--no-accuracy", "--no-reference", files=[f])
    assert rc == 1 and rep["rows"][0]["status"] == "failed" and "not a PyTorch checkpoint" in rep["rows"][0]["error"]


def test_no_artifacts_is_a_one_line_error(tmp_path, capsys):
    assert main(["bench", "--artifacts", str(tmp_path), "--quiet"]) == 2
    err = capsys.readouterr().err.strip()
    assert "no artifacts found" in err and len(err.splitlines()) == 1


def test_discovery_orders_by_format_then_precision(tmp_path):
    if not {"onnxruntime", "openvino"} <= set(RUNTIMES):
        pytest.skip("needs the onnxruntime and openvino runtimes registered")
    names = ["m_int8.onnx", "m_fp32.onnx", "m_fp16.onnx", "m_fp32.pth", "m_fp32.onnx.json", ".m_fp32.onnx.part",
             "m_int8.xml", "m_int8.bin", "m_fp32.xml", "m_fp32.bin", "notes.txt"]  # fmt: skip
    for n in names:
        (tmp_path / n).write_bytes(b"0")
    found = [p.name for p in discover_artifacts([tmp_path])]
    assert found == ["m_fp32.onnx", "m_fp16.onnx", "m_int8.onnx", "m_fp32.xml", "m_int8.xml"]


def test_without_torch_the_reference_comes_from_metadata(bench_env, tmp_path, monkeypatch):
    """A torch-less device: the PyTorch row fails saying so; the artifact's recorded reference accuracy is used."""
    if "onnxruntime" not in RUNTIMES:
        pytest.skip("needs the onnxruntime runtime")
    from edgepose.artifact import read_metadata

    onnx = tmp_path / "demo_coco_256x192_fp32.onnx"
    shutil.copyfile(bench_env["files"][-1], onnx)
    meta = read_metadata(bench_env["files"][-1])
    monkeypatch.setitem(sys.modules, "torch", None)
    write_sidecar(onnx, meta)
    rc, rep, _ = _bench(bench_env, tmp_path, files=[onnx], limit=None)
    ref, row = rep["rows"]
    assert rc == 0 and ref["status"] == "failed" and "needs torch" in ref["error"]
    assert row["status"] == "ok" and "delta" not in row["accuracy"]
    assert any("no reference accuracy" in n for n in rep["notes"])

    ds = rep["config"]["dataset"]
    recorded = {"metric": "AP", "value": 0.75, "ann_sha256": ds["ann_sha256"], "bbox_file_sha256": None,
                "flip_test": True}  # fmt: skip
    write_sidecar(onnx, dict(meta, reference_accuracy=recorded))
    rc, rep, _ = _bench(bench_env, tmp_path, files=[onnx], limit=None)
    acc = rep["rows"][1]["accuracy"]
    assert acc["reference"] == 0.75 and acc["delta"] == pytest.approx(acc["value"] - 0.75)
    assert acc["pass"] is (0.75 - acc["value"] <= 0.01)
    assert rep["config"]["reference_accuracy"]["source"].startswith("recorded at conversion")

    # recorded on other data (another annotation file's bytes): never compared
    write_sidecar(onnx, dict(meta, reference_accuracy=dict(recorded, ann_sha256="0" * 64)))
    rc, rep, _ = _bench(bench_env, tmp_path, files=[onnx], limit=None)
    assert "delta" not in rep["rows"][1]["accuracy"] and rep["config"]["reference_accuracy"]["value"] is None


def test_model_comes_from_the_artifacts_metadata(bench_env, tmp_path):
    """Without --model, the model is the one the artifact's metadata names (here the real COCO model)."""
    if "onnxruntime" not in RUNTIMES:
        pytest.skip("needs the onnxruntime runtime")
    from edgepose.artifact import read_metadata
    from edgepose.spec import get_spec

    onnx = tmp_path / "coco_256x192_fp32.onnx"
    shutil.copyfile(bench_env["files"][-1], onnx)
    write_sidecar(onnx, dict(read_metadata(bench_env["files"][-1]), model=get_spec("coco_256x192").to_dict()))
    js = tmp_path / "r.json"
    argv = ["bench", "--artifacts", str(onnx), "--no-reference", "--no-accuracy", "--json", str(js), *FAST]
    assert main(argv) == 0
    rep = json.loads(js.read_text())
    assert rep["model"] == "coco_256x192" and rep["rows"][0]["status"] == "ok"
    assert any("no dataset" in n or "not measured" in n for n in rep["notes"])
