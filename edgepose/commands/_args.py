"""Argument types shared by every command: numbers are checked once, here, when the command line is parsed.

Each function is an argparse ``type=``; a bad value becomes one line (``edgepose bench: error: argument
--threads: -1 is not a whole number of at least 1``) and exit status 2, before anything is loaded.
"""

from __future__ import annotations

import argparse
import math
import os

__all__ = ["positive_int", "non_negative_int", "finite_float", "non_negative_float", "fraction", "int_range",
           "threads", "max_threads", "positive_float", "key_value", "non_empty", "THREADS_HELP",
           "MAX_THREADS_ENV", "size_wh", "three_floats", "detector_args", "detector_options"]  # fmt: skip

MAX_THREADS_ENV = "EDGEPOSE_MAX_THREADS"
THREADS_HELP = (f"inference threads, from 1 to the CPUs of this machine (default: every usable CPU; set "
                f"{MAX_THREADS_ENV} to allow more)")  # fmt: skip


def _int(text: str) -> int:
    try:
        return int(str(text).strip(), 10)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None


def positive_int(text: str) -> int:
    """A whole number >= 1 (``--threads``, ``--limit``, ``--runs``, ``--batch``...)."""
    v = _int(text)
    if v < 1:
        raise argparse.ArgumentTypeError(f"{text} is not a whole number of at least 1")
    return v


def max_threads() -> int:
    """The most ``--threads`` a command accepts: the logical CPUs of this machine, or ``$EDGEPOSE_MAX_THREADS``.

    An engine told to start 100 000 threads does it (ONNX Runtime reached 17 000 threads and 16 GB before the
    kernel killed it; LiteRT hung at exit), and more threads than CPUs never runs faster."""
    raw = os.environ.get(MAX_THREADS_ENV, "").strip()
    if raw:
        try:
            return positive_int(raw)
        except argparse.ArgumentTypeError as e:
            raise argparse.ArgumentTypeError(f"{MAX_THREADS_ENV}={raw}: {e}") from None
    return os.cpu_count() or 1


def threads(text: str) -> int:
    """``--threads``: a whole number from 1 to :func:`max_threads`."""
    v = positive_int(text)
    bound = max_threads()
    if v > bound:
        where = f"{MAX_THREADS_ENV}={bound}" if os.environ.get(MAX_THREADS_ENV, "").strip() else \
            f"the {bound} CPU(s) of this machine; set {MAX_THREADS_ENV} to allow more"
        raise argparse.ArgumentTypeError(f"{text} is more threads than {where}")
    return v


def non_negative_int(text: str) -> int:
    """A whole number >= 0 (``--warmup``, ``--holdout``)."""
    v = _int(text)
    if v < 0:
        raise argparse.ArgumentTypeError(f"{text} is negative")
    return v


def int_range(lo: int, hi: int):
    """A whole number in ``[lo, hi]`` (``--jpeg`` quality 1..100)."""

    def parse(text: str) -> int:
        v = _int(text)
        if not lo <= v <= hi:
            raise argparse.ArgumentTypeError(f"{text} is not between {lo} and {hi}")
        return v

    parse.__name__ = f"int {lo}..{hi}"
    return parse


def finite_float(text: str) -> float:
    """A finite number (no nan, no inf)."""
    try:
        v = float(str(text).strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not math.isfinite(v):
        raise argparse.ArgumentTypeError(f"{text} is not a finite number")
    return v


def non_negative_float(text: str) -> float:
    v = finite_float(text)
    if v < 0:
        raise argparse.ArgumentTypeError(f"{text} is negative")
    return v


def positive_float(text: str) -> float:
    """A finite number > 0 (``--remote-timeout``)."""
    v = finite_float(text)
    if v <= 0:
        raise argparse.ArgumentTypeError(f"{text} is not more than 0")
    return v


def key_value(text: str) -> str:
    """``KEY=VALUE`` with a plain option name (``--ssh-option``)."""
    key, eq, _ = str(text).partition("=")
    if not eq or not key.strip() or not key.strip().replace("_", "").isalnum():
        raise argparse.ArgumentTypeError(f"{text!r} is not KEY=VALUE (e.g. ConnectTimeout=10)")
    return text


def non_empty(text: str) -> str:
    """A path that is not empty (``--out ''`` would otherwise mean the default, or the current folder)."""
    if not str(text).strip():
        raise argparse.ArgumentTypeError("an empty path; give a name")
    return text


def fraction(text: str) -> float:
    """A finite number in [0, 1] (score thresholds)."""
    v = finite_float(text)
    if not 0.0 <= v <= 1.0:
        raise argparse.ArgumentTypeError(f"{text} is not between 0 and 1")
    return v


def sha256_arg(parser: argparse.ArgumentParser, what: str = "--checkpoint") -> None:
    """The ``--sha256`` option of every command that takes a checkpoint."""
    parser.add_argument("--sha256", metavar="HEX", help=f"expected sha256 of {what} (the full hash or a prefix of at "
                        "least 4 hex digits); the file is refused when it differs")  # fmt: skip


def size_wh(text: str) -> tuple[int, int]:
    """``WxH`` (``--detector-input 640x640``): two whole numbers of at least 1."""
    w, x, h = str(text).lower().partition("x")
    if not x:
        raise argparse.ArgumentTypeError(f"{text!r} is not WxH (e.g. 640x640)")
    return positive_int(w), positive_int(h)


def three_floats(text: str) -> tuple[float, float, float]:
    """``A,B,C`` (``--detector-mean``): three finite numbers."""
    parts = str(text).split(",")
    if len(parts) != 3:
        raise argparse.ArgumentTypeError(f"{text!r} is not three numbers A,B,C")
    return tuple(finite_float(p) for p in parts)  # type: ignore[return-value]


def detector_args(parser: argparse.ArgumentParser) -> None:
    """The ``--detector-*`` options of every command that takes ``--detector`` (edgepose.detectors)."""
    g = parser.add_argument_group("detectors users bring (a --detector file without edgepose's metadata; "
                                  "docs/android.md 'Person detector')")  # fmt: skip
    g.add_argument("--detector-layout", default="auto", choices=["auto", "edgepose", "mmdeploy", "yolo"],
                   help="output layout: mmdeploy (dets [1,N,5] + labels [1,N]), yolo ([1,4+C,N], NMS here), "
                   "edgepose ([1,5,H/4,W/4]); auto (default) reads it from the outputs")  # fmt: skip
    g.add_argument("--detector-input", type=size_wh, metavar="WxH",
                   help="input size (default: the file's; needed when it is dynamic)")  # fmt: skip
    g.add_argument("--detector-mean", type=three_floats, metavar="A,B,C", help="per-channel mean in the model's "
                   "channel order (default: yolo 0,0,0; mmdeploy 103.53,116.28,123.675 (BGR, RTMDet))")  # fmt: skip
    g.add_argument("--detector-std", type=three_floats, metavar="A,B,C", help="per-channel std (default: yolo "
                   "255,255,255; mmdeploy 57.375,57.12,58.395)")  # fmt: skip
    g.add_argument("--detector-bgr", action=argparse.BooleanOptionalAction, default=None, help="feed BGR "
                   "(default: mmdeploy yes, yolo and edgepose no)")  # fmt: skip
    g.add_argument("--person-class", type=non_negative_int, default=0, help="the person class index (default 0, "
                   "COCO's)")  # fmt: skip


DETECTOR_FLAGS = (("--detector-layout", "detector_layout", "auto"), ("--detector-input", "detector_input", None),
                  ("--detector-mean", "detector_mean", None), ("--detector-std", "detector_std", None),
                  ("--[no-]detector-bgr", "detector_bgr", None), ("--person-class", "person_class", 0))


def refuse_detector_flags(args, why: str, extra: tuple = ()) -> None:
    """One line when ``--detector-*`` options (and ``extra``: (flag, attribute, default) of a command's own
    detector thresholds) were given a value while no detector runs (``why``), instead of ignoring them."""
    from ..errors import EdgeposeError

    used = [flag for flag, attr, default in (*DETECTOR_FLAGS, *extra) if getattr(args, attr, default) != default]
    if used:
        raise EdgeposeError(f"{', '.join(used)}: only with a detector, and {why}")


def detector_options(args, score_threshold: float | None = None):
    """``DetectorOptions`` from the parsed ``--detector-*`` options."""
    from ..detectors import DetectorOptions

    return DetectorOptions(layout=args.detector_layout, input_size=args.detector_input, mean=args.detector_mean,
                           std=args.detector_std, bgr=args.detector_bgr, person_class=args.person_class,
                           score_threshold=score_threshold)  # fmt: skip
