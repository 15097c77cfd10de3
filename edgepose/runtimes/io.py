"""Tensor layout and affine quantisation between edgepose's float32 NCHW face and an engine's own I/O."""

from __future__ import annotations

import numpy as np

__all__ = ["to_layout", "from_layout", "quantize", "dequantize"]


def to_layout(batch: np.ndarray, layout: str) -> np.ndarray:
    """An NCHW batch in the engine's layout ("NCHW" or "NHWC")."""
    return np.ascontiguousarray(batch.transpose(0, 2, 3, 1)) if layout == "NHWC" else batch


def from_layout(batch: np.ndarray, layout: str) -> np.ndarray:
    """An engine output in ``layout`` back to NCHW."""
    return np.ascontiguousarray(batch.transpose(0, 3, 1, 2)) if layout == "NHWC" else batch


_INT_RANGES = {"int8": (-128, 127), "uint8": (0, 255), "int16": (-32768, 32767)}


def quantize(x: np.ndarray, scale: float, zero_point: int, dtype: str) -> np.ndarray:
    """Affine quantisation ``q = clip(round(x / scale) + zero_point)`` (TFLite's rule)."""
    lo, hi = _INT_RANGES[dtype]
    q = np.round(np.asarray(x, dtype=np.float32) / np.float32(scale)) + zero_point
    return np.clip(q, lo, hi).astype(dtype)


def dequantize(q: np.ndarray, scale: float, zero_point: int) -> np.ndarray:
    """``x = (q - zero_point) * scale`` as float32."""
    return ((np.asarray(q, dtype=np.float32) - np.float32(zero_point)) * np.float32(scale)).astype(np.float32)
