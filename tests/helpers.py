"""Shared test helpers: where the sample data lives, and mmpose-layout checkpoints built from the key list."""

from __future__ import annotations

import signal
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
SAMPLES = SHARED / "data" / "mmpose_samples"
KEYS_FILE = SHARED / "reference" / "mmpose-mobilenetv2-keys.txt"


def sigint_as_default() -> None:
    """``preexec_fn`` of a child a test sends SIGINT: the default disposition, so that Python in it turns SIGINT into
    KeyboardInterrupt whatever this process inherited (a shell starts background jobs with SIGINT ignored, and
    every child inherits that: the Ctrl-C tests then saw runs end normally)."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def require(path: Path) -> Path:
    """Skip the test, saying why, when a file from ../shared is absent."""
    if not path.exists():
        pytest.skip(f"{path} is absent (tests read the sample data from ../shared beside the repository)")
    return path


def mmpose_keys(num_keypoints: int = 17) -> list[tuple[str, list[int]]]:
    """The 332 (name, shape) pairs of the reference key list, with the final layer resized to K."""
    out = []
    for line in require(KEYS_FILE).read_text().strip().splitlines():
        name, shape = line.split("\t")
        dims = [int(d) for d in shape.strip("[]").split(",") if d.strip()]
        if name.startswith("keypoint_head.final_layer."):
            dims[0] = num_keypoints
        out.append((name, dims))
    return out


def mmpose_checkpoint(path: Path, num_keypoints: int = 17, seed: int = 0, mutate=None) -> Path:
    """Write a checkpoint as mmpose publishes it ({'meta', 'state_dict'}), random values, exact names/shapes."""
    import torch

    g = torch.Generator().manual_seed(seed)
    state = {}
    for name, dims in mmpose_keys(num_keypoints):
        if name.endswith("num_batches_tracked"):
            state[name] = torch.tensor(1000, dtype=torch.int64)
        elif name.endswith("running_var"):
            state[name] = torch.rand(dims, generator=g) + 0.5
        else:
            state[name] = torch.randn(dims, generator=g) * 0.05
    if mutate:
        state = mutate(state)
    torch.save({"meta": {"mmpose_version": "0.x", "epoch": 210}, "state_dict": state}, path)
    return path
