"""``edgepose bench --remote``: the same bench on another machine (a Raspberry Pi) over SSH, merged into this report.

Per host, one after the other (:func:`bench_remotes`):

1. probe: the remote's Python (>= 3.9, 64-bit where LiteRT needs it), architecture, free disk; a run folder
   ``<remote-dir>/run-XXXXXXXX`` is made for this run's files;
2. environment: ``--remote-python`` as given, else a venv ``<remote-dir>/venv-<edgepose>-py<X.Y>`` made once
   and reused, with ``edgepose[lite]`` installed from a wheel of this checkout (its dependencies from the
   remote's own package index; edgepose itself is reinstalled when the source changed);
3. copy: the artifacts the remote can run (``.tflite`` always, ``.onnx``/``.xml`` only where onnxruntime /
   openvino is importable there) with their metadata sidecars, and the evaluation data cut here (``--limit``: only
   the subset's images travel); the sha256 of every file is computed there and compared with this side's;
4. run ``python -m edgepose bench --no-reference --json ...`` there, its progress shown here;
5. fetch its JSON; the rows get accuracy deltas against the PyTorch reference measured HERE, only when the remote
   evaluated the very same annotation bytes (``config.dataset.ann_sha256``);
6. remove the run folder (also after an error or Ctrl-C; a still running remote bench is killed first).

A host that fails (unreachable, key refused, no Python, disk full, remote crash) gives one line and the report
keeps every row that finished. A remote whose Python runs under user-mode emulation (its architecture differs
from the kernel's ``uname -m``) is labelled so: its timings are not the emulated CPU's speed.

(Over 400 lines: the six steps of one host are one class, read top to bottom; ssh, the remote agent, the wheel
and the merge/report live beside it in ``ssh``, ``agent``, ``env`` and ``report``.)
"""

from __future__ import annotations

import json
import logging
import re
import secrets
import shlex
import string
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ... import __version__
from ...datasets import EvalData, load_dataset
from ...errors import EdgeposeError
from ...files import sha256_of
from ...runtimes import runtime_for
from ...runtimes.artifact import sidecar_path
from ...spec import ModelSpec, get_spec
from ..config import BenchConfig
from ..data import artifact_files, bench_data, one_line
from .env import agent_source, build_wheel, source_stamp
from .report import merge_remote, userland_arch
from .ssh import RemoteError, Ssh, Target, parse_target, remote_path

log = logging.getLogger(__name__)

DEFAULT_DIR = "~/.cache/edgepose-remote"
MIN_PYTHON = (3, 9)
# Architectures that ai-edge-litert publishes wheels for (the `lite` group's marker).
LITERT_ARCHES = ("x86_64", "amd64", "aarch64", "arm64")
VENV_FREE_BYTES = 600 * 2**20  # numpy + OpenCV + LiteRT + pycocotools in a venv, with room for pip's unpacking


@dataclass
class RemoteOptions:
    targets: Sequence[str]
    python: str | None = None  # an existing interpreter with edgepose[lite]: no venv is made or changed
    directory: str = DEFAULT_DIR  # remote folder for the venv and the per-run folders
    ssh_config: str | None = None
    ssh_options: Sequence[str] = ()
    threads: int | None = None  # --threads as given (None: every CPU of the remote)
    timeout: float = 3600.0  # the remote bench itself
    install_timeout: float = 1800.0
    progress: bool = True


@dataclass
class Payload:
    """What travels: each artifact's files, and the evaluation data, as (local file, name in the run folder)."""

    artifacts: dict[str, list[tuple[Path, str]]] = field(default_factory=dict)  # artifact name -> files
    detectors: dict[str, list[tuple[Path, str]]] = field(default_factory=dict)  # --frames: detector name -> files
    data: list[tuple[Path, str]] = field(default_factory=list)
    data_args: list[str] = field(default_factory=list)  # bench options, paths relative to the run folder
    hashes: dict[str, str] = field(default_factory=dict)  # name in the run folder -> sha256
    wheel: list[Path | None] = field(default_factory=list)  # the edgepose wheel, once built (for every host)


def check_targets(targets: Sequence[str]) -> list[Target]:
    """Parse every ``--remote`` before any work starts (a typo costs a line, not a local bench)."""
    return [parse_target(t) for t in targets]


def bench_remotes(report: dict[str, Any], cfg: BenchConfig, opts: RemoteOptions) -> list[dict[str, Any]]:
    """Bench on every host in turn; ``report["remotes"]`` gets one entry per host (its rows, or its error)."""
    spec = get_spec(report["model"])
    report.setdefault("remotes", [])
    with tempfile.TemporaryDirectory(prefix="edgepose-remote-") as tmp:
        payload = build_payload(report, cfg, spec, Path(tmp))
        for target in check_targets(opts.targets):
            entry: dict[str, Any] = {"target": str(target), "status": "failed", "error": None, "rows": [],
                                     "notes": [], "skipped": []}  # fmt: skip
            report["remotes"].append(entry)
            try:
                RemoteRun(target, opts, payload, report, cfg, entry, Path(tmp)).run()
                entry["status"] = "ok"
            except KeyboardInterrupt:
                entry["error"] = f"{target}: interrupted (Ctrl-C); its run folder was removed"
                raise
            except Exception as e:  # noqa: BLE001 - one host's failure must keep the rows that finished
                entry["error"] = str(e) if isinstance(e, EdgeposeError) else f"{target}: {one_line(e)}"
                log.warning("%s", entry["error"])
    return report["remotes"]


# ------------------------------------------------------------------------------------------ payload
def build_payload(report: dict[str, Any], cfg: BenchConfig, spec: ModelSpec, tmp: Path) -> Payload:
    """The artifacts of the local rows and the evaluation data exactly as the local bench used it."""
    p = Payload()
    for row in report["rows"]:
        if not row.get("reference"):
            p.artifacts[Path(row["path"]).name] = _travelling(Path(row["path"]), "artifacts")
    for d in (cfg.frames or {}).get("detectors") or []:
        p.detectors[Path(d).name] = _travelling(Path(d), "detectors")
    if cfg.accuracy and report["config"].get("dataset"):
        data, _ = bench_data(cfg, spec, tmp)
        if data is not None:
            p.data, p.data_args = _data_files(spec, data, report)
    for files in [*p.artifacts.values(), *p.detectors.values(), p.data]:
        for path, name in files:
            p.hashes[name] = sha256_of(path)
    return p


def _travelling(path: Path, folder: str) -> list[tuple[Path, str]]:
    """An artifact's files (companions such as an IR's .bin, and its metadata sidecar) and their names there."""
    files = [f for f in artifact_files(path) if f.is_file()]
    side = sidecar_path(path)
    files += [side] if side.is_file() else []
    return [(f, f"{folder}/{f.name}") for f in files]


def _no_engine_there(first_file: Path, engines: set[str]) -> str | None:
    """Why an artifact cannot run on the remote (its engine's modules, none importable there), or ``None``:
    ``.tflite`` always runs (ai-edge-litert comes with edgepose[lite]); an unknown kind is sent as it is."""
    cls = runtime_for(first_file)
    tops = {m.split(".")[0] for m in (cls.modules if cls else ())}
    if cls is None or cls.format == "tflite" or tops & engines:
        return None
    return f"no {' / '.join(sorted(tops))} importable on the remote"


def _data_files(spec: ModelSpec, data: EvalData, report: dict[str, Any]) -> tuple[list[tuple[Path, str]], list[str]]:
    """The annotation file (the --limit subset when cut), the detections, and only the images they use."""
    ds = load_dataset(data.dataset, data.ann, data.images, spec, data.bbox_file)
    files = [(Path(data.ann), f"data/{Path(data.ann).name}")]
    args = ["--dataset", data.dataset, "--ann", f"data/{Path(data.ann).name}", "--images", "data/images"]
    if data.bbox_file:
        files.append((Path(data.bbox_file), f"data/{Path(data.bbox_file).name}"))
        args += ["--bbox-file", f"data/{Path(data.bbox_file).name}"]
    mat = Path(data.ann).parent / "mpii_gt_val.mat"  # the MPII reader's PCKh ground truth beside the json
    if data.dataset == "mpii" and mat.is_file():
        files.append((mat, "data/mpii_gt_val.mat"))
    images = {Path(s.image) for s in ds.samples}
    timing = Path(((report["config"].get("timing_input") or {}).get("image")) or "")
    if timing.is_file():
        images.add(timing)  # the timing sample is the first annotated person, also when its box was cleaned away
    root = Path(data.images).resolve()
    for img in sorted(images):
        try:
            rel = img.resolve().relative_to(root)
        except ValueError:
            continue  # not under the image folder (the synthetic timing figure): the remote makes its own
        files.append((img, f"data/images/{rel.as_posix()}"))
    return files, args


# ------------------------------------------------------------------------------------------- one host
class RemoteRun:
    """One host: probe, environment, copy, verify, run, fetch, merge, clean (see the module docstring)."""

    def __init__(self, target: Target, opts: RemoteOptions, payload: Payload, report: dict[str, Any], cfg: BenchConfig,
                 entry: dict[str, Any], tmp: Path):  # fmt: skip
        self.target, self.opts, self.payload, self.report, self.cfg = target, opts, payload, report, cfg
        self.entry, self.tmp = entry, tmp
        self.ssh = Ssh(target, opts.ssh_config, list(opts.ssh_options))
        self.run_name = "run-" + "".join(secrets.choice(string.ascii_letters + string.digits) for _ in range(8))
        self.run_dir: str | None = None  # its absolute path, once the probe has made it
        self.probing = False
        self.bench_running = False
        self.base_py = opts.python or "python3"  # the commands run there (paths as the remote's shell sees them)
        self.py = self.base_py
        self.detectors: list[str] = []  # --frames: the detector artifacts sent

    def info(self, msg: str, *args: Any) -> None:
        if self.opts.progress:
            log.info("remote %s: " + msg, self.target, *args)

    def run(self) -> None:
        t0 = time.monotonic()
        try:
            probe = self.probe(self.base_py)
            self.py = py = self.opts.python or self.ensure_venv(probe)
            if not self.opts.python:
                probe = {**probe, **self.agent(py, "probe", self.run_dir, "probe of the venv")}
            self.entry["python"] = {k: probe.get(k) for k in ("python", "python_executable", "edgepose", "engines")}
            self.check_edgepose(probe)
            self.entry["environment"] = f"--remote-python {py}" if self.opts.python else f"venv {py}"
            names = self.choose_artifacts(probe)
            self.detectors = self.choose_detectors(probe)
            self.copy(names, probe)
            remote = self.bench(py, names)
            self.merge(remote)
        finally:
            self.clean()
            self.entry["seconds"] = round(time.monotonic() - t0, 1)

    # ---- 1. probe
    def probe(self, py: str) -> dict[str, Any]:
        base = remote_path(self.opts.directory)
        q = shlex.quote(py)
        script = (
            f'echo "kernel_machine=$(uname -m)"; '
            f"for q in qemu-aarch64-static qemu-aarch64 qemu-arm-static qemu-arm; do "
            f'command -v "$q" >/dev/null 2>&1 && echo "qemu=$q"; done; '
            f'ls /proc/sys/fs/binfmt_misc 2>/dev/null | grep -q qemu && echo "qemu=binfmt_misc"; '
            f"mkdir -p {base} && cd {base} && mkdir -m 700 {self.run_name} && d=\"$(pwd -P)/{self.run_name}\" && "
            f'echo "run_dir=$d" || exit 3; '
            f"command -v {q} >/dev/null 2>&1 || {{ echo no_python; exit 0; }}; "
            f"{q} -c {shlex.quote(agent_source())} probe \"$d\""
        )
        self.probing = True  # from here on the run folder may exist (Ctrl-C before we know its full path)
        r = self.ssh.run(script, "the probe", timeout=120, check=False)
        facts = dict(re.findall(r"^(\w+)=(.*)$", r.stdout, re.MULTILINE))
        self.run_dir = facts.get("run_dir")
        self.probing = False  # the probe answered: the folder exists (run_dir) or was never made
        if r.returncode == 255:
            raise self.ssh.fail("the probe", 255, r.stderr)
        if r.returncode == 3 or not self.run_dir:
            raise self.ssh.fail(f"making a folder in {self.opts.directory}", r.returncode, r.stderr)
        if "no_python" in r.stdout.split():
            hint = "pass --remote-python PATH" if not self.opts.python else "check --remote-python"
            raise RemoteError(f"{self.target}: no Python at {py!r} on the remote (install python3 >= 3.9, or {hint})")
        probe = self._json(r, "the probe", py)
        probe["kernel_machine"] = facts.get("kernel_machine")
        probe["qemu"] = re.findall(r"^qemu=(.*)$", r.stdout, re.MULTILINE)
        self.entry["probe"] = probe
        version = tuple(int(v) for v in probe["python"].split(".")[:2])
        if version < MIN_PYTHON:
            need = ".".join(map(str, MIN_PYTHON))
            raise RemoteError(f"{self.target}: Python {probe['python']} at {py} is too old: edgepose needs Python "
                              f">= {need} (pass --remote-python PATH to another)")  # fmt: skip
        arch = userland_arch(probe)
        lite = {"ai_edge_litert", "tflite_runtime"} & set(probe.get("engines") or [])
        if arch not in LITERT_ARCHES and not (self.opts.python and lite):  # a Python of one's own may have it
            what = f"32-bit ARM ({arch}, e.g. 32-bit Raspberry Pi OS)" if arch.startswith("armv") else arch
            raise RemoteError(f"{self.target}: {what} userland: ai-edge-litert publishes no wheel for it, so no "
                              ".tflite can run there; install a 64-bit OS (Raspberry Pi OS 64-bit) or see "
                              "docs/raspberry-pi.md")  # fmt: skip
        need = 16 * 2**20 + sum(f.stat().st_size for files in self.payload.artifacts.values() for f, _ in files)
        self.check_free(probe["free_bytes"], need)
        self.info("%s, Python %s (%s), %.0f MB free in %s", probe.get("cpu") or arch, probe["python"], arch,
                  probe["free_bytes"] / 2**20, self.opts.directory)  # fmt: skip
        return probe

    def check_edgepose(self, probe: dict[str, Any]) -> None:
        if not probe.get("edgepose"):
            raise RemoteError(f"{self.target}: no edgepose in the Python at {self.py} (install edgepose[lite] there, "
                              "or leave out --remote-python for a venv that edgepose makes)")  # fmt: skip
        if probe["edgepose"] != __version__:
            self.entry["notes"].append(f"edgepose {probe['edgepose']} there, {__version__} here")

    def _json(self, r: Any, what: str, py: str) -> dict[str, Any]:
        if r.returncode != 0:
            if "SyntaxError" in r.stderr:
                raise RemoteError(f"{self.target}: the Python at {py} is too old for edgepose (needs >= 3.9)")
            raise self.ssh.fail(what, r.returncode, r.stderr)
        try:
            return json.loads(r.stdout.strip().splitlines()[-1])
        except (ValueError, IndexError):
            said = one_line(Exception(r.stderr or r.stdout))
            raise RemoteError(f"{self.target}: {what} gave no answer ({said})") from None

    def agent(self, py: str, op: str, directory: str | None, what: str, timeout: float = 300) -> dict[str, Any]:
        cmd = f"{shlex.quote(py)} -c {shlex.quote(agent_source())} {op} {shlex.quote(str(directory))}"
        return self._json(self.ssh.run(cmd, what, timeout=timeout, check=False), what, py)

    def check_free(self, free: int, need: int, where: str | None = None) -> None:
        if free < need:
            raise RemoteError(f"{self.target}: not enough free disk in {where or self.opts.directory}: "
                              f"{free / 2**20:.1f} MB free, about {need / 2**20:.1f} MB needed")  # fmt: skip

    # ---- 2. environment
    def ensure_venv(self, probe: dict[str, Any]) -> str:
        """The managed venv's python: made once per edgepose version and Python, edgepose refreshed on change."""
        base = self.run_dir.rsplit("/", 1)[0]  # type: ignore[union-attr]
        pyver = ".".join(probe["python"].split(".")[:2])
        venv = f"{base}/venv-{__version__}-py{pyver}"
        q = shlex.quote(venv)
        stamp = source_stamp()
        r = self.ssh.run(f"cat {q}/.edgepose-stamp 2>/dev/null; test -x {q}/bin/python && echo have_python",
                         "reading the venv", check=False)  # fmt: skip
        have = "have_python" in r.stdout.split()
        if have and stamp in r.stdout.split():
            self.info("reusing %s", venv)
            return f"{venv}/bin/python"
        self.check_free(probe["free_bytes"], VENV_FREE_BYTES)
        if not have:
            self.info("making the venv %s", venv)
            r = self.ssh.run(f"{shlex.quote(self.base_py)} -m venv {q}", "python3 -m venv",
                             timeout=300, check=False)  # fmt: skip
            if r.returncode != 0:
                if "ensurepip" in r.stdout + r.stderr:
                    raise RemoteError(f"{self.target}: python3 -m venv failed: the venv module lacks pip there "
                                      "(Debian / Raspberry Pi OS: sudo apt install python3-venv)")  # fmt: skip
                raise self.ssh.fail("python3 -m venv", r.returncode, r.stderr or r.stdout)
        pip = f"{q}/bin/python -m pip install --disable-pip-version-check --no-input"
        if not self.payload.wheel:
            self.payload.wheel.append(build_wheel(self.tmp))
        wheel = self.payload.wheel[0]
        if wheel is not None:
            self.ssh.push_tar([(wheel, wheel.name)], self.run_dir, "copying the edgepose wheel", 600)  # type: ignore[arg-type]
            w = f"{self.run_dir}/{wheel.name}"
            steps = [f"{pip} --force-reinstall --no-deps {shlex.quote(w)}", f"{pip} {shlex.quote(w + '[lite]')}"]
        else:  # an installed edgepose without its source: the same version from the remote's index
            steps = [f"{pip} {shlex.quote(f'edgepose[lite]=={__version__}')}"]
        for step in steps:
            self.info("%s", step.split(" -m ", 1)[1])
            rc, _, tail = self.ssh.stream(step, "pip install", self.opts.install_timeout, self._pip_line)
            if rc != 0:
                raise self.ssh.fail("pip install edgepose[lite]", rc, "\n".join(tail))
        rm = f"; rm -f {shlex.quote(f'{self.run_dir}/{wheel.name}')}" if wheel is not None else ""
        self.ssh.run(f"printf '%s\\n' {shlex.quote(stamp)} > {q}/.edgepose-stamp{rm}", "writing the venv stamp")
        return f"{venv}/bin/python"

    def _pip_line(self, line: str) -> None:
        if line.strip() and self.opts.progress:
            log.info("  %s| %s", self.target, line)

    # ---- 3. copy and verify
    @staticmethod
    def _runnable(items: dict[str, Any], probe: dict[str, Any]) -> tuple[list[str], list[tuple[str, str]]]:
        """(the names whose engine is importable on the remote, (name, why not) for the others)."""
        engines = set(probe.get("engines") or [])
        names, refused = [], []
        for name, files in items.items():
            why = _no_engine_there(files[0][0], engines)
            if why is None:
                names.append(name)
            else:
                refused.append((name, why))
        return names, refused

    def choose_artifacts(self, probe: dict[str, Any]) -> list[str]:
        """``.tflite`` always; another format only where its engine is importable on the remote."""
        names, refused = self._runnable(self.payload.artifacts, probe)
        for name, why in refused:
            self.entry["skipped"].append({"artifact": name, "why": why})
            self.entry["notes"].append(f"{name}: not sent ({why})")
        if not names:
            raise RemoteError(f"{self.target}: none of the artifacts can run there (no engine importable)")
        return names

    def choose_detectors(self, probe: dict[str, Any]) -> list[str]:
        """--frames: the detector artifacts whose engine runs there (a pose artifact without one there pairs
        with the PyTorch detector, and its frame row says so)."""
        names, refused = self._runnable(self.payload.detectors, probe)
        self.entry["notes"] += [f"{name}: detector not sent ({why})" for name, why in refused]
        return names

    def copy(self, names: list[str], probe: dict[str, Any]) -> None:
        files = [f for n in names for f in self.payload.artifacts[n]] + self.payload.data
        files += [f for n in self.detectors for f in self.payload.detectors[n]]
        size = sum(p.stat().st_size for p, _ in files)
        self.check_free(probe["free_bytes"], size + 16 * 2**20)
        self.info("copying %d files (%.1f MB) to %s", len(files), size / 1e6, self.run_dir)
        t0 = time.monotonic()
        self.ssh.push_tar(files, self.run_dir, "copying the artifacts and data", 600 + size / 50e3)  # type: ignore[arg-type]
        seconds = time.monotonic() - t0
        there = self.agent(self.py, "sha256", self.run_dir, "the sha256 check", timeout=600)
        want = {name: self.payload.hashes[name] for _, name in files}
        bad = sorted(n for n, h in want.items() if there.get(n) != h)
        if bad:
            got = there.get(bad[0])
            raise RemoteError(f"{self.target}: {bad[0]} arrived {'damaged (sha256 differs)' if got else 'missing'}"
                              + (f", and {len(bad) - 1} more" if len(bad) > 1 else ""))  # fmt: skip
        self.entry["sent"] = {"files": len(files), "bytes": size, "seconds": round(seconds, 2),
                              "sha256_verified": len(want)}  # fmt: skip

    # ---- 4. run and 5. fetch
    def bench(self, py: str, names: list[str]) -> dict[str, Any]:
        rd, cfg = self.run_dir, self.cfg
        argv = [py, "-m", "edgepose", "bench", "--no-reference", "--model", self.report["model"],
                "--json", f"{rd}/out/bench.json", "--runs", str(cfg.runs), "--warmup", str(cfg.warmup),
                "--batch", str(cfg.batch), "--device", cfg.device,
                "--artifacts", *[f"{rd}/artifacts/{n}" for n in names]]  # fmt: skip
        argv += ["--threads", str(self.opts.threads)] if self.opts.threads else []
        argv += ["--allow-fallback"] if cfg.allow_fallback else []
        argv += ["--strict-precision"] if getattr(cfg, "strict_precision", False) else []
        argv += [] if cfg.flip_test else ["--no-flip"]
        argv += ["--max-drop", str(cfg.max_drop)] if cfg.max_drop is not None else []
        argv += ["--batch-sizes", ",".join(map(str, cfg.batch_sizes))] if cfg.batch_sizes else []
        data = self.payload.data_args
        argv += [f"{rd}/{a}" if a.startswith("data/") else a for a in data] if data else ["--no-accuracy"]
        if cfg.frames is not None:
            fr = cfg.frames
            argv += ["--frames", "--persons", ",".join(map(str, fr["persons"])), "--det-every", str(fr["det_every"]),
                     "--frame-count", str(fr["frame_count"])]  # fmt: skip
            argv += ["--detector", *[f"{rd}/detectors/{n}" for n in self.detectors]] if self.detectors else []
        cmd = " ".join(map(shlex.quote, argv))
        q = shlex.quote(rd)  # type: ignore[arg-type]
        # in the background with its pid noted, so that a clean-up (Ctrl-C here) can stop it; its exit status told
        script = (f"mkdir -p {q}/out && cd {q} && env PYTHONUNBUFFERED=1 TQDM_DISABLE=1 MPLBACKEND=Agg {cmd} "
                  f"</dev/null & pid=$!; echo $pid > {q}/pid; wait $pid; rc=$?; rm -f {q}/pid; "
                  f'echo "edgepose-remote-exit=$rc" >&2; exit $rc')  # fmt: skip
        self.info("running the bench on %d artifact(s)", len(names))
        self.bench_running = True
        rc, _, tail = self.ssh.stream(script, "the remote bench", self.opts.timeout, self._bench_line)
        exits = [ln for ln in tail if ln.startswith("edgepose-remote-exit=")]
        self.bench_running = not exits
        said = [ln for ln in tail if ln.strip() and not ln.startswith("edgepose-remote-exit=")
                and not re.search(r"(^|\s)(Killed|Terminated)(\s|$)", ln)]  # the shell's own word for the signal
        if not exits:
            raise RemoteError(f"{self.target}: the connection ended before the remote bench did (ssh exit status {rc}"
                              + (f": {said[-1]})" if said else ")"))  # fmt: skip
        if rc > 128 or rc < 0:
            sig = rc - 128 if rc > 128 else -rc
            raise RemoteError(f"{self.target}: the remote bench was killed by signal {sig} ({_signame(sig)})"
                              + (f"; last output: {said[-1]}" if said else ""))  # fmt: skip
        # after a marker: whatever a login script prints before it is not part of the JSON
        r = self.ssh.run(f"echo EDGEPOSE-JSON && cat {q}/out/bench.json", "fetching the bench JSON", check=False)
        text = r.stdout.split("EDGEPOSE-JSON\n", 1)[-1]
        if r.returncode != 0 or not text.strip():
            raise RemoteError(f"{self.target}: the remote bench exited with status {rc} and wrote no result"
                              + (f" ({said[-1]})" if said else ""))  # fmt: skip
        try:
            return json.loads(text)
        except ValueError as e:
            raise RemoteError(f"{self.target}: the remote bench JSON is not readable ({e})") from None

    def _bench_line(self, line: str) -> None:
        if line.strip() and self.opts.progress and not line.startswith("edgepose-remote-exit="):
            log.info("  %s| %s", self.target, line)

    # ---- merge
    def merge(self, remote: dict[str, Any]) -> None:
        merge_remote(self.entry, remote, self.report, self.cfg, self.target)

    # ---- 6. clean
    def clean(self) -> None:
        rd = self.run_dir
        if not rd and not self.probing:
            return
        if rd and not re.fullmatch(r"/.+/run-[A-Za-z0-9]{8}", rd):
            log.warning("%s: not removing the unexpected remote folder %r", self.target, rd)
            return
        q = shlex.quote(rd) if rd else f"{remote_path(self.opts.directory)}/{self.run_name}"
        rd = rd or f"{self.opts.directory}/{self.run_name}"
        kill = (f'if [ -f {q}/pid ]; then p=$(cat {q}/pid); kill -TERM "$p" 2>/dev/null; sleep 1; '
                f'kill -KILL "$p" 2>/dev/null; fi; ') if self.bench_running else ""  # fmt: skip
        try:  # its own session: a second Ctrl-C does not cut the clean-up short
            r = self.ssh.run(f"{kill}rm -rf {q}", "removing the run folder", timeout=60, check=False,
                             new_session=True)  # fmt: skip
            if r.returncode != 0:
                log.warning("%s: could not remove %s (%s)", self.target, rd, one_line(Exception(r.stderr)))
        except RemoteError as e:
            log.warning("%s: could not remove %s (%s)", self.target, rd, e)
        self.entry["cleaned"] = rd


def _signame(sig: int) -> str:
    import signal

    try:
        return signal.Signals(sig).name
    except ValueError:
        return "?"
