"""Hostile but fair input: every case fails with its exit status, one line naming the file (or option) and what
is wrong, no traceback, and nothing written. One table, one row per case (issue 14).

The CLI runs in-process where nothing can crash the interpreter, and in a subprocess where an engine could
(a damaged ``.tflite`` used to kill LiteRT with SIGSEGV). The artifacts are the session's one conversion
(``demo_artifacts`` in conftest.py); the damaged copies are made once per module.

Over 400 lines on purpose: the issue asks for ONE parametrised file of hostile inputs, and most of it is the
case table (data) and the fixture that makes the damaged files.
"""

from __future__ import annotations

import json
import os
import shlex
import signal
import subprocess
import sys
import threading
import time
import zipfile
from pathlib import Path

import numpy as np
import pytest

from edgepose.cli import main

from .helpers import sigint_as_default

STEM = "demo_coco_256x192"


# ------------------------------------------------------------------------------------------- fixtures
def _link(src: Path, dst: Path) -> Path:
    dst.parent.mkdir(parents=True, exist_ok=True)
    os.link(src, dst)
    return dst


def _cut(src: Path, dst: Path, keep: float = 0.5) -> Path:
    dst.parent.mkdir(parents=True, exist_ok=True)
    data = src.read_bytes()
    dst.write_bytes(data[: int(len(data) * keep)])
    return dst


def _put(path: Path, data: bytes | str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data.encode() if isinstance(data, str) else data)
    return path


def _mkdir(path: Path) -> Path:
    path.mkdir(parents=True)
    return path


def _npy_zip(path: Path, members: dict[str, tuple[dict, bytes]]) -> Path:
    """An .npz whose members carry the given .npy header dicts and raw data (shapes may lie)."""
    import io

    with zipfile.ZipFile(path, "w") as z:
        for name, (header, data) in members.items():
            buf = io.BytesIO()
            np.lib.format.write_array_header_1_0(buf, header)
            z.writestr(f"{name}.npy", buf.getvalue() + data)
    return path


@pytest.fixture(scope="module")
def env(tmp_path_factory, demo_artifacts, demo_checkpoint) -> dict[str, str]:
    import xml.etree.ElementTree as ET

    import cv2
    import torch

    from edgepose.checkpoint import save_mmpose_checkpoint
    from edgepose.models import build_model
    from edgepose.spec import get_spec
    from edgepose.synthetic import generate

    root = tmp_path_factory.mktemp("hostile")
    ann, images = generate(root / "data", "val", num_images=3, seed=5)
    img = sorted(images.iterdir())[0]
    e: dict[str, Path] = {"root": root, "ann": ann, "images": images, "img": img, "ckpt": Path(demo_checkpoint)}
    a = {s: Path(demo_artifacts) / f"{STEM}_fp32{s}" for s in (".onnx", ".tflite", ".xml")}
    e.update(onnx=a[".onnx"], tflite=a[".tflite"], xml=a[".xml"])

    bad = root / "images"  # damaged images
    e["jpg_trunc"] = _cut(img, bad / "trunc.jpg")
    ok, png = cv2.imencode(".png", cv2.imread(str(img)))
    (bad / "whole.png").write_bytes(png.tobytes())
    e["png_trunc"] = _cut(bad / "whole.png", bad / "trunc.png", 0.7)
    e["jpg_empty"] = _put(bad / "empty.jpg", b"")
    e["jpg_text"] = _put(bad / "text.jpg", "not an image\n")
    e["eval_bad"] = root / "eval_bad"  # the eval set with one truncated image
    for f in images.iterdir():
        (_cut if f == img else _link)(f, e["eval_bad"] / f.name, *([0.6] if f == img else []))
    e["calib_imgs"] = root / "train_imgs"
    for i, f in enumerate(sorted(images.iterdir())):
        (_cut if i == 0 else _link)(f, e["calib_imgs"] / f.name, *([0.6] if i == 0 else []))

    ck = root / "ckpt"
    ck.mkdir()
    e["ck_trunc"] = _cut(e["ckpt"], ck / "trunc.pth")
    e["ck_empty"] = _put(ck / "empty.pth", b"")
    e["ck_text"] = _put(ck / "text.pth", "hello, I am a text file\n")
    torch.save({"state_dict": {"w": torch.zeros(1)}, "x": print}, e.setdefault("ck_code", ck / "code.pth"))
    e["ck_k21"] = save_mmpose_checkpoint(build_model(get_spec("rhd_256x256")), ck / "k21.pth")
    e["ck_card"] = _link(e["ckpt"], ck / "mobilenetv2_onehand10k_256x256-55d34d7d_20201218.pth")

    art = root / "art"  # damaged artifacts, each in its own folder under its own name
    e["tfl_trunc"] = _cut(a[".tflite"], art / "t1" / a[".tflite"].name)
    _link(Path(f"{a['.tflite']}.json"), art / "t1" / f"{a['.tflite'].name}.json")
    e["tfl_trunc_nosc"] = _cut(a[".tflite"], art / "t2" / a[".tflite"].name, 0.9)
    data = bytearray(a[".tflite"].read_bytes())
    data[len(data) // 2] ^= 0xFF
    e["tfl_changed"] = _put(art / "t3" / a[".tflite"].name, bytes(data))
    _link(Path(f"{a['.tflite']}.json"), art / "t3" / f"{a['.tflite'].name}.json")
    e["onnx_trunc"] = _cut(a[".onnx"], art / "o1" / a[".onnx"].name)
    _link(Path(f"{a['.onnx']}.json"), art / "o1" / f"{a['.onnx'].name}.json")
    e["onnx_other"] = _link(a[".onnx"], art / "o2" / a[".onnx"].name)
    _link(Path(demo_artifacts) / f"{STEM}_int8.onnx.json", art / "o2" / f"{a['.onnx'].name}.json")
    e["onnx_cross"] = _link(a[".onnx"], art / "o3" / a[".onnx"].name)
    _link(Path(f"{a['.tflite']}.json"), art / "o3" / f"{a['.onnx'].name}.json")
    e["onnx_badsc"] = _link(a[".onnx"], art / "o4" / a[".onnx"].name)
    (art / "o4" / f"{a['.onnx'].name}.json").write_text("{not json")
    for d, sidecar in (("x1", True), ("x2", False), ("x3", True)):
        xml = _link(a[".xml"], art / d / a[".xml"].name)
        if d != "x3":
            _cut(a[".xml"].with_suffix(".bin"), xml.with_suffix(".bin"), 0.8)
        if sidecar:
            _link(Path(f"{a['.xml']}.json"), art / d / f"{a['.xml'].name}.json")
        e[f"xml_{d}"] = xml
    root_el = ET.parse(a[".xml"]).getroot()  # an IR from before the companion record: no rt_info entry
    root_el.remove(root_el.find("rt_info"))
    e["xml_x4"] = _put(art / "x4" / a[".xml"].name, ET.tostring(root_el))
    _cut(a[".xml"].with_suffix(".bin"), e["xml_x4"].with_suffix(".bin"), 0.8)
    e["art_dir"] = _mkdir(art / "folder.onnx")
    e["art_txt"] = _put(art / "model.txt", "x")

    cal = root / "calib"
    cal.mkdir()
    e["cal_garbage"] = _put(cal / "garbage.npz", os.urandom(4096))
    e["cal_huge"] = _npy_zip(cal / "huge.npz", {"crops": ({"descr": "|u1", "fortran_order": False,
                                                           "shape": (10**6, 10**6, 256, 3)}, b"\0" * 64)})  # fmt: skip
    e["cal_objects"] = _npy_zip(cal / "objects.npz", {"crops": ({"descr": "|O", "fortran_order": False,
                                                                 "shape": (2,)}, b"\0" * 16)})  # fmt: skip
    np.savez(e.setdefault("cal_size", cal / "size.npz"), crops=np.zeros((2, 64, 48, 3), np.uint8))
    np.savez(e.setdefault("cal_jpeg", cal / "jpeg.npz"), crops_jpeg=np.zeros(10, np.uint8),
             crops_jpeg_sizes=np.array([10]), shape=np.array([10**6, 10**6, 3]))  # fmt: skip

    det = root / "dets"
    det.mkdir()
    row = '{"image_id": 1, "category_id": 1, "bbox": %s, "score": %s}'
    e["det_nan"] = _put(det / "nan.json", "[%s]" % row % ("[NaN, 0, 10, 10]", "0.9"))
    e["det_score"] = _put(det / "score.json", "[%s]" % row % ("[0, 0, 10, 10]", "NaN"))
    e["det_str"] = _put(det / "str.json", '[["not", "a", "detection"]]')
    doc = json.loads(ann.read_text())
    anns = root / "anns"
    anns.mkdir()
    e["ann_notjson"] = _put(anns / "notjson.json", "{")
    e["ann_list"] = _put(anns / "list.json", "[]")
    nan = dict(doc, annotations=[dict(doc["annotations"][0], keypoints=[float("nan")] * 51)])
    e["ann_nan"] = _put(anns / "nan.json", json.dumps(nan))
    e["ann_deep"] = _put(anns / "deep.json", "[" * 100_000 + "]" * 100_000)
    gone = dict(doc, images=[dict(doc["images"][0], file_name="gone.jpg")] + doc["images"][1:])
    e["ann_gone"] = _put(anns / "gone.json", json.dumps(gone))

    # round two (issue 22)
    sd = torch.load(e["ckpt"], map_location="cpu", weights_only=True)
    sd = dict(sd.get("state_dict", sd))
    first_float = next(k for k, v in sd.items() if v.is_floating_point())
    sd[first_float] = sd[first_float].clone()
    sd[first_float].view(-1)[:3] = float("nan")
    torch.save({"state_dict": sd}, e.setdefault("ck_nan", ck / "nan.pth"))
    e["nan_tensor"] = first_float
    e["bomb"] = png_bomb(bad / "bomb.png", 20000, 20000)
    e["png_zero"] = png_bomb(bad / "zero.png", 0, 10)  # libpng printed its own error before edgepose's line
    for d, bad_meta in (("m1", {"model": "x"}), ("m2", {"layout": 5})):
        e[f"onnx_{d}"] = _link(a[".onnx"], art / d / a[".onnx"].name)
        meta = json.loads(Path(f"{a['.onnx']}.json").read_text())
        _put(art / d / f"{a['.onnx'].name}.json", json.dumps({**meta, **bad_meta}))
    int8 = Path(demo_artifacts) / f"{STEM}_int8.onnx"
    e["onnx8"] = int8
    e["onnx8_trunc"] = _cut(int8, art / "i1" / int8.name)
    _link(Path(f"{int8}.json"), art / "i1" / f"{int8.name}.json")
    e["onnx_trunc_nosc"] = _cut(a[".onnx"], art / "o5" / a[".onnx"].name)
    rng = np.random.default_rng(0)
    np.savez(e.setdefault("cal_blank", cal / "blank_holdout.npz"),
             crops=rng.integers(0, 256, (8, 256, 192, 3), dtype=np.uint8), holdout=np.zeros((4, 256, 192, 3),
             np.uint8))  # fmt: skip
    e["ann_nocat"] = _put(anns / "nocat.json", json.dumps(dict(doc, categories=[])))
    e["same_img"] = _link(img, root / "same" / "same.jpg")
    e["foreign"] = _link(img, root / "foreign" / "images" / "frame_000001.jpg").parent.parent  # a user's photos

    e["afile"] = _put(root / "a_file", "x")
    e["adir"] = _mkdir(root / "a_dir")
    e["adir_npz"] = _mkdir(root / "dir.npz")
    e["blocked"] = _mkdir(root / "blocked" / f"{STEM}_fp32.onnx").parent  # a folder where a file must go
    e["ro"] = _read_only_dir(root / "ro")
    return {k: str(v) for k, v in e.items()}


def png_bomb(path: Path, w: int, h: int) -> Path:
    """A valid 1-bit greyscale PNG declaring ``w`` x ``h`` black pixels: 49 kB on disk for 20000 x 20000, 1.2 GB
    once OpenCV decodes it to RGB."""
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    z, row = zlib.compressobj(9), b"\0" * (1 + (w + 7) // 8)
    body = b"".join(z.compress(row) for _ in range(h)) + z.flush()
    ihdr = struct.pack(">IIBBBBB", w, h, 1, 0, 0, 0, 0)
    return _put(path, b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", body) + chunk(b"IEND", b""))


def _read_only_dir(path: Path) -> Path:
    """A folder no file can be created in: mode 0555, or for root (whom modes do not bind) /sys's top."""
    path.mkdir()
    path.chmod(0o555)
    try:
        (path / ".probe").write_text("x")
    except OSError:
        return path
    (path / ".probe").unlink()
    try:
        Path("/sys/.edgepose-probe").write_text("x")
    except OSError:
        return Path("/sys")
    pytest.skip("no folder here refuses writes (root, no read-only /sys)")


# ---------------------------------------------------------------------------------------------- cases
P = "predict {img} --checkpoint {ckpt} --out {out}/p.png"
K = "calibrate --images {images} --out {out}/c.npz"
PA = "predict {img} --out {out}/p.png --artifact"
E = "eval --no-progress --checkpoint {ckpt} --ann {ann} --images {images} --out {out}/m.json"
B = "bench --artifacts {onnx} --no-reference --no-accuracy --runs 1 --warmup 0 --quiet"
C = "convert --target onnx --no-reference-accuracy --out {out}/arts"
SUB = "subprocess"  # a case that could crash the interpreter
L300, L240 = "a" * 300, "b" * 240  # a file name no file system takes; one that leaves no room for a temp name

CASES = [
    # id, argv, message, the file or option it must name, [mode or blocked engine modules]
    ("ckpt-truncated", P.replace("{ckpt}", "{ck_trunc}"), "damaged or truncated PyTorch checkpoint", "{ck_trunc}"),
    ("ckpt-empty", P.replace("{ckpt}", "{ck_empty}"), "file is empty", "{ck_empty}"),
    ("ckpt-text", P.replace("{ckpt}", "{ck_text}"), "not a PyTorch checkpoint (neither", "{ck_text}"),
    ("ckpt-code", P.replace("{ckpt}", "{ck_code}"), "refused: it holds Python objects beyond tensors", "{ck_code}"),
    ("ckpt-wrong-model", P.replace("{ckpt}", "{ck_k21}"), "does not match the model", "{ck_k21}"),
    ("ckpt-missing", P.replace("{ckpt}", "{root}/nope.pth"), "checkpoint file not found", "nope.pth"),
    ("ckpt-sha256", P + " --sha256 00000000", "does not match the expected 00000000", "{ckpt}"),
    ("ckpt-sha256-not-hex", P + " --sha256 xyz", "expected a hex sha256", "--sha256"),
    ("ckpt-card-name", P.replace("{ckpt}", "{ck_card}"), "named like the published onehand10k_256x256", "{ck_card}"),
    ("eval-sha256", E + " --sha256 0000", "does not match the expected", "{ckpt}"),
    ("bench-sha256", B.replace("--no-reference ", "--reference {ckpt} --sha256 0000 "), "does not match", "{ckpt}"),
    ("convert-sha256", C + " --checkpoint {ckpt} --sha256 0000", "does not match the expected", "{ckpt}"),
    ("tflite-truncated", PA + " {tfl_trunc}", "truncated: ", "{tfl_trunc}", SUB),
    ("tflite-truncated-no-sidecar", PA + " {tfl_trunc_nosc}", "TFLite", "{tfl_trunc_nosc}", SUB),
    ("tflite-changed", PA + " {tfl_changed}", "changed since conversion", "{tfl_changed}", SUB),
    ("onnx-truncated", PA + " {onnx_trunc}", "truncated: ", "{onnx_trunc}", SUB),
    ("onnx-sidecar-of-another", PA + " {onnx_other}", f"belongs to another file ({STEM}_int8.onnx", "{onnx_other}"),
    ("onnx-sidecar-of-tflite", PA + " {onnx_cross}", "belongs to another file (a tflite artifact", "{onnx_cross}"),
    ("onnx-sidecar-not-json", PA + " {onnx_badsc}", "not valid JSON", ".onnx.json"),
    ("xml-bin-truncated", PA + " {xml_x1}", "truncated: ", ".bin", SUB),
    ("xml-bin-truncated-no-sidecar", PA + " {xml_x2}", "truncated: ", ".bin", SUB),
    ("xml-bin-missing", PA + " {xml_x3}", "missing", ".bin"),
    ("xml-bin-truncated-no-record", PA + " {xml_x4}", "the model's weights reach byte", ".bin", SUB),
    ("artifact-is-a-folder", PA + " {art_dir}", "is a directory", "{art_dir}"),
    ("artifact-unknown-suffix", PA + " {art_txt}", "no runtime for '.txt'", "{art_txt}"),
    ("no-onnxruntime", PA + " {onnx}", "needs onnxruntime", "onnxruntime", ("onnxruntime",)),
    ("no-openvino", PA + " {xml}", "needs openvino", "openvino", ("openvino",)),
    ("no-litert", PA + " {tflite}", "needs ai-edge-litert", "ai-edge-litert",
     ("ai_edge_litert", "tflite_runtime", "tensorflow")),
    ("image-truncated-jpeg", P.replace("{img}", "{jpg_trunc}"), "truncated JPEG image", "{jpg_trunc}"),
    ("image-truncated-png", P.replace("{img}", "{png_trunc}"), "truncated PNG image", "{png_trunc}"),
    ("image-empty", P.replace("{img}", "{jpg_empty}"), "empty file", "{jpg_empty}"),
    ("image-text", P.replace("{img}", "{jpg_text}"), "cannot read image", "{jpg_text}"),
    ("image-missing", P.replace("{img}", "{root}/gone.jpg"), "image file not found", "gone.jpg"),
    ("eval-truncated-image", E.replace("{images}", "{eval_bad}"), "truncated JPEG image", "{eval_bad}/"),
    ("calibrate-truncated-image", K.replace("{images}", "{calib_imgs}"), "truncated JPEG", "{calib_imgs}/"),
    ("bbox-nan", P + " --bbox nan,0,10,10", "must be finite numbers", "--bbox"),
    ("bbox-inf", P + " --bbox 0,0,inf,10", "must be finite numbers", "--bbox"),
    ("bbox-huge", P + " --bbox 0,0,1e300,10", "beyond", "--bbox"),
    ("bbox-file-nan", E + " --bbox-file {det_nan}", "detection 0: 'bbox' holds NaN", "{det_nan}"),
    ("bbox-file-score-nan", E + " --bbox-file {det_score}", "'score' is not a finite number", "{det_score}"),
    ("bbox-file-not-detections", E + " --bbox-file {det_str}", "lacks one of", "{det_str}"),
    ("ann-not-json", E.replace("{ann}", "{ann_notjson}"), "not valid JSON", "{ann_notjson}"),
    ("ann-not-coco", E.replace("{ann}", "{ann_list}"), "not a COCO-style file", "{ann_list}"),
    ("ann-nan-keypoints", E.replace("{ann}", "{ann_nan}"), "holds NaN or infinity", "{ann_nan}"),
    ("ann-nested", E.replace("{ann}", "{ann_deep}"), "nested too deeply", "{ann_deep}"),
    ("ann-image-missing", E.replace("{ann}", "{ann_gone}"), "image file not found", "gone.jpg"),
    ("calib-garbage", C + " --precision int8 --calib {cal_garbage}", "not a calibration file", "{cal_garbage}"),
    ("calib-huge-shape", C + " --precision int8 --calib {cal_huge}", "declares shape", "{cal_huge}"),
    ("calib-objects", C + " --precision int8 --calib {cal_objects}", "holds Python objects", "{cal_objects}"),
    ("calib-wrong-size", C + " --precision int8 --calib {cal_size}", "crops are 48x64", "{cal_size}"),
    ("calib-jpeg-huge", C + " --precision int8 --calib {cal_jpeg}", "JPEG crops declare shape", "{cal_jpeg}"),
    ("predict-out-is-dir", P.replace("{out}/p.png", "{adir}"), "is a directory", "{adir}"),
    ("predict-json-under-file", P + " --json {afile}/k.json", "is not a folder", "{afile}"),
    ("predict-out-read-only", P.replace("{out}", "{ro}"), "cannot write in its folder", "{ro}"),
    ("eval-out-parent-cannot-be-made", E.replace("{out}/m.json", "{ro}/sub/m.json"), "cannot write in", "{ro}"),
    ("eval-predictions-is-dir", E + " --predictions {adir}", "is a directory", "{adir}"),
    ("bench-json-is-dir", B + " --json {adir}", "is a directory", "{adir}"),
    ("bench-markdown-under-file", B + " --markdown {afile}/b.md", "is not a folder", "{afile}"),
    ("bench-plot-read-only", B + " --plot {ro}/b.png", "cannot write", "{ro}"),
    ("calibrate-out-is-dir", "calibrate --images {images} --out {adir_npz}", "is a directory", "{adir_npz}"),
    ("convert-out-is-file", C.replace("{out}/arts", "{afile}"), "exists and is not a folder", "{afile}"),
    ("convert-dir-in-the-way", C.replace("{out}/arts", "{blocked}") + " --precision fp32", "is a directory, where "
     "convert must write a file", f"{STEM}_fp32.onnx"),
    ("synth-out-is-file", "synth --num-images 1 --out {afile}", "exists and is not a folder", "{afile}"),
    ("synth-out-read-only", "synth --num-images 1 --out {ro}/s", "cannot write", "{ro}"),
    ("threads-negative-predict", P + " --threads -1", "-1 is not a whole number of at least 1", "--threads"),
    ("threads-word-predict", P + " --threads many", "'many' is not a whole number", "--threads"),
    ("threads-zero-eval", E + " --threads 0", "0 is not a whole number of at least 1", "--threads"),
    ("threads-negative-bench", B + " --threads -1", "is not a whole number of at least 1", "--threads"),
    ("threads-negative-convert", C + " --threads -1", "is not a whole number of at least 1", "--threads"),
    ("limit-zero-bench", B + " --limit 0", "0 is not a whole number of at least 1", "--limit"),
    ("runs-zero-bench", B + " --runs 0", "is not a whole number of at least 1", "--runs"),
    ("batch-size-zero-eval", E + " --batch-size 0", "is not a whole number of at least 1", "--batch-size"),
    ("num-zero-calibrate", K + " --num 0", "at least 1", "--num"),
    ("jpeg-quality-calibrate", K + " --jpeg 101", "between 1 and 100", "--jpeg"),
    ("det-thr-nan-eval", E + " --det-bbox-thr nan", "not a finite number", "--det-bbox-thr"),
    # round two (issue 22)
    ("threads-huge-predict", P + " --threads 100000", "100000 is more threads than", "--threads"),
    ("threads-huge-eval", E + " --threads 100000", "100000 is more threads than", "--threads"),
    ("threads-huge-bench", B + " --threads 100000", "100000 is more threads than", "--threads"),
    ("threads-huge-convert", C + " --threads 100000", "100000 is more threads than", "--threads"),
    ("name-too-long-predict", P.replace("p.png", L300 + ".png"), "File name too long", "--out"),
    ("name-long-predict-json", P + " --json {out}/" + L240 + ".json", "file name too long (245 bytes", "--json"),
    ("name-too-long-eval", E.replace("m.json", L300 + ".json"), "File name too long", "--out"),
    ("name-too-long-bench", B + " --json {out}/" + L300 + ".json", "File name too long", "--json"),
    ("name-too-long-convert", C.replace("arts", L300), "File name too long", "--out"),
    ("name-too-long-synth", "synth --num-images 1 --out {out}/" + L300, "File name too long", "--out"),
    ("name-too-long-calibrate", K.replace("c.npz", L300 + ".npz"), "File name too long", "--out"),
    ("predict-out-unknown-suffix", P.replace("p.png", "p.xyz"), "no image format for the suffix '.xyz'", "--out"),
    ("predict-out-is-the-image", "predict {same_img} --checkpoint {ckpt} --out {same_img}", "is the input image",
     "{same_img}"),
    ("predict-json-is-the-out", P + " --json {out}/p.png", "is also the path of --json", "--out"),
    ("eval-out-is-the-ann", E.replace("{out}/m.json", "{ann}"), "is the input --ann", "{ann}"),
    ("bench-json-is-a-sidecar", B + " --json {onnx}.json", "is the input artifact's sidecar", "{onnx}.json"),
    ("sidecar-model-not-object", PA + " {onnx_m1}", "metadata 'model' is str 'x', not an object", ".onnx.json"),
    ("sidecar-layout-not-object", PA + " {onnx_m2}", "metadata 'layout' is int 5, not an object", ".onnx.json"),
    ("ckpt-nan-predict", P.replace("{ckpt}", "{ck_nan}") + " --json {out}/k.json", "holds 3 NaN or infinite",
     "{ck_nan}"),
    ("ckpt-nan-convert", C + " --checkpoint {ck_nan}", "holds 3 NaN or infinite", "{ck_nan}"),
    ("image-bomb", P.replace("{img}", "{bomb}"), "image declares 20000x20000 pixels", "{bomb}"),
    ("image-zero-width", P.replace("{img}", "{png_zero}"), "image declares 0x10 pixels", "{png_zero}"),
    ("inspect-int8-truncated", "inspect {onnx8_trunc}", "truncated: ", "{onnx8_trunc}"),
    ("inspect-float-truncated", "inspect {onnx8} --float {onnx_trunc_nosc}", "not a readable ONNX model",
     "{onnx_trunc_nosc}"),
    ("inspect-float-wrong-format", "inspect {onnx8} --float {tflite}", "must be a .onnx file", "{tflite}"),
    ("inspect-out-under-file", "inspect {onnx8} --out {afile}/r", "is not a folder", "{afile}"),
    ("inspect-out-is-folder", "inspect {onnx8} --out {adir}/", "is a folder; give a file stem", "{adir}"),
    ("inspect-blank-holdout", "inspect {onnx8} --calib {cal_blank}", "4 of 4 holdout crops are near-constant",
     "{cal_blank}"),
    ("predict-artifact-other-model", PA + " {onnx} --model coco_384x288", "artifact is for model "
     "demo_coco_256x192, not coco_384x288", "{onnx}"),
    ("eval-artifact-other-model", E.replace("--checkpoint {ckpt}", "--artifact {tflite} --model coco_384x288"),
     "artifact is for model demo_coco_256x192, not coco_384x288", "{tflite}"),
    ("ann-no-person-category", E.replace("{ann}", "{ann_nocat}"), "'categories' lists no person category",
     "{ann_nocat}"),
    ("max-drop-negative-convert", C + " --max-drop -1", "-1 is negative", "--max-drop"),
    ("convert-out-empty", "convert --target onnx --out ''", "an empty path", "--out"),
    ("ssh-option-no-equals", B + " --remote pi --ssh-option noequals", "'noequals' is not KEY=VALUE", "--ssh-option"),
    ("remote-timeout-zero", B + " --remote pi --remote-timeout 0", "0 is not more than 0", "--remote-timeout"),
    ("ssh-config-missing", B + " --remote pi --ssh-config {root}/nope.cfg", "file not found", "--ssh-config"),
    ("synth-over-foreign-images", "synth --num-images 1 --out {foreign}", "holds files that are not an earlier "
     "synth's", "{foreign}/images"),
    ("ray-unreachable", E + " --ray 127.0.0.1:1", "nothing answers at 127.0.0.1:1", "--ray 127.0.0.1:1"),
]  # fmt: skip


def _run_in_process(argv: list[str], capsys, monkeypatch, blocked: tuple[str, ...]) -> tuple[int, str]:
    for name in blocked:
        monkeypatch.setitem(sys.modules, name, None)  # the engine is "not installed"
    try:
        rc = main(argv)
    except SystemExit as e:  # argparse's own exit for a bad option value
        rc = e.code
    return rc, capsys.readouterr().err


def _run_subprocess(argv: list[str], cwd: Path) -> tuple[int, str]:
    r = subprocess.run([sys.executable, "-m", "edgepose", *argv], capture_output=True, text=True, timeout=300,
                       cwd=cwd)  # fmt: skip
    return r.returncode, r.stderr


def _stats(*folders: str | Path) -> dict[str, tuple[int, int]]:
    """(size, mtime) of every file under ``folders``: what a case must leave as it found it."""
    return {str(f): (f.stat().st_size, f.stat().st_mtime_ns) for d in folders for f in Path(d).rglob("*")
            if f.is_file() and not f.name.startswith(".edgepose-probe")}  # fmt: skip


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_hostile_input(case, env, tmp_path, capsys, monkeypatch):
    cid, argv, message, name, *extra = case
    mode = extra[0] if extra else None
    out = tmp_path / "out"
    out.mkdir()
    fill = dict(env, out=str(out))
    args = [a.format(**fill) for a in shlex.split(argv)]
    name = name.format(**fill)
    inputs = _stats(env["root"], Path(env["onnx"]).parent)
    if mode == SUB:
        rc, err = _run_subprocess(args, tmp_path)
    else:
        rc, err = _run_in_process(args, capsys, monkeypatch, mode or ())
    assert _stats(env["root"], Path(env["onnx"]).parent) == inputs  # no input overwritten, none added
    lines = [ln for ln in err.strip().splitlines() if ln.strip()]
    assert rc == 2, (cid, rc, err[-2000:])
    assert "Traceback" not in err, err[-2000:]
    errors = [ln for ln in lines if ": error: " in ln]
    assert len(errors) == 1 and errors[0] == lines[-1], err[-2000:]  # one line, the last word
    assert message in errors[0] and name in errors[0], (message, name, errors[0])
    assert not list(out.iterdir()), sorted(out.iterdir())  # nothing written, not even a temporary file
    for p in (env["adir"], env["adir_npz"], env["ro"] if env["ro"] != "/sys" else env["adir"]):
        assert not [f for f in Path(p).iterdir() if not f.name.startswith(".probe")], p


# ------------------------------------------------------------------------------------ beyond the table
def _strict_json(path: Path):
    """Parse as strict JSON: a bare NaN/Infinity (what json.dumps writes by default) is an error."""

    def refuse(token):
        raise ValueError(f"{path}: invalid JSON constant {token}")

    return json.loads(Path(path).read_text(), parse_constant=refuse)


def test_skip_bad_images_leaves_them_out_and_says_so(env, tmp_path, capsys):
    """--skip-bad-images scores exactly what the set without the truncated image scores, and counts it."""
    bad = Path(env["img"]).name
    argv = ["eval", "--no-progress", "--checkpoint", env["ckpt"], "--ann", env["ann"]]
    rc = main([*argv, "--images", env["eval_bad"], "--skip-bad-images", "--out", str(tmp_path / "skip.json"),
               "--predictions", str(tmp_path / "p.json")])  # fmt: skip
    err = capsys.readouterr().err
    assert rc == 0 and "skipped 1 bad image(s)" in err and bad in err, err
    skipped = _strict_json(tmp_path / "skip.json")
    assert skipped["skipped_images"] == [bad] and skipped["num_images"] == 2
    assert {p["image"] for p in _strict_json(tmp_path / "p.json")} == {f.name for f in Path(env["images"]).iterdir()
                                                                      if f.name != bad}  # fmt: skip
    doc = json.loads(Path(env["ann"]).read_text())  # the same set, written without that image
    gone = next(im["id"] for im in doc["images"] if im["file_name"] == bad)
    doc["images"] = [im for im in doc["images"] if im["id"] != gone]
    doc["annotations"] = [a for a in doc["annotations"] if a["image_id"] != gone]
    ann2 = _put(tmp_path / "without.json", json.dumps(doc))
    assert main(["eval", "--no-progress", "--checkpoint", env["ckpt"], "--ann", str(ann2), "--images", env["images"],
                 "--out", str(tmp_path / "without_m.json")]) == 0  # fmt: skip
    assert skipped["metrics"] == _strict_json(tmp_path / "without_m.json")["metrics"]


def test_box_outside_the_image_is_counted_in_a_warning(env, tmp_path, capsys):
    out, js = tmp_path / "p.png", tmp_path / "p.json"
    rc = main(["predict", env["img"], "--checkpoint", env["ckpt"], "--bbox", "5000,5000,40,80", "--bbox", "10,10,40,80",
               "--out", str(out), "--json", str(js)])  # fmt: skip
    err = capsys.readouterr().err
    assert rc == 0 and "1 of 2 box(es) lie wholly outside" in err and env["img"] in err, err
    assert len(_strict_json(js)["persons"]) == 2


def test_bench_keeps_every_finished_row_when_an_engine_dies(env, tmp_path):
    """A damaged artifact fails its own row; an engine killed by SIGSEGV fails its own row; the rest is kept."""
    import multiprocessing as mp

    js = tmp_path / "b.json"
    argv = ["bench", "--no-reference", "--no-accuracy", "--runs", "3", "--warmup", "0", "--threads", "1", "--quiet",
            "--json", str(js), "--artifacts", env["onnx"], env["tfl_trunc"], env["xml"]]  # fmt: skip
    victim = f"edgepose-bench-{Path(env['xml']).name}"
    result: dict = {}
    worker = threading.Thread(target=lambda: result.update(rc=main(argv)))
    worker.start()
    killed = False
    while worker.is_alive():  # a real SIGSEGV into the OpenVINO row's process, as a crashing engine gets
        for child in mp.active_children():
            if child.name == victim and not killed:
                os.kill(child.pid, signal.SIGSEGV)
                killed = True
        time.sleep(0.02)
    worker.join()
    assert killed and result["rc"] == 0
    rows = {r["path"]: r for r in _strict_json(js)["rows"]}
    assert rows[env["onnx"]]["status"] == "ok"
    assert rows[env["tfl_trunc"]]["status"] == "failed" and "truncated: " in rows[env["tfl_trunc"]]["error"]
    assert rows[env["xml"]]["status"] == "failed"
    assert rows[env["xml"]]["error"].startswith("engine crashed (signal 11, SIGSEGV) ")
    assert rows[env["xml"]]["error"].endswith(Path(env["xml"]).name)


def test_sigterm_during_convert_leaves_nothing(env, tmp_path):
    """SIGTERM (a batch system's kill) cleans up like Ctrl-C: no hidden work folder, no partial artifact."""
    out = tmp_path / "arts"
    proc = subprocess.Popen([sys.executable, "-m", "edgepose", "convert", "--target", "tflite", "--precision",
                             "fp32", "--no-reference-accuracy", "--checkpoint", env["ckpt"], "--out", str(out)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)  # fmt: skip
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline and proc.poll() is None:
        if out.is_dir() and any(p.name.startswith(".convert-") for p in out.iterdir()):
            break
        time.sleep(0.05)
    assert proc.poll() is None, proc.communicate()
    time.sleep(1.0)  # well inside the work: export, TensorFlow
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 128 + signal.SIGTERM, err[-2000:]
    assert err.strip().splitlines()[-1] == "edgepose: terminated (signal 15)" and "Traceback" not in err
    assert not out.exists() or not list(out.iterdir()), list(out.iterdir())


def test_the_hash_cache_is_not_fooled_by_a_same_size_rewrite(tmp_path):
    from edgepose.files import sha256_cached, sha256_of

    f = tmp_path / "a.bin"
    f.write_bytes(b"a" * 1000)
    first = sha256_cached(f)
    st = f.stat()
    f.write_bytes(b"b" * 1000)  # same size; mtime put back: only ctime and the bytes know
    os.utime(f, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert sha256_cached(f) == sha256_of(f) != first


def test_card_checkpoints_find_their_zoo_entry_hash_and_numbers():
    """The model cards' file names (and either README URL) select the card's entry; the re-release has its own."""
    from edgepose.runtimes.open import model_for_checkpoint
    from edgepose.spec import get_spec

    base = "https://download.openmmlab.com/mmpose/"
    for url, name, pub in [
        (base + "hand/mobilenetv2/mobilenetv2_onehand10k_256x256-55d34d7d_20201218.pth", "onehand10k_256x256",
         {"PCK@0.2": 0.984, "AUC": 0.526, "EPE": 29.52}),
        (base + "top_down/mobilenetv2/mobilenetv2_onehand10k_256x256-55d34d7d_20201218.pth", "onehand10k_256x256",
         {"PCK@0.2": 0.984, "AUC": 0.526, "EPE": 29.52}),
        ("mobilenetv2_panoptic_256x256-b9ec9b68_20201218.pth", "panoptic_256x256",
         {"PCKh@0.7": 0.998, "AUC": 0.684, "EPE": 10.09}),
        ("mobilenetv2_rhd2d_256x256-b3bca4bd_20210327.pth", "rhd_256x256",
         {"PCK@0.2": 0.977, "AUC": 0.873, "EPE": 3.14}),
        ("mobilenetv2_rhd2d_256x256-85fa02db_20210330.pth", "rhd_256x256_20210330",
         {"PCK@0.2": 0.985, "AUC": 0.883, "EPE": 2.80}),
    ]:  # fmt: skip
        for model in (None, "onehand10k_256x256" if "onehand" in url else None):
            spec = model_for_checkpoint(model, url)
            assert spec.name == name and spec.published == pub and spec.checkpoint_hash == url.split("-")[-1][:8]
    assert model_for_checkpoint("rhd_256x256", "my_finetuned.pth") is get_spec("rhd_256x256")
    assert model_for_checkpoint(None, None).name == "demo_coco_256x192"


def test_a_failed_final_move_takes_back_what_it_moved(tmp_path):
    """The moves out of convert's work folder: companions first, the main file last; when one fails, the files
    already moved go again, so no .bin or .json is left without its .xml."""
    from edgepose.converters.base import Converted
    from edgepose.converters.outputs import move_into_place

    from edgepose.errors import EdgeposeError

    work, out = _mkdir(tmp_path / "work"), _mkdir(tmp_path / "out")
    ok = Converted("onnx", "fp32", _put(work / "m_fp32.onnx", b"onnx"))
    _put(work / "m_fp32.onnx.json", "{}")
    xml = Converted("openvino", "fp32", _put(work / "m_fp32.xml", b"<net/>"), extra_files=[_put(work / "m_fp32.bin",
                    b"w")])  # fmt: skip
    _put(work / "m_fp32.xml.json", "{}")
    _mkdir(out / "m_fp32.xml" / "in-the-way")  # the last move (the main file) is blocked
    with pytest.raises(EdgeposeError, match=r"m_fp32\.xml: cannot move the artifact into place .* nothing written"):
        move_into_place([ok, xml], out)
    assert sorted(p.name for p in out.iterdir()) == ["m_fp32.xml"]  # only the obstacle is left


def test_bench_rows_still_run_where_no_interpreter_can_be_exec_d(env, tmp_path):
    """A qemu user-mode chroot (the ARM check) cannot exec the guest's Python: the fork server dies at start.
    Bench falls back to fork (the row is still isolated) and says so, instead of ending in BrokenPipeError."""
    js = tmp_path / "b.json"
    code = ("import multiprocessing, sys\nmultiprocessing.set_executable('/etc/hostname')  # not executable\n"
            "from edgepose.cli import main\nsys.exit(main(sys.argv[1:]))")  # fmt: skip
    proc = subprocess.run([sys.executable, "-c", code, "bench", "--no-reference", "--no-accuracy", "--runs", "2",
                           "--warmup", "0", "--threads", "1", "--json", str(js), "--artifacts", str(env["onnx"])],
                          capture_output=True, text=True, timeout=300)  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert "cannot start a row's process with forkserver" in proc.stderr and "Traceback" not in proc.stderr
    (row,) = _strict_json(js)["rows"]
    assert row["status"] == "ok" and row["path"] == str(env["onnx"])


# ------------------------------------------------------------------------------ round two (issue 22)
def _measured(argv: list[str], cwd: Path, env: dict | None = None) -> tuple[int, str, float, int, int]:
    """Run the CLI in a child: (exit status, stderr, seconds, peak RSS in MB and peak thread count, as sampled
    every 10 ms)."""
    proc = subprocess.Popen([sys.executable, "-m", "edgepose", *argv], cwd=cwd, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, env={**os.environ, **(env or {})})  # fmt: skip
    peak_threads, peak_kb, t0 = 0, 0, time.monotonic()
    err: list[bytes] = []
    reader = threading.Thread(target=lambda: err.append(proc.stderr.read()))
    reader.start()
    while True:  # VmHWM (peak RSS) and Threads from /proc, once the child runs edgepose (before its exec, the
        try:  # forked child shows pytest's own memory, which is also what ru_maxrss would report)
            if b"edgepose" in Path(f"/proc/{proc.pid}/cmdline").read_bytes():
                status = Path(f"/proc/{proc.pid}/status").read_text()
                peak_threads = max(peak_threads, int(status.split("Threads:")[1].split()[0]))
                peak_kb = max(peak_kb, int(status.split("VmHWM:")[1].split()[0]))
        except (OSError, IndexError, ValueError):
            pass
        pid, wstatus, _ = os.wait4(proc.pid, os.WNOHANG)
        if pid:
            break
        assert time.monotonic() - t0 < 240, argv
        time.sleep(0.01)
    proc.returncode = os.waitstatus_to_exitcode(wstatus)
    reader.join()
    return proc.returncode, err[0].decode(), time.monotonic() - t0, peak_kb // 1024, peak_threads


def test_huge_threads_and_image_bombs_are_refused_before_any_cost(env, tmp_path):
    """--threads 100000 and a 20000x20000 PNG: exit 2 in seconds, one line, no memory or threads spent."""
    for argv in (["predict", env["img"], "--out", str(tmp_path / "p.png"), "--artifact", env["onnx"], "--threads",
                  "100000"],
                 ["predict", env["bomb"], "--checkpoint", env["ckpt"], "--out", str(tmp_path / "p.png")]):  # fmt: skip
        rc, err, seconds, rss_mb, threads = _measured(argv, tmp_path)
        assert rc == 2 and "Traceback" not in err and err.strip().splitlines()[-1].startswith("edgepose"), err
        assert seconds < 60 and 10 <= rss_mb < 600 and 1 <= threads < 64, (argv, seconds, rss_mb, threads)
    assert sorted(p.name for p in tmp_path.iterdir()) == []


def test_threads_at_the_bound_run_with_that_many_threads_only(env, tmp_path):
    """The bound is the machine's CPUs: --threads at the bound runs, and the process stays near that many threads
    (ONNX Runtime's pool, OpenCV's, Python's), not thousands; one more is refused, naming the bound."""
    bound = os.cpu_count() or 1
    out = tmp_path / "p.png"
    argv = ["predict", env["img"], "--out", str(out), "--artifact", env["onnx"], "--threads"]
    rc, err, _, _, threads = _measured([*argv, str(bound)], tmp_path)
    assert rc == 0 and out.is_file(), err
    assert threads <= 3 * bound + 16, threads
    rc, err, _, _, _ = _measured([*argv, str(bound + 1)], tmp_path, {"EDGEPOSE_MAX_THREADS": ""})
    assert rc == 2 and f"{bound + 1} is more threads than the {bound} CPU(s)" in err, err
    rc, err, _, _, _ = _measured([*argv, str(bound + 1)], tmp_path, {"EDGEPOSE_MAX_THREADS": str(bound + 1)})
    assert rc == 0, err  # lifted on purpose


def test_an_image_over_the_pixel_limit_reads_when_lifted_and_says_its_cost(tmp_path, monkeypatch, caplog):
    from edgepose.errors import EdgeposeError
    from edgepose.images import MAX_IMAGE_PIXELS, read_image

    big = png_bomb(tmp_path / "big.png", 10_001, MAX_IMAGE_PIXELS // 10_000)  # just over the default limit
    with pytest.raises(EdgeposeError, match=r"big\.png: image declares 10001x10000 pixels .* set "
                                            r"EDGEPOSE_MAX_IMAGE_PIXELS"):  # fmt: skip
        read_image(big)
    monkeypatch.setenv("EDGEPOSE_MAX_IMAGE_PIXELS", "0")
    with caplog.at_level("WARNING"):
        img = read_image(big)
    assert img.shape == (10_000, 10_001, 3) and not img.any()  # what the file holds: black
    assert "10001x10000 image (100 megapixels): decoding it takes about 0.6 GB" in caplog.text
    monkeypatch.setenv("EDGEPOSE_MAX_IMAGE_PIXELS", "1000")  # a lower limit refuses a small image too
    small = png_bomb(tmp_path / "small.png", 40, 30)
    with pytest.raises(EdgeposeError, match="40x30 pixels"):
        read_image(small)


def test_a_failed_download_is_never_cached(env, tmp_path, monkeypatch, capsys):
    """A server that announces the whole checkpoint and sends a tenth: refused, and nothing stays in the cache
    (no file, no .sha256, no empty folder), so the next run, once the server is fixed, downloads and works."""
    import http.server

    whole = Path(env["ckpt"]).read_bytes()
    cut = {"on": True}

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802 - http.server's name
            self.send_response(200)
            self.send_header("Content-Length", str(len(whole)))
            self.end_headers()
            self.wfile.write(whole[: len(whole) // 10] if cut["on"] else whole)

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    monkeypatch.setenv("EDGEPOSE_CACHE", str(tmp_path / "cache"))
    cache = tmp_path / "cache" / "checkpoints"
    url = f"http://127.0.0.1:{server.server_address[1]}/m/demo.pth"
    argv = ["predict", env["img"], "--bbox", "10,10,40,80", "--out", str(tmp_path / "p.png"), "--checkpoint", url]
    try:
        assert main(argv) == 2
        err = capsys.readouterr().err
        assert err.strip().splitlines()[-1] == f"edgepose: error: {url}: damaged or truncated PyTorch checkpoint " \
            "(its zip archive cannot be read)", err  # fmt: skip
        assert not cache.exists() or not list(cache.rglob("*")), sorted(cache.rglob("*"))
        cut["on"] = False  # the server is fixed
        assert main(argv) == 0, capsys.readouterr().err
        cached = sorted(p.name for p in cache.rglob("*") if p.is_file())
        assert cached == ["demo.pth", "demo.pth.sha256"]
    finally:
        server.shutdown()
    local = f"file://{env['ck_code']}"  # a refused pickle given as a file:// URL: refused, never copied
    assert main([*argv[:-1], local]) == 2
    assert "refused: it holds Python objects" in capsys.readouterr().err
    assert sorted(p.name for p in cache.rglob("*") if p.is_file()) == cached


def test_synth_killed_leaves_no_half_set_and_a_rerun_replaces_it(tmp_path):
    """SIGKILL mid-way: no images/ without annotations.json under the final names; the next run removes the dead
    run's staging folder; a smaller re-run replaces the images of a larger one (calibrate would take them)."""
    out = tmp_path / "s"
    proc = subprocess.Popen([sys.executable, "-m", "edgepose", "synth", "--num-images", "5000", "--out", str(out)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        staged = list(out.glob(".synth-*/images/*.jpg")) if out.is_dir() else []
        if len(staged) >= 3:
            break
        time.sleep(0.05)
    proc.kill()
    proc.wait()
    assert [p.name for p in out.iterdir() if not p.name.startswith(".synth-")] == []  # nothing under final names
    for n in (3, 2):
        assert main(["synth", "--num-images", str(n), "--out", str(out)]) == 0
        assert sorted(p.name for p in out.iterdir()) == ["annotations.json", "images"]  # the dead run's folder too
        assert len(list((out / "images").iterdir())) == n == len(json.loads((out / "annotations.json").read_text())
                                                                  ["images"])  # fmt: skip


def test_convert_removes_the_work_folder_of_a_killed_run(env, tmp_path):
    """A convert killed with SIGKILL runs no cleanup: its hidden work folder (a 38 MB export.onnx) stays; the
    next convert into that folder removes it. A live process's folder is left alone."""
    from edgepose.files import staging_dir

    out = tmp_path / "arts"
    out.mkdir()
    code = ("import os, sys\nfrom edgepose.files import staging_dir\nd = staging_dir(sys.argv[1], 'convert')\n"
            "(d / 'export.onnx').write_bytes(b'x' * 1000)\nos.kill(os.getpid(), 9)")  # fmt: skip
    killed = subprocess.run([sys.executable, "-c", code, str(out)], capture_output=True)
    assert killed.returncode == -signal.SIGKILL
    (dead,) = out.glob(".convert-*")
    live = staging_dir(out, "convert")  # this process's: alive
    assert main(["convert", "--target", "onnx", "--precision", "fp32", "--no-reference-accuracy", "--quiet",
                 "--checkpoint", env["ckpt"], "--out", str(out)]) == 0  # fmt: skip
    assert not dead.exists() and live.is_dir()
    live.rmdir()
    assert sorted(p.name for p in out.iterdir()) == [f"{STEM}_fp32.onnx", f"{STEM}_fp32.onnx.json"]


def test_a_ray_worker_keeps_no_copy_of_the_model(env):
    """scale.Worker (the Ray actor's class, run here without Ray) writes the model's files to a temp folder only
    while its engine loads them: Ray ends actors with SIGKILL, which no TemporaryDirectory survives cleanly."""
    import tempfile

    from edgepose.scale import Worker, model_files
    from edgepose.spec import get_spec

    def ours() -> set[str]:
        return {p.name for p in Path(tempfile.gettempdir()).glob(".edgepose-ray-*")}

    before = ours()
    w = Worker(get_spec(STEM), model_files(env["onnx"]), 1, "cpu", False, True, "default", 4, 1)
    assert ours() == before
    heat = w.rt(np.zeros((1, 3, 256, 192), np.float32))
    assert heat.shape == (1, 17, 64, 48) and np.isfinite(heat).all()  # the engine runs without its files


# ------------------------------------------------------------------------ issue 22: bench, cases 10 and 15
@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_an_interrupted_bench_writes_the_rows_that_finished(env, tmp_path, sig):
    """Case 10: Ctrl-C or SIGTERM after the first row has finished leaves that row (and only finished rows) in the
    --json and --markdown asked for, exits 128 + signal with one line and no traceback, and leaves no temp."""
    js, md, tmp = tmp_path / "b.json", tmp_path / "b.md", _mkdir(tmp_path / "tmp")
    arts = [env["onnx"], env["xml"], env["tflite"]]
    proc = subprocess.Popen([sys.executable, "-m", "edgepose", "bench", "--no-reference", "--no-accuracy", "--runs",
                             "100", "--warmup", "0", "--threads", "1", "--json", str(js), "--markdown", str(md),
                             "--artifacts", *arts], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "TMPDIR": str(tmp)}, preexec_fn=sigint_as_default)  # fmt: skip
    said: list[str] = []
    first = f"bench: [1/3] {Path(arts[0]).name}: p50 "
    for line in proc.stderr:  # the first row's summary line: it has finished and is in the report
        said.append(line)
        if line.startswith(first):
            proc.send_signal(sig)
            break
    out, rest = proc.communicate(timeout=120)
    err = "".join(said) + rest
    assert any(ln.startswith(first) for ln in said), err[-3000:]
    assert proc.returncode == 128 + sig, (proc.returncode, err[-3000:])
    assert "Traceback" not in err, err[-3000:]
    last = err.strip().splitlines()[-1]
    assert last == ("edgepose: interrupted" if sig == signal.SIGINT else f"edgepose: terminated (signal {sig})")
    assert [ln for ln in err.splitlines() if "edgepose: " in ln and ("error" in ln or "interrupted" in ln
            or "terminated" in ln)] == [last]  # fmt: skip
    doc = _strict_json(js)
    rows = doc["rows"]
    assert 1 <= len(rows) < len(arts) and rows[0]["path"] == arts[0] and rows[0]["status"] == "ok", rows
    assert rows[0]["model"]["n"] == 100 and all(r["status"] == "ok" for r in rows)  # no half-measured row
    assert any("interrupted" in n and f"after {len(rows)} row(s)" in n for n in doc["notes"]), doc["notes"]
    text = md.read_text()
    assert Path(arts[0]).name in text and Path(arts[-1]).name not in text
    assert Path(arts[0]).name in out  # the console table too
    assert not [p for p in tmp.iterdir() if p.name.startswith("edgepose-")], list(tmp.iterdir())
    assert not [p for p in tmp_path.iterdir() if p.name.startswith((".b.", "b.json.", "b.md."))]  # no temp writes


@pytest.mark.parametrize("limit", [[], ["--limit", "2"]], ids=["whole", "limit"])
def test_bench_refuses_bad_annotations_up_front_naming_the_users_file(env, tmp_path, capsys, limit):
    """Case 15: ``bench --ann`` with NaN keypoints fails before any row runs, with eval's own line naming the
    user's file, never the temporary ``--limit`` subset of it; nothing is written."""
    js = tmp_path / "b.json"
    rc = main(["bench", "--artifacts", env["onnx"], "--no-reference", "--runs", "1", "--warmup", "0", "--ann",
               env["ann_nan"], "--images", env["images"], "--json", str(js), *limit])  # fmt: skip
    err = capsys.readouterr().err
    lines = [ln for ln in err.strip().splitlines() if ln.strip()]
    assert rc == 2 and "Traceback" not in err, err[-2000:]
    assert [ln for ln in lines if ": error: " in ln] == [lines[-1]], err[-2000:]
    assert "[1/1]" not in err  # refused up front: no row started
    assert "subset_" not in err and "edgepose-bench-" not in err
    assert main(["eval", "--no-progress", "--checkpoint", env["ckpt"], "--ann", env["ann_nan"], "--images",
                 env["images"], "--out", str(tmp_path / "m.json")]) == 2  # fmt: skip
    eval_line = capsys.readouterr().err.strip().splitlines()[-1]
    assert lines[-1] == eval_line and env["ann_nan"] in eval_line and "holds NaN or infinity" in eval_line
    assert not list(tmp_path.iterdir())
