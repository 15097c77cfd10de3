"""Opening a model for inference: a PyTorch checkpoint or a converted artifact, with the spec that goes with it."""

from __future__ import annotations

from ..errors import EdgeposeError

__all__ = ["open_model", "open_checkpoint"]


def open_model(model: str | None, checkpoint: str | None, artifact: str | None, threads: int | None = None):
    """(spec, runtime) for a checkpoint (PyTorch) or an artifact (its own engine and metadata)."""
    from ..spec import DEFAULT_MODEL, get_spec, spec_from_metadata
    from . import load_runtime

    if artifact:
        rt = load_runtime(artifact, threads=threads)
        spec = get_spec(model) if model else spec_from_metadata(rt.metadata)
        if rt.metadata and spec.num_keypoints != spec_from_metadata(rt.metadata).num_keypoints:
            raise EdgeposeError(f"{artifact}: artifact has a different keypoint count than model {spec.name}")
        return spec, rt
    spec = get_spec(model or DEFAULT_MODEL)
    return spec, open_checkpoint(spec, checkpoint, threads)


def open_checkpoint(spec, checkpoint: str | None = None, threads: int | None = None):
    """The PyTorch runtime on a checkpoint path/URL, or on the spec's own (downloaded, hash-checked)."""
    from ..checkpoint import resolve_checkpoint
    from . import load_runtime

    source = checkpoint or spec.checkpoint
    return load_runtime(resolve_checkpoint(source), engine="torch", model=spec.name, threads=threads, source=source)
