"""PyTorch runtime: a checkpoint (``.pth``) through the plain-PyTorch model, on CPU (or CUDA if asked)."""

from __future__ import annotations

import numpy as np

from ..errors import EdgeposeError
from ..spec import DEFAULT_MODEL, get_spec
from .base import Runtime, register_runtime


@register_runtime("torch", suffixes=(".pth", ".pt"))
class TorchRuntime(Runtime):
    """Options: ``model`` (spec name; default the demo model), ``source`` (the path/URL the file came from,
    so that the spec's own checkpoint is hash-checked)."""

    def _load(self) -> None:
        try:
            import torch
        except ImportError:
            raise EdgeposeError("the PyTorch runtime needs torch: pip install 'edgepose[torch]'") from None
        from ..models import load_model

        self.spec = get_spec(self.options.get("model") or DEFAULT_MODEL)
        if self.threads:
            torch.set_num_threads(self.threads)
        if self.device != "cpu":
            raise EdgeposeError(f"{self.path}: device {self.device!r} is not supported by the torch CPU runtime")
        self.model = load_model(self.spec, self.options.get("source") or str(self.path), progress=False)
        self.metadata = {"model": self.spec.to_dict(), "precision": "fp32", "format": "pytorch"}
        self._torch = torch

    def _infer(self, batch: np.ndarray) -> np.ndarray:
        with self._torch.inference_mode():
            return self.model(self._torch.from_numpy(batch)).numpy()

    def info(self) -> dict:
        d = super().info()
        d["version"] = self._torch.__version__
        return d
