"""Opening a model for inference: a PyTorch checkpoint or a converted artifact, with the spec that goes with it."""

from __future__ import annotations

import logging

__all__ = ["open_model", "open_checkpoint", "model_for_checkpoint", "batched_options"]
log = logging.getLogger(__name__)


def model_for_checkpoint(model: str | None, checkpoint: str | None):
    """The spec for ``--model``/``--checkpoint``: a checkpoint named like a zoo model's published file (a model
    card's URL, or the file downloaded from it) brings that zoo entry, with its hash and published numbers;
    ``--model`` naming another release of the same architecture gives way to it, saying so."""
    from ..spec import DEFAULT_MODEL, get_spec, spec_for_checkpoint

    named = spec_for_checkpoint(checkpoint)
    if model is None:
        return named or get_spec(DEFAULT_MODEL)
    spec = get_spec(model)
    if named is not None and named.name != spec.name:
        same = (named.dataset, named.input_size) == (spec.dataset, spec.input_size)
        if same:
            log.info("%s is the published checkpoint of %s: using that entry's published numbers",
                     str(checkpoint).rsplit("/", 1)[-1], named.name)  # fmt: skip
            return named
    return spec


def open_model(model: str | None, checkpoint: str | None, artifact: str | None, threads: int | None = None,
               sha256: str | None = None, batched: bool = False):  # fmt: skip
    """(spec, runtime) for a checkpoint (PyTorch) or an artifact (its own engine and metadata).

    ``sha256`` (full or prefix) is the expected hash of the checkpoint, or of the artifact file. ``batched``:
    the caller sends several persons per call (``edgepose run``), so an engine that can give a fixed-batch
    artifact a dynamic batch at load does (OpenVINO's ``reshape_batch``).
    """
    from ..spec import spec_for_artifact
    from . import load_runtime

    if artifact:
        if sha256:
            from ..checkpoint import check_sha256

            check_sha256(artifact, sha256)
        rt = load_runtime(artifact, threads=threads, **(batched_options(artifact) if batched else {}))
        return spec_for_artifact(model, rt.metadata, artifact), rt
    spec = model_for_checkpoint(model, checkpoint)
    return spec, open_checkpoint(spec, checkpoint, threads, sha256)


def batched_options(path) -> dict:
    """Runtime options for a caller that sends several persons per call: an OpenVINO IR with a fixed batch is
    reshaped to a dynamic one at load (``reshape_batch``); other engines need none (or cannot)."""
    from .registry import engine_for

    return {"reshape_batch": True} if engine_for(path) == "openvino" else {}


def open_checkpoint(spec, checkpoint: str | None = None, threads: int | None = None, sha256: str | None = None):
    """The PyTorch runtime on a checkpoint path/URL, or on the spec's own (downloaded, hash-checked)."""
    from ..checkpoint import resolve_checkpoint
    from . import load_runtime

    source = checkpoint or spec.checkpoint
    path = resolve_checkpoint(source, sha256=sha256)
    return load_runtime(path, engine="torch", model=spec.name, threads=threads, source=source)
