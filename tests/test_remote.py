"""``edgepose bench --remote`` against a real OpenSSH server on 127.0.0.1 (tests/sshd.py).

The remote is this machine reached through sshd: its Python is given with ``--remote-python`` (this test
environment, or a wrapper that hides onnxruntime/openvino like a lite-only Pi), so no test downloads anything
except the slow one that checks the real venv install. The ARM case (slow) reaches the emulated aarch64 userland
of tools/arm_rootfs.py through the same sshd, with a wrapper as the remote's Python that enters it.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from edgepose.bench.machine import decode_pi_throttled
from edgepose.bench.remote.report import emulation, merge_remote, userland_arch
from edgepose.bench.remote.ssh import Ssh, parse_target
from edgepose.errors import EdgeposeError

from . import sshd as sshd_mod
from .helpers import REPO, sigint_as_default

MODEL = "demo_coco_256x192"
FAST = ["--runs", "3", "--warmup", "1", "--threads", "1"]


# ------------------------------------------------------------------------------------------ units
@pytest.mark.parametrize("text, dest, port", [
    ("ssh://pi@raspberrypi.local:2222", "pi@raspberrypi.local", 2222),
    ("pi@10.0.0.7", "pi@10.0.0.7", None),
    ("ssh://root@[::1]:22/", "root@::1", 22),
    ("raspi", "raspi", None),
])  # fmt: skip
def test_parse_target(text, dest, port):
    t = parse_target(text)
    assert (t.destination, t.port, str(t)) == (dest, port, text)


@pytest.mark.parametrize("text", ["pi@host:99999", "pi@host:ssh", "a b@host", "ssh://", "pi@"])
def test_parse_target_rejects(text):
    with pytest.raises(EdgeposeError, match="--remote"):
        parse_target(text)


def test_pi_throttle_word_decoded_as_documented():
    # Raspberry Pi documentation of `vcgencmd get_throttled`: bit 0 under-voltage, 2 throttled, 16/18 "has occurred"
    assert decode_pi_throttled(0x50005) == ["under-voltage now", "throttled now", "under-voltage has occurred",
                                            "throttling has occurred"]  # fmt: skip
    assert decode_pi_throttled(0) == [] and decode_pi_throttled(0x80000) == ["soft temperature limit has occurred"]


def test_emulation_is_named_from_kernel_and_userland():
    qemu = {"machine": "aarch64", "bits": 64, "kernel_machine": "x86_64", "qemu": ["qemu-aarch64-static"]}
    assert emulation(qemu) == "qemu user-mode emulation on a x86_64 host: timings are not ARM speed"
    assert emulation({"machine": "aarch64", "bits": 64, "kernel_machine": "aarch64"}) is None  # a real Pi
    pi32 = {"machine": "aarch64", "bits": 32, "kernel_machine": "aarch64"}  # 32-bit Pi OS on the 64-bit kernel
    assert userland_arch(pi32) == "armv7l" and emulation(pi32) is None


def test_merge_gives_no_deltas_for_other_data():
    local = {"metric": "AP", "machine": {"cpu": "x"}, "config": {"dataset": {"ann_sha256": "a" * 64},
             "flip_test": True, "reference_accuracy": {"value": 0.7, "source": "measured"}}}  # fmt: skip
    row = {"name": "m_int8.tflite", "status": "ok", "precision": "int8", "flags": [],
           "accuracy": {"metrics": {"AP": 0.69}}}  # fmt: skip
    remote = {"machine": {"arch": "aarch64"}, "config": {"dataset": {"ann_sha256": "b" * 64}, "flip_test": True},
              "rows": [json.loads(json.dumps(row))]}  # fmt: skip
    entry = {"notes": [], "rows": []}
    merge_remote(entry, remote, local, type("C", (), {"max_drop": None}), "pi@host")
    assert not entry["data_identical"] and "delta" not in entry["rows"][0]["accuracy"]
    assert any("other data" in n for n in entry["notes"])
    remote["config"]["dataset"]["ann_sha256"] = "a" * 64
    entry = {"notes": [], "rows": []}
    merge_remote(entry, remote, local, type("C", (), {"max_drop": None}), "pi@host")
    assert entry["rows"][0]["accuracy"]["delta"] == pytest.approx(-0.01) and entry["rows"][0]["host"] == "pi@host"


# ------------------------------------------------------------------------------------- real sshd
@pytest.fixture(scope="module")
def sshd(tmp_path_factory):
    why = sshd_mod.unavailable()
    if why:
        pytest.skip(why)
    with sshd_mod.TestSshd(tmp_path_factory.mktemp("sshd")) as srv:
        yield srv


@pytest.fixture(scope="module")
def arts(demo_artifacts, tmp_path_factory) -> Path:
    """INT8 TFLite and FP32 ONNX of the shared demo conversion (with sidecars), in a folder of their own."""
    d = tmp_path_factory.mktemp("remote_arts")
    for name in (f"{MODEL}_int8.tflite", f"{MODEL}_fp32.onnx"):
        for f in demo_artifacts.glob(name + "*"):
            shutil.copy2(f, d / f.name)
    return d


def blocking_python(folder: Path, modules: tuple[str, ...], condition: str = "true", prefix: str = "") -> Path:
    """A wrapper around this test's Python in which ``modules`` cannot be found (a sitecustomize import blocker)
    when the shell ``condition`` holds; ``prefix`` runs it under another command (``setarch linux32``)."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "sitecustomize.py").write_text(
        "import sys, importlib.abc\n"
        "class _Block(importlib.abc.MetaPathFinder):\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        f"        if name.split('.')[0] in {modules!r}:\n"
        "            raise ModuleNotFoundError(name)\n"
        "sys.meta_path.insert(0, _Block())\n"
    )
    py = folder / "python"
    env = f"if {condition}; then export PYTHONPATH={folder}; fi"
    py.write_text(f'#!/bin/sh\n{env}\nexec {prefix} {sys.executable} "$@"\n')
    py.chmod(0o755)
    return py


@pytest.fixture(scope="module")
def lite_python(tmp_path_factory) -> Path:
    """This test's Python; in a session that has EDGEPOSE_TEST_LITE (the alias's, see tests/sshd.py) it looks
    like a lite-only Pi: onnxruntime and openvino cannot be found."""
    return blocking_python(tmp_path_factory.mktemp("litepy"), ("onnxruntime", "openvino"),
                           '[ -n "$EDGEPOSE_TEST_LITE" ]')  # fmt: skip


def edgepose(*argv: str, timeout: float = 600) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "edgepose", *argv], cwd=REPO, capture_output=True, text=True,
                          timeout=timeout)  # fmt: skip


def remote_args(srv, rdir: Path, python: str | Path | None = sys.executable) -> list[str]:
    out = ["--ssh-config", str(srv.config), "--remote-dir", str(rdir)]
    return out + (["--remote-python", str(python)] if python else [])


def run_dirs(rdir: Path) -> list[Path]:
    return sorted(rdir.glob("run-*")) if rdir.exists() else []


def test_remote_bench_matches_local(sshd, arts, lite_python, demo_checkpoint, tmp_path):
    """Two hosts in one table: the ssh config alias (a lite-only Python there) and an ssh:// URL (every engine).
    Accuracy equal to the local rows', deltas against the local reference, only the subset's images sent and
    checked by sha256, the run folders removed."""
    rdir, out = tmp_path / "remote", tmp_path / "bench.json"
    url = f"ssh://{sshd.user}@127.0.0.1:{sshd.port}"
    r = edgepose("bench", "--model", MODEL, "--artifacts", str(arts), "--reference", str(demo_checkpoint),
                 "--limit", "2", *FAST, "--json", str(out), "--markdown", str(tmp_path / "bench.md"), "--quiet",
                 "--remote", sshd.alias, "--remote", url, *remote_args(sshd, rdir, lite_python))  # fmt: skip
    assert r.returncode == 0, r.stderr[-3000:]
    rep = json.loads(out.read_text())
    local = {row["name"]: row for row in rep["rows"]}
    ref = next(row for row in rep["rows"] if row["reference"])["accuracy"]["value"]
    assert [e["status"] for e in rep["remotes"]] == ["ok", "ok"], [e["error"] for e in rep["remotes"]]
    lite, full = rep["remotes"]
    int8, onnx = f"{MODEL}_int8.tflite", f"{MODEL}_fp32.onnx"
    assert [row["name"] for row in lite["rows"]] == [int8]  # no onnxruntime there: the ONNX file is not sent
    assert lite["skipped"] == [{"artifact": onnx, "why": "no onnxruntime importable on the remote"}]
    assert sorted(row["name"] for row in full["rows"]) == sorted([int8, onnx])
    n_images = len(_first_images(2))  # the subset's images, and nothing else of the 300
    for e in rep["remotes"]:
        assert e["data_identical"] and e["config"]["dataset"]["ann_sha256"] == rep["config"]["dataset"]["ann_sha256"]
        assert e["machine"]["arch"] == "x86_64" and e["machine"]["emulation"] is None and e["label"] == "x86_64"
        n_art = sum(len(list(arts.glob(row["name"] + "*"))) for row in e["rows"])  # artifact + sidecar
        assert e["sent"]["files"] == e["sent"]["sha256_verified"] == n_art + 1 + n_images  # + the annotation file
        for row in e["rows"]:
            mine = local[row["name"]]
            assert row["status"] == "ok" and row["host"] == e["target"]
            assert row["accuracy"]["metrics"] == mine["accuracy"]["metrics"]  # same bytes in, same numbers out
            assert row["accuracy"]["delta"] == pytest.approx(row["accuracy"]["value"] - ref, abs=1e-12)
            assert 0 < row["model"]["p50_ms"] <= row["model"]["p99_ms"] and row["model"]["n"] == 3
        assert Path(e["cleaned"]).parent == rdir
    assert run_dirs(rdir) == [] and not list(rdir.glob("venv-*"))  # cleaned; --remote-python: no venv made
    table = r.stdout[r.stdout.index("Per device"):]
    assert f"[2] {sshd.alias}:" in table and f"[3] {url}:" in table
    cells = next(ln for ln in table.splitlines() if ln.startswith(int8)).split()[1:]
    want = [local[int8], lite["rows"][0], _row(full, int8)]
    assert cells == [x for w in want for x in (f"{w['model']['p50_ms']:.2f}", f"{w['accuracy']['delta']:+.4f}")]
    assert next(ln for ln in table.splitlines() if ln.startswith(onnx)).split()[3:5] == ["not", "sent"]
    assert "### Per device" in (tmp_path / "bench.md").read_text()


def test_remote_frames_bench_ships_the_detector(sshd, arts, detector_onnx, tmp_path):
    """``bench --frames --remote``: the detector artifact travels beside the pose artifacts (sha256-checked), the
    device runs the frame bench and its table comes back per host, beside this machine's."""
    rdir, out = tmp_path / "remote", tmp_path / "bench.json"
    onnx = arts / f"{MODEL}_fp32.onnx"
    r = edgepose("bench", "--no-accuracy", "--no-reference", "--artifacts", str(onnx), *FAST, "--quiet",
                 "--frames", "--detector", str(detector_onnx), "--persons", "1,2", "--det-every", "2",
                 "--frame-count", "3", "--json", str(out), "--remote", sshd.alias,
                 *remote_args(sshd, rdir))  # fmt: skip
    assert r.returncode == 0, r.stderr[-3000:]
    rep = json.loads(out.read_text())
    [e] = rep["remotes"]
    assert e["status"] == "ok", e["error"]
    assert e["sent"]["files"] == e["sent"]["sha256_verified"] == 4  # pose + detector, each with its sidecar
    for where in (rep["frames"], e["frames"]):
        [row] = where["rows"]
        assert row["pose"] == onnx.name and row["detector"] == detector_onnx.name and row["note"] == ""
        assert [b["persons"] for b in row["batching"]] == [1, 2] and [k["det_every"] for k in row["loop"]] == [1, 2]
        assert row["loop"][0]["detections"] == 3
    assert f"Frame loop on {sshd.alias}" in r.stdout
    assert run_dirs(rdir) == []


def _row(entry, name):
    return next(r for r in entry["rows"] if r["name"] == name)


def _first_images(n: int) -> set[str]:
    """The file names of the first ``n`` images of the synthetic val split that have a person (the bench's data)."""
    from edgepose.synthetic import ensure_split

    doc = json.loads(Path(ensure_split("val")[0]).read_text())
    keep = {im["id"]: im["file_name"] for im in doc["images"][:n]}
    return {keep[a["image_id"]] for a in doc["annotations"] if a["image_id"] in keep}


def test_malformed_remote_fails_before_the_local_bench():
    r = edgepose("bench", "--remote", "pi@raspi:99999", "--artifacts", "/nonexistent")
    assert r.returncode == 2 and r.stderr.strip().splitlines() == [
        "edgepose: error: --remote pi@raspi:99999: port '99999' is not a number from 1 to 65535"]


# ------------------------------------------------------------------------------------- failures
CHEAP = ["--model", MODEL, "--no-reference", "--no-accuracy", "--runs", "1", "--warmup", "0", "--threads", "1"]


def _errors(stderr: str) -> list[str]:
    return [ln for ln in stderr.splitlines() if ln.startswith("edgepose: warning: ")]


def test_unreachable_host_and_refused_key_keep_the_rows_that_finished(sshd, arts, tmp_path):
    """A good host first, then a closed port and a key the server does not know: one line each, exit 1, the
    local rows and the first host's rows in the report."""
    rdir, out = tmp_path / "remote", tmp_path / "b.json"
    closed = sshd_mod.free_port()
    r = edgepose("bench", *CHEAP, "--artifacts", str(arts / f"{MODEL}_int8.tflite"), "--json", str(out), "--quiet",
                 "--remote", sshd.alias, "--remote", f"{sshd.user}@127.0.0.1:{closed}",
                 "--remote", sshd_mod.BAD_KEY_ALIAS, *remote_args(sshd, rdir))  # fmt: skip
    assert r.returncode == 1, r.stderr[-2000:]
    errors = _errors(r.stderr)
    assert errors == [
        f"edgepose: warning: {sshd.user}@127.0.0.1:{closed}: unreachable (ssh: connect to host 127.0.0.1 port "
        f"{closed}: Connection refused)",
        f"edgepose: warning: {sshd_mod.BAD_KEY_ALIAS}: the key was refused (ssh runs with BatchMode=yes: no password "
        "prompts; load the key with ssh-add or name it with IdentityFile in ~/.ssh/config) "
        f"({sshd.user}@127.0.0.1: Permission denied (publickey).)",
    ]  # fmt: skip
    rep = json.loads(out.read_text())
    assert [row["status"] for row in rep["rows"]] == ["ok"]
    assert [e["status"] for e in rep["remotes"]] == ["ok", "failed", "failed"]
    assert [row["status"] for row in rep["remotes"][0]["rows"]] == ["ok"]
    assert [e["error"] for e in rep["remotes"][1:]] == [e[len("edgepose: warning: "):] for e in errors]
    assert run_dirs(rdir) == []


def test_remote_without_python(sshd, arts, tmp_path):
    rdir = tmp_path / "remote"
    r = edgepose("bench", *CHEAP, "--artifacts", str(arts / f"{MODEL}_int8.tflite"), "--quiet",
                 "--remote", sshd.alias, *remote_args(sshd, rdir, "/nonexistent/bin/python3"))  # fmt: skip
    assert r.returncode == 1
    assert _errors(r.stderr) == [f"edgepose: warning: {sshd.alias}: no Python at '/nonexistent/bin/python3' on the "
                                 "remote (install python3 >= 3.9, or check --remote-python)"]  # fmt: skip
    assert rdir.is_dir() and run_dirs(rdir) == []  # the run folder made by the probe is gone again


def test_remote_python_without_edgepose(sshd, arts, tmp_path):
    bare = tmp_path / "bare"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(bare)], check=True)  # no edgepose in it
    rdir = tmp_path / "remote"
    r = edgepose("bench", *CHEAP, "--artifacts", str(arts / f"{MODEL}_int8.tflite"), "--quiet",
                 "--remote", sshd.alias, *remote_args(sshd, rdir, bare / "bin" / "python"))  # fmt: skip
    assert r.returncode == 1
    assert _errors(r.stderr) == [f"edgepose: warning: {sshd.alias}: no edgepose in the Python at {bare}/bin/python "
                                 "(install edgepose[lite] there, or leave out --remote-python for a venv that "
                                 "edgepose makes)"]  # fmt: skip
    assert run_dirs(rdir) == []


def test_remote_32bit_userland_without_litert(sshd, arts, tmp_path):
    """A userland ai-edge-litert has no wheel for (here: i686 through `setarch linux32`, as armv7l on a 32-bit Pi
    OS), with no LiteRT of its own: one line saying so, nothing copied."""
    if shutil.which("setarch") is None or subprocess.run(["setarch", "linux32", "true"]).returncode != 0:
        pytest.skip("setarch linux32 is not available here")
    py = blocking_python(tmp_path / "py32", ("ai_edge_litert", "tflite_runtime"), prefix="setarch linux32")
    rdir = tmp_path / "remote"
    r = edgepose("bench", *CHEAP, "--artifacts", str(arts / f"{MODEL}_int8.tflite"), "--quiet",
                 "--remote", sshd.alias, *remote_args(sshd, rdir, py))  # fmt: skip
    assert r.returncode == 1
    assert _errors(r.stderr) == [f"edgepose: warning: {sshd.alias}: i686 userland: ai-edge-litert publishes no wheel "
                                 "for it, so no .tflite can run there; install a 64-bit OS (Raspberry Pi OS 64-bit) "
                                 "or see docs/raspberry-pi.md"]  # fmt: skip
    assert run_dirs(rdir) == []


def test_damaged_copy_is_caught_by_the_sha256_check(sshd, arts, tmp_path):
    """A remote Python that changes a byte of the copied artifact before hashing it: the check names the file."""
    py = tmp_path / "damaging-python"
    py.write_text('#!/bin/sh\n[ "$3" = sha256 ] && printf x >> "$4/artifacts/' + f'{MODEL}_int8.tflite"\n'
                  f'exec {sys.executable} "$@"\n')  # fmt: skip
    py.chmod(0o755)
    rdir = tmp_path / "remote"
    r = edgepose("bench", *CHEAP, "--artifacts", str(arts / f"{MODEL}_int8.tflite"), "--quiet",
                 "--remote", sshd.alias, *remote_args(sshd, rdir, py))  # fmt: skip
    assert r.returncode == 1
    assert _errors(r.stderr) == [f"edgepose: warning: {sshd.alias}: artifacts/{MODEL}_int8.tflite arrived damaged "
                                 "(sha256 differs)"]  # fmt: skip
    assert run_dirs(rdir) == []


@pytest.fixture
def tiny_disk(tmp_path):
    """A 1 MiB tmpfs as the remote's folder (root only; skipped where mounting is not permitted)."""
    d = tmp_path / "tiny"
    d.mkdir()
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "edgepose-test", str(d)], capture_output=True,
                       text=True)  # fmt: skip
    if r.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {r.stderr.strip()}")
    try:
        yield d
    finally:
        subprocess.run(["umount", str(d)], capture_output=True)


def test_remote_disk_full(sshd, arts, tmp_path, tiny_disk):
    """The free-space check stops before copying; a copy that fills the disk anyway gives the same kind of line."""
    r = edgepose("bench", *CHEAP, "--artifacts", str(arts / f"{MODEL}_int8.tflite"), "--quiet",
                 "--remote", sshd.alias, *remote_args(sshd, tiny_disk))  # fmt: skip
    assert r.returncode == 1
    (line,) = _errors(r.stderr)
    size = (arts / f"{MODEL}_int8.tflite").stat().st_size + (arts / f"{MODEL}_int8.tflite.json").stat().st_size
    assert line == (f"edgepose: warning: {sshd.alias}: not enough free disk in {tiny_disk}: 1.0 MB free, about "
                    f"{(size + 16 * 2**20) / 2**20:.1f} MB needed")  # fmt: skip
    assert run_dirs(tiny_disk) == []
    big = tmp_path / "big.bin"
    big.write_bytes(os.urandom(3 * 2**20))
    full = r"no space left on the remote disk during the copy \((No space left|Wrote only)"
    with pytest.raises(EdgeposeError, match=full):
        Ssh(parse_target(sshd.alias), str(sshd.config)).push_tar([(big, "big.bin")], str(tiny_disk), "the copy", 60)


def _start_and_wait_for_remote_pid(sshd, arts, rdir: Path, out: Path) -> tuple[subprocess.Popen, int]:
    """Start a bench whose remote part runs long enough, and return once the remote bench's pid is known."""
    proc = subprocess.Popen([sys.executable, "-m", "edgepose", "bench", *CHEAP[:-6], "--runs", "3", "--warmup", "1",
                             "--threads", "1", "--artifacts", str(arts / f"{MODEL}_int8.tflite"), "--json", str(out),
                             "--quiet", "--remote", sshd.alias, *remote_args(sshd, rdir)], cwd=REPO,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            preexec_fn=sigint_as_default)  # fmt: skip
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and proc.poll() is None:
        pids = [p for d in run_dirs(rdir) if (p := d / "pid").is_file() and p.read_text().strip()]
        if pids:
            return proc, int(pids[0].read_text())
        time.sleep(0.02)
    proc.kill()
    raise AssertionError(f"the remote bench never started: {proc.communicate()[1][-2000:]}")


def _gone(pid: int, seconds: float = 10) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            return True
        if state == "Z":
            return True
        time.sleep(0.05)
    return False


def test_remote_process_killed(sshd, arts, tmp_path):
    rdir, out = tmp_path / "remote", tmp_path / "b.json"
    proc, pid = _start_and_wait_for_remote_pid(sshd, arts, rdir, out)
    os.kill(pid, signal.SIGKILL)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 1, err[-2000:]
    assert _errors(err) == [f"edgepose: warning: {sshd.alias}: the remote bench was killed by signal 9 (SIGKILL)"]
    rep = json.loads(out.read_text())
    assert [row["status"] for row in rep["rows"]] == ["ok"] and rep["remotes"][0]["status"] == "failed"
    assert run_dirs(rdir) == []


def test_ctrl_c_stops_and_cleans_the_remote(sshd, arts, tmp_path):
    rdir, out = tmp_path / "remote", tmp_path / "b.json"
    proc, pid = _start_and_wait_for_remote_pid(sshd, arts, rdir, out)
    proc.send_signal(signal.SIGINT)  # at once: a 0.3 s pause let an idle machine finish the 3 runs first
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130 and err.strip().splitlines()[-1] == "edgepose: interrupted", err[-2000:]
    assert _gone(pid), f"the remote bench (pid {pid}) still runs"
    assert run_dirs(rdir) == []
    rep = json.loads(out.read_text())  # what finished is written
    assert [row["status"] for row in rep["rows"]] == ["ok"] and "interrupted" in rep["remotes"][0]["error"]
    assert any("interrupted" in n for n in rep["notes"])


# ------------------------------------------------------------------------------------------- slow
@pytest.mark.slow
def test_remote_venv_install_path(sshd, arts, tmp_path):
    """No --remote-python: a venv is made there and edgepose[lite] installed from a wheel of this checkout (its
    dependencies from the package index, pip's cache helps); the next run reuses it. About a minute."""
    from edgepose.bench.remote.env import source_stamp

    rdir, out = tmp_path / "remote", tmp_path / "b.json"
    argv = ["bench", *CHEAP, "--artifacts", str(arts), "--json", str(out), "--remote", sshd.alias,
            *remote_args(sshd, rdir, None)]  # fmt: skip
    r = edgepose(*argv, timeout=1800)
    if r.returncode != 0 and "pip install" in r.stderr and "No matching distribution" in r.stderr:
        pytest.skip(f"the package index is not reachable from here: {_errors(r.stderr)}")
    assert r.returncode == 0, r.stderr[-3000:]
    (venv,) = rdir.glob("venv-*")
    assert venv.name == f"venv-0.1.0-py{e_python(venv)}"
    assert (venv / ".edgepose-stamp").read_text().strip() == source_stamp()
    rep = json.loads(out.read_text())
    (e,) = rep["remotes"]
    assert e["status"] == "ok" and e["environment"] == f"venv {venv}/bin/python"
    assert [row["name"] for row in e["rows"]] == [f"{MODEL}_int8.tflite"] and e["rows"][0]["status"] == "ok"
    assert e["skipped"][0]["artifact"] == f"{MODEL}_fp32.onnx"  # the lite group has no onnxruntime
    assert e["machine"]["versions"]["edgepose"] == "0.1.0" and "ai-edge-litert" in e["machine"]["versions"]
    r2 = edgepose(*argv, timeout=600)
    assert r2.returncode == 0 and f"reusing {venv}" in r2.stderr and "pip install" not in r2.stderr
    assert run_dirs(rdir) == []


def e_python(venv: Path) -> str:
    """The X.Y of the Python the venv was made with (its pyvenv.cfg)."""
    cfg = dict(ln.split(" = ", 1) for ln in (venv / "pyvenv.cfg").read_text().splitlines() if " = " in ln)
    return ".".join(cfg["version"].split(".")[:2])


def _tool(name: str):
    import importlib

    sys.path.insert(0, str(REPO / "tools"))
    try:
        return importlib.import_module(name)
    finally:
        sys.path.remove(str(REPO / "tools"))


ARM_PYTHON = """#!/bin/sh
# The remote's Python for this test: the emulated aarch64 venv of the cached rootfs (tools/arm_rootfs.py),
# entered with chroot + qemu-aarch64-static; paths under the rootfs (the run folder) are passed as it sees them.
R={rootfs}
for a do
  shift
  case "$a" in "$R"/*) a="${{a#"$R"}}";; esac
  set -- "$@" "$a"
done
exec chroot "$R" /usr/bin/qemu-aarch64-static -cpu cortex-a76 {venv}/bin/python "$@"
"""


@pytest.mark.slow
@pytest.mark.background("after-arm")  # shares the emulated userland (a lock) with the ARM check job: runs after it
def test_remote_bench_on_emulated_arm64(sshd, demo_artifacts, demo_checkpoint, tmp_path):
    """Through the same sshd to the emulated Debian arm64 userland: rows say aarch64 and that the timings are
    emulated; INT8 accuracy bit-identical to x86's (XNNPACK's integer kernels on both). The INT8 artifact only:
    emulation is slow, and FP32's x86/ARM agreement is tests/test_arm.py's (same userland, same engine)."""
    import platform

    if platform.system() != "Linux" or platform.machine() != "x86_64":
        pytest.skip("the arm64 userland is emulated on an x86-64 Linux host")
    ar = _tool("arm_rootfs")
    rootfs = ar.CACHE / "arm-rootfs"
    arts = tmp_path / "arts"
    arts.mkdir()
    for f in demo_artifacts.glob(f"{MODEL}_int8.tflite*"):
        shutil.copy2(f, arts / f.name)
    try:
        ar.ensure_host_tools()
        with ar.file_lock(rootfs.parent / f".{rootfs.name}.lock"):  # the arm check shares the rootfs
            ar.ensure_rootfs(rootfs, ar.DEBIAN_MIRROR, False)
            ar.write_cpu_files(rootfs, "cortex-a76")
            wheels, reqs = ar.ensure_wheels(False, "host")  # the host's versions: only the architecture differs
            ar.install_in_rootfs(rootfs, "cortex-a76", wheels, ar.build_edgepose_wheel(tmp_path / "dist"), reqs)
            wrapper = tmp_path / "arm-python"
            wrapper.write_text(ARM_PYTHON.format(rootfs=rootfs, venv=ar.GUEST_VENV))
            wrapper.chmod(0o755)
            rdir = rootfs / "tmp" / f"edgepose-remote-test-{os.getpid()}"
            out = tmp_path / "b.json"
            try:
                r = edgepose("bench", "--model", MODEL, "--artifacts", str(arts), "--reference", str(demo_checkpoint),
                             "--limit", "1", "--runs", "1", "--warmup", "0", "--threads", "2", "--json", str(out),
                             "--remote", sshd.alias, *remote_args(sshd, rdir, wrapper), timeout=3000)  # fmt: skip
            finally:
                shutil.rmtree(rdir, ignore_errors=True)
    except ar.Unavailable as e:
        pytest.skip(f"the arm64 userland cannot be built here: {e}")
    assert r.returncode == 0, r.stderr[-3000:]
    rep = json.loads(out.read_text())
    (e,) = rep["remotes"]
    assert e["machine"]["arch"] == "aarch64" and e["probe"]["kernel_machine"] == "x86_64"
    assert e["label"] == "aarch64 (qemu user-mode emulation on a x86_64 host: timings are not ARM speed)"
    assert "qemu user-mode emulation" in r.stdout and "timings are not ARM speed" in r.stdout
    assert e["data_identical"] and e["machine"]["versions"]["numpy"] == rep["machine"]["versions"]["numpy"]
    local = {row["name"]: row for row in rep["rows"]}
    assert sorted(row["name"] for row in e["rows"]) == sorted(p.name for p in arts.glob("*.tflite"))
    for row in e["rows"]:
        assert row["status"] == "ok", row.get("error")
        mine, theirs = local[row["name"]]["accuracy"]["metrics"], row["accuracy"]["metrics"]
        assert row["precision"] == "int8" and theirs == mine  # bit-identical on x86 and ARM
        assert row["accuracy"]["delta"] == local[row["name"]]["accuracy"]["delta"]
        assert row["model"]["p50_ms"] > 0 and row["machine_label"] == e["label"]


def test_every_source_package_is_in_the_wheel_list():
    """The remote venv installs a wheel of this checkout: a package missing from pyproject's list is missing there."""
    tomllib = pytest.importorskip("tomllib")
    conf = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]
    listed = set(conf["packages"])
    found = set()
    for pkg, folder in conf["package-dir"].items():
        for init in (REPO / folder).rglob("__init__.py"):
            rel = init.parent.relative_to(REPO / folder).parts
            found.add(".".join((pkg, *rel)))
    assert found - listed == set(), "add these to [tool.setuptools] packages in pyproject.toml"
