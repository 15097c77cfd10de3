"""Make the bundled calibration set(s): ``python calibration_data/make_default.py [MODEL ...]``.

128 calibration + 32 holdout crops of the synthetic *training* split (edgepose.synthetic, seeded, offline),
cropped by the shared pipeline from ground-truth boxes, stored JPEG-encoded (quality 95) so that the file
stays ~3 MB. The demo model's set (``default_256x192.npz``) is the one shipped.
"""

from __future__ import annotations

import sys
from pathlib import Path

from edgepose.calibration import synthetic_calibration, write_calibration
from edgepose.spec import DEFAULT_MODEL, get_spec

HERE = Path(__file__).resolve().parent


def main(models: list[str]) -> None:
    for name in models or [DEFAULT_MODEL]:
        spec = get_spec(name)
        cset = synthetic_calibration(spec, num=128, holdout=32, seed=0)
        cset.meta.pop("created", None)  # keep the file reproducible byte for byte apart from zip timestamps
        out = HERE / f"default_{spec.input_size[1]}x{spec.input_size[0]}.npz"
        write_calibration(out, cset, jpeg_quality=95)
        print(f"{out}: {len(cset.crops)} + {len(cset.holdout)} crops, {out.stat().st_size / 1e6:.1f} MB")


if __name__ == "__main__":
    main(sys.argv[1:])
