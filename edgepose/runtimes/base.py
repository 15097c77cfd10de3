"""The runtime face and its registry.

Every engine is one module in ``runtimes/engines/`` with one :class:`Runtime` subclass that declares its own
facts as class attributes (suffixes, companion files, labels, Python modules and distributions, devices, a
typed options dataclass); nothing else in edgepose keeps a list of engines. Registration is the
:func:`register_runtime` decorator; ``runtimes/engines/__init__.py`` imports every module in its folder.
"""

from __future__ import annotations

import dataclasses
import importlib
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from ..errors import EdgeposeError
from ..processing import INPUT_FLOAT, INPUT_UINT8
from .artifact import verify_artifact
from .registry import RUNTIMES, engine_for, format_label, register_runtime, runtime_for, runtime_of_format

__all__ = ["RUNTIMES", "Runtime", "RuntimeOptions", "engine_for", "format_label", "load_runtime", "register_runtime",
           "runtime_for", "runtime_of_format"]  # fmt: skip


@dataclass
class RuntimeOptions:
    """Options every runtime takes; each engine extends this dataclass with its own."""

    allow_fallback: bool = False  # run on CPU (and say so in info()) when the requested device is missing


class Runtime:
    """Base class: subclasses implement ``_load`` and ``_infer`` (one call at the engine's batch size).

    ``batch_size`` is the artifact's fixed batch (``None`` when dynamic); ``__call__`` splits a larger
    batch into such calls, so callers never care.

    ``input_kind`` says what ``__call__`` takes: ``INPUT_FLOAT`` (float32 NCHW normalised, every artifact made
    without ``--input uint8``) or ``INPUT_UINT8`` (uint8 NHWC RGB crops, normalisation inside the model).
    ``precision_used`` is the precision the engine computes the float operations in, as it reports it
    ("fp32", "bf16", "fp16"; an INT8 graph's float parts), which can differ from the artifact's precision.
    """

    # ---- facts each engine declares
    engine: ClassVar[str] = "base"  # registry name ("onnxruntime")
    format: ClassVar[str] = ""  # the artifact format in metadata ("onnx")
    label: ClassVar[str] = ""  # display name of the format ("ONNX")
    suffixes: ClassVar[tuple[str, ...]] = ()  # artifact suffixes it opens, first is the primary
    companions: ClassVar[tuple[str, ...]] = ()  # suffixes of files that belong to an artifact (".bin")
    modules: ClassVar[tuple[str, ...]] = ()  # engine import names, tried in order (imported only when used)
    distributions: ClassVar[tuple[str, ...]] = ()  # pip distributions whose versions a record carries
    install: ClassVar[str] = ""  # the install group that brings the engine
    color: ClassVar[str] = "#777777"  # plot colour
    Options: ClassVar[type] = RuntimeOptions
    # options that make the engine compute float ops in float32 where its default may choose lower (OpenVINO
    # picks bf16 on AMX/AVX512-BF16 CPUs); empty: the default already computes what the artifact declares
    strict_options: ClassVar[dict[str, Any]] = {}

    @classmethod
    def import_engine(cls) -> tuple[str, Any]:
        """(name, module) of the first of ``modules`` that imports; else one error naming the install group.

        The one place an engine library is imported for a runtime: each engine declares ``modules`` (tried in
        order) and ``install``, and nothing else in edgepose spells the "pip install" line.
        """
        for name in cls.modules:
            try:
                importlib.import_module(name.split(".")[0])  # the package itself (a cached submodule is not enough)
                return name, importlib.import_module(name)
            except ImportError:
                continue
        raise EdgeposeError(f"the {cls.label} runtime needs {cls.distributions[0]}: "
                            f"pip install 'edgepose[{cls.install}]'")  # fmt: skip

    @classmethod
    def devices(cls) -> list[str]:
        """Device requests this engine can serve on this machine (``cpu`` always)."""
        return ["cpu"]

    @classmethod
    def has_device(cls, device: str) -> bool:
        return device == "cpu"

    @classmethod
    def device_problem(cls, device: str) -> str:
        """Why ``device`` cannot be served here (one line, used in errors and fallback notes)."""
        return f"--device {device}: the {cls.engine} runtime runs on CPU only here"

    @classmethod
    def files(cls, path: str | Path) -> list[Path]:
        """The files an artifact consists of (the primary file and its existing companions, no sidecar)."""
        path = Path(path)
        return [path] + [p for s in cls.companions if (p := path.with_suffix(s)).exists()]

    # ---- the instance face
    def __init__(self, path: str | Path, threads: int | None = None, device: str = "cpu", **options: Any):
        self.path = Path(path)
        if threads is not None and (isinstance(threads, bool) or not isinstance(threads, int) or threads < 1):
            raise EdgeposeError(f"--threads {threads}: must be a whole number of at least 1")
        self.threads = threads
        self.device = device
        self.options = self.parse_options(options)
        self.metadata: dict[str, Any] = {}
        self.batch_size: int | None = None
        self.precision = "fp32"
        self.input_kind = INPUT_FLOAT
        self.precision_used: str | None = None
        t0 = time.perf_counter()
        self._load()
        self.load_time_s = time.perf_counter() - t0

    @classmethod
    def parse_options(cls, options: dict[str, Any]) -> Any:
        """``options`` as the engine's typed dataclass; an unknown name fails with the known ones listed."""
        known = {f.name for f in dataclasses.fields(cls.Options)}
        bad = sorted(set(options) - known)
        if bad:
            raise EdgeposeError(f"unknown option {bad[0]!r} for the {cls.engine} runtime "
                                f"(known: {', '.join(sorted(known))})")  # fmt: skip
        return cls.Options(**options)

    def _load(self) -> None:
        raise NotImplementedError

    def _infer(self, batch: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        batch = self._check_input(batch)
        bs = self.batch_size
        if bs is None or len(batch) == bs:
            return np.asarray(self._infer(batch), dtype=np.float32)
        outs = []
        for i in range(0, len(batch), bs):
            chunk = batch[i : i + bs]
            n = len(chunk)
            if n < bs:  # pad the last chunk of a fixed-batch artifact
                chunk = np.concatenate([chunk, np.repeat(chunk[-1:], bs - n, axis=0)])
            outs.append(np.asarray(self._infer(chunk), dtype=np.float32)[:n])
        return np.concatenate(outs)

    def _check_input(self, batch: np.ndarray) -> np.ndarray:
        """``batch`` as the contiguous array this artifact's input kind takes, or one clear error."""
        if self.input_kind == INPUT_UINT8:
            a = np.asarray(batch)
            if a.dtype != np.uint8 or a.ndim != 4 or a.shape[3] != 3:
                raise EdgeposeError(f"{self.path}: takes uint8 NHWC RGB crops (input.kind {INPUT_UINT8}), got "
                                    f"{a.dtype} {a.shape}; feed the crops, not normalised floats "
                                    "(TopDownPipeline(spec, input_kind=rt.input_kind) does)")  # fmt: skip
            return np.ascontiguousarray(a)
        if np.asarray(batch).dtype == np.uint8:
            raise EdgeposeError(f"{self.path}: takes float32 NCHW normalised crops (input.kind {INPUT_FLOAT}), got "
                                "uint8; normalise them first (edgepose.processing.normalize)")  # fmt: skip
        batch = np.ascontiguousarray(batch, dtype=np.float32)
        if batch.ndim != 4:
            raise EdgeposeError(f"{self.path}: expected an NCHW batch, got shape {batch.shape}")
        return batch

    def _engine_input(self, batch: np.ndarray, layout: str) -> np.ndarray:
        """A checked batch in the engine's tensor layout (uint8 NHWC crops are the tensor already)."""
        from .io import to_layout

        return batch if self.input_kind == INPUT_UINT8 else to_layout(batch, layout)

    # ---- a model file without edgepose's metadata (a detector users bring): the engine's own tensors
    def raw_input(self) -> tuple[str, tuple[int | None, ...], str]:
        """The model's first input as the engine declares it: (name, shape with ``None`` for a dynamic
        dimension, numpy dtype name); no layout or normalisation assumed."""
        raise EdgeposeError(f"{self.path}: the {self.engine} runtime opens only edgepose's own models")

    def run_raw(self, x: np.ndarray) -> list[tuple[str, np.ndarray]]:
        """``x`` fed as it is (the model's own layout and dtype); every output, in the model's order, as
        (name, array); quantised outputs dequantised. No layout change, no batching: the file's own face."""
        raise EdgeposeError(f"{self.path}: the {self.engine} runtime opens only edgepose's own models")

    def info(self) -> dict[str, Any]:
        """What ran: engine, its version, device and precision actually used, threads, input kind."""
        return {
            "engine": self.engine,
            "path": str(self.path),
            "device": self.device,
            "precision": self.precision,
            "precision_used": self.precision_used,
            "input_kind": self.input_kind,
            "threads": self.threads,
            "batch_size": self.batch_size,
        }


def load_runtime(path: str | Path, engine: str | None = None, **kwargs: Any) -> Runtime:
    """Open an artifact with its engine (chosen from the suffix unless ``engine`` names one)."""
    path = Path(path)
    name = engine or engine_for(path)
    if name not in RUNTIMES:
        raise EdgeposeError(f"{path}: unknown engine {name!r} (known: {', '.join(RUNTIMES)})")
    if not path.exists():
        raise EdgeposeError(f"{path}: artifact not found")
    if path.is_dir():
        raise EdgeposeError(f"{path}: is a directory, not an artifact file")
    cls = RUNTIMES[name]
    if cls.format != "pytorch":  # sizes and sha256 against the metadata, before the engine parses a byte
        verify_artifact(path, cls)
    return cls(path, **kwargs)
