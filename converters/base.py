"""What every target converter shares: the conversion context, the result of one artifact, the registry.

A target is one folder ``targets/<name>/`` whose ``__init__.py`` calls :func:`register_target` with its
converter (``convert.py``: the context, i.e. the PyTorch model, the exported ONNX file and the calibration
batch, to one artifact per precision inside ``ctx.workdir``) and, for INT8, its mixed-precision builder
(``mixed.py``) and its graph reader for the per-layer report (``graph.py``), which the format-free
:mod:`.int8` package asks for. Checking (parity), metadata and moving files into place are :mod:`.api`'s
business.
"""

from __future__ import annotations

import contextlib
import io
import os
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np

from edgepose.errors import EdgeposeError
from edgepose.processing import INPUT_FLOAT, INPUT_UINT8
from edgepose.spec import ModelSpec

INSTALL_HINT = "pip install 'edgepose[convert]'"
PRECISIONS = ("fp32", "fp16", "int8")


@dataclass
class Context:
    """Everything a target converter needs, prepared once by :func:`edgepose.converters.api.convert`."""

    spec: ModelSpec
    model: Any  # the torch module, eval mode
    onnx_path: Path  # the exported FP32 ONNX file (inside workdir)
    workdir: Path
    calib: np.ndarray  # float32 NCHW normalised calibration batch (empty when no INT8 is asked for)
    dynamic_batch: bool = False
    int8_io: bool = False
    stem: str = ""  # file name stem: "<model>" -> "<model>_<precision>.<suffix>"
    log: Callable[[str], None] = print
    notes: list[str] = field(default_factory=list)  # said to the user at the end
    input_kind: str = INPUT_FLOAT  # INPUT_UINT8: the exported model takes uint8 NHWC RGB crops
    calib_crops: np.ndarray | None = None  # the uint8 NHWC crops ``calib`` was normalised from
    keep_work: bool = False  # keep intermediate files (the TFLite SavedModel) for the INT8 accuracy control

    @property
    def uint8_input(self) -> bool:
        return self.input_kind == INPUT_UINT8

    def calib_inputs(self) -> np.ndarray:
        """The calibration batch as the exported model takes it: ``calib``, or the uint8 NHWC crops."""
        if not self.uint8_input:
            return self.calib
        return self.calib_crops if self.calib_crops is not None else np.zeros((0,), np.uint8)

    def artifact_path(self, precision: str, suffix: str) -> Path:
        """``<stem>_<precision>[_u8in]<suffix>`` in the work dir (``_u8in``: takes uint8 crops)."""
        return self.workdir / f"{self.stem or self.spec.name}_{precision}{'_u8in' if self.uint8_input else ''}{suffix}"


@dataclass
class Converted:
    """One artifact in the work dir, with what its metadata needs from the converter."""

    target: str
    precision: str
    path: Path
    extra_files: list[Path] = field(default_factory=list)  # e.g. the OpenVINO .bin
    layout: dict[str, str] = field(default_factory=lambda: {"input": "NCHW", "output": "NCHW"})
    input: dict[str, Any] = field(default_factory=dict)
    output: dict[str, Any] = field(default_factory=dict)
    tools: dict[str, str] = field(default_factory=dict)
    details: dict[str, Any] = field(default_factory=dict)  # target-specific facts (e.g. NNCF preset)
    seconds: float = 0.0


@dataclass
class Target:
    name: str
    suffix: str
    precisions: tuple[str, ...]
    convert: Callable[[Context, list[str]], list[Converted]]
    requires: tuple[str, ...] = ()  # import names, checked before any work starts
    embed: Callable[[Path, str], None] | None = None  # writes the metadata JSON into the artifact file
    # precision -> the head form (converters.transforms.HEAD_FORMS) that ``head="auto"`` exports for it;
    # a precision not named keeps the original deconvolution head
    head_forms: dict[str, str] = field(default_factory=dict)
    # INT8 accuracy control and the per-layer report (converters/int8/), each optional:
    # ``mixed(c, ctx, threads)``: a builder of this target's INT8 models with chosen layers left in float
    # (``build(layers, dst)``, ``float_model``: the float file ``graph`` compares with; see int8/search.py)
    mixed: Callable[..., Any] | None = None
    # ``graph(int8_path, float_path, threads)``: the layers and runners of the per-layer report (int8/ranking.py)
    graph: Callable[..., Any] | None = None
    # ``float_model(onnx_path, spec, workdir) -> (path, how)``: the float model ``graph`` reads, made from an
    # ONNX export (``edgepose inspect --layers`` without an FP32 sibling); default: the ONNX file itself
    float_model: Callable[..., tuple[Path, str]] | None = None
    # the target's own accuracy-control methods besides the common layer search, by name (``--<name>-control``):
    # ``fn(c, ctx, control, budget, threads) -> found`` (the keys of int8/search.py's result, plus "method")
    controls: dict[str, Callable[..., dict[str, Any]]] = field(default_factory=dict)
    # the target's own range / correction options the search tries before keeping any layer in float, cheapest
    # first, name -> what it is; the first is the plain artifact's; ``mixed(c, ctx, threads, ranges=name)``
    # builds with it. Empty: the target offers none (the search goes straight to layers)
    ranges: dict[str, str] = field(default_factory=dict)


TARGETS: dict[str, Target] = {}


def register_target(
    name: str, suffix: str, precisions: tuple[str, ...], requires: tuple[str, ...] = (),
    embed: Callable[[Path, str], None] | None = None, head_forms: dict[str, str] | None = None,
    mixed: Callable[..., Any] | None = None, graph: Callable[..., Any] | None = None,
    float_model: Callable[..., tuple[Path, str]] | None = None,
    controls: dict[str, Callable[..., dict[str, Any]]] | None = None,
    ranges: dict[str, str] | None = None,
):  # fmt: skip
    """Function decorator: ``fn(ctx, precisions) -> [Converted]`` becomes the converter of target ``name``;
    ``embed(path, text)`` puts the metadata JSON inside that target's files; ``head_forms`` maps a precision to
    the head form ``convert(head="auto")`` gives it (measured by benchmarks/head_forms.py); ``mixed``,
    ``graph``, ``float_model``, ``controls`` and ``ranges``: the target's INT8 parts (see :class:`Target`)."""

    def deco(fn: Callable[[Context, list[str]], list[Converted]]):
        TARGETS[name] = Target(name, suffix, precisions, fn, requires, embed, dict(head_forms or {}), mixed, graph,
                               float_model, dict(controls or {}), dict(ranges or {}))  # fmt: skip
        return fn

    return deco


def target_for(path: str | Path) -> Target | None:
    """The registered target whose artifacts end like ``path`` (``.onnx`` -> onnx); the caller has imported
    :mod:`edgepose.converters.targets` (which registers them)."""
    suffix = Path(path).suffix.lower()
    return next((t for t in TARGETS.values() if t.suffix == suffix), None)


def require(*modules: str, target: str = "") -> None:
    """Fail early, with the install command, when a converter dependency is missing."""
    import importlib.util

    for m in modules:
        try:
            missing = importlib.util.find_spec(m) is None
        except (ImportError, ValueError):
            missing = True
        if missing:
            what = f" for {target}" if target else ""
            raise EdgeposeError(f"conversion{what} needs the '{m}' package: {INSTALL_HINT}")


def version_of(dist: str) -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(dist)
    except PackageNotFoundError:
        return ""


def io_spec(name: str, shape: list[Any], dtype: str = "float32", quant: dict | None = None) -> dict[str, Any]:
    return {"name": name, "shape": list(shape), "dtype": dtype, "quantization": quant}


@contextlib.contextmanager
def quiet(what: str):
    """Swallow a tool's chatter (Python and C++ level, stdout and stderr); on failure show its tail and fail
    with one line naming ``what``."""
    buf = io.StringIO()
    sys.stdout.flush()
    sys.stderr.flush()
    with tempfile.TemporaryFile() as native:
        saved = [os.dup(1), os.dup(2)]
        try:
            os.dup2(native.fileno(), 1)
            os.dup2(native.fileno(), 2)
            with contextlib.redirect_stdout(buf), contextlib.redirect_stderr(buf):
                yield buf
        except EdgeposeError:
            raise
        except (Exception, SystemExit) as e:
            _restore(saved)
            native.seek(0)
            chatter = native.read().decode("utf-8", "replace") + buf.getvalue()
            tail = chatter.strip().splitlines()[-15:]
            if tail:
                print("\n".join(tail), file=sys.stderr)
            first = (str(e).strip().splitlines() or [type(e).__name__])[0][:300]
            raise EdgeposeError(f"{what} failed: {first}") from None
        finally:
            _restore(saved)


def _restore(saved: list[int]) -> None:
    if saved[0] < 0:
        return
    try:  # flush C stdio buffers so that native chatter lands in the capture file, not on the terminal
        import ctypes

        ctypes.CDLL(None).fflush(None)
    except (OSError, AttributeError):
        pass
    os.dup2(saved[0], 1)
    os.dup2(saved[1], 2)
    os.close(saved[0])
    os.close(saved[1])
    saved[:] = [-1, -1]


class Timer:
    """``with Timer() as t: ...; t.seconds``"""

    def __enter__(self) -> Timer:
        self.t0 = time.perf_counter()
        self.seconds = 0.0
        return self

    def __exit__(self, *exc: Any) -> None:
        self.seconds = time.perf_counter() - self.t0
