"""Reading images, and refusing the ones that are not whole: the one image reader every command uses.

libjpeg and libpng fill a truncated image with grey and only print a warning that names no file, so a
cut-off image would otherwise be scored as if it were real. :func:`image_problem` walks the file's structure
first (JPEG markers and entropy data up to the end-of-image marker, PNG chunks with their CRCs up to IEND,
the declared size of BMP and WebP) and :func:`read_image` fails with one line naming the file.
numpy + OpenCV only.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import cv2
import numpy as np

from .errors import EdgeposeError

__all__ = ["read_image", "check_image_file", "check_image_suffix", "image_problem", "image_size", "max_image_pixels",
           "MAX_IMAGE_PIXELS", "MAX_PIXELS_ENV"]  # fmt: skip
log = logging.getLogger(__name__)

MAX_IMAGE_PIXELS = 100_000_000  # 100 megapixels (10000 x 10000): above any camera; 300 MB decoded
MAX_PIXELS_ENV = "EDGEPOSE_MAX_IMAGE_PIXELS"


def max_image_pixels() -> int:
    """The most pixels an image may declare: :data:`MAX_IMAGE_PIXELS`, or ``$EDGEPOSE_MAX_IMAGE_PIXELS``
    (a whole number; 0 lifts the limit). A 1 MB PNG can declare 20000 x 20000 pixels: 1.2 GB decoded."""
    raw = os.environ.get(MAX_PIXELS_ENV, "").strip()
    if not raw:
        return MAX_IMAGE_PIXELS
    try:
        value = int(raw, 10)
    except ValueError:
        value = -1
    if value < 0:
        raise EdgeposeError(f"{MAX_PIXELS_ENV}={raw}: not a whole number of pixels (0 lifts the limit)")
    return value


def image_size(data: bytes) -> tuple[int, int] | None:
    """(width, height) as the header of a PNG, JPEG, BMP or WebP file declares it, without decoding; ``None``
    where the header does not say (another format, or a header cut short)."""
    if data[:8] == b"\x89PNG\r\n\x1a\n" and data[12:16] == b"IHDR" and len(data) >= 24:
        return int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")
    if data[:2] == b"\xff\xd8":
        pos, n = 2, len(data)
        while pos + 4 <= n and data[pos] == 0xFF:
            marker = data[pos + 1]
            if marker == 0xFF:
                pos += 1
                continue
            if marker in (0x01, 0xD8) or 0xD0 <= marker <= 0xD7:
                pos += 2
                continue
            length = int.from_bytes(data[pos + 2 : pos + 4], "big")
            if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):  # start of frame
                if pos + 9 > n:
                    return None
                return int.from_bytes(data[pos + 7 : pos + 9], "big"), int.from_bytes(data[pos + 5 : pos + 7], "big")
            if marker in (0xDA, 0xD9) or length < 2:
                return None
            pos += 2 + length
        return None
    if data[:2] == b"BM" and len(data) >= 26:
        w = int.from_bytes(data[18:22], "little", signed=True)
        h = int.from_bytes(data[22:26], "little", signed=True)
        return abs(w), abs(h)
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP" and len(data) >= 30:
        kind = data[12:16]
        if kind == b"VP8X":
            return 1 + int.from_bytes(data[24:27], "little"), 1 + int.from_bytes(data[27:30], "little")
        if kind == b"VP8L":
            bits = int.from_bytes(data[21:25], "little")
            return 1 + (bits & 0x3FFF), 1 + ((bits >> 14) & 0x3FFF)
        if kind == b"VP8 ":
            return int.from_bytes(data[26:28], "little") & 0x3FFF, int.from_bytes(data[28:30], "little") & 0x3FFF
    return None


def _pixel_problem(data: bytes) -> str | None:
    """Refuse an image that declares more pixels than :func:`max_image_pixels`, before it is decoded; say the
    cost of one allowed above the default limit."""
    size = image_size(data)
    if size is None:
        return None
    w, h = size
    if w == 0 or h == 0:  # libpng / libjpeg would print their own error first, naming no file
        return f"image declares {w}x{h} pixels: nothing to decode"
    limit = max_image_pixels()
    if limit and w * h > limit:
        return (f"image declares {w}x{h} pixels ({w * h / 1e6:.0f} megapixels, {w * h * 3 / 1e9:.1f} GB decoded), "
                f"over the limit of {limit / 1e6:g} megapixels; set {MAX_PIXELS_ENV} to a larger number (0: no "
                "limit) to read it")  # fmt: skip
    if w * h > MAX_IMAGE_PIXELS:
        log.warning("%dx%d image (%.0f megapixels): decoding it takes about %.1f GB of memory and seconds "
                    "(allowed by %s)", w, h, w * h / 1e6, w * h * 3 / 1e9 * 2, MAX_PIXELS_ENV)  # fmt: skip
    return None


def read_image(path: str | Path) -> np.ndarray:
    """RGB uint8 HWC (mmcv.imread(channel_order='rgb')); one clear error for an unreadable file.

    The file's structure is checked first (:func:`image_problem`): libjpeg and libpng fill a truncated image
    with grey and only print a warning that names no file, so a cut-off image would otherwise be scored.
    """
    path = Path(path)
    if not path.is_file():
        raise EdgeposeError(f"{path}: image file not found")
    try:
        data = path.read_bytes()
    except OSError as e:
        raise EdgeposeError(f"{path}: cannot read image ({e.strerror})") from None
    problem = _pixel_problem(data) or image_problem(data)
    if problem:
        raise EdgeposeError(f"{path}: {problem}")
    img = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR) if data else None
    if img is None:
        raise EdgeposeError(f"{path}: cannot read image (not an image OpenCV can decode)")
    return cv2.cvtColor(img, cv2.COLOR_BGR2RGB)


def check_image_suffix(path: str | Path, what: str = "--out") -> None:
    """Fail at once when OpenCV has no writer for the suffix of ``path`` (none: PNG), before any work."""
    ext = Path(path).suffix.lower() or ".png"
    if not cv2.haveImageWriter(f"x{ext}"):
        raise EdgeposeError(f"{what} {path}: no image format for the suffix {ext!r} (use .png or .jpg)")


def check_image_file(path: str | Path, quick: bool = False) -> str | None:
    """What is wrong with the image file at ``path`` (missing, unreadable, truncated), or ``None``.

    ``quick``: a JPEG ending in its end-of-image marker or a PNG ending in its IEND chunk passes on its last
    bytes alone (:func:`read_image` checks the whole file when it decodes it); anything else is walked whole.
    """
    try:
        with open(path, "rb") as f:
            if quick:
                head = f.read(8)
                f.seek(0, 2)
                size = f.tell()
                f.seek(max(0, size - 64))
                tail = f.read().rstrip(b"\x00")
                if head[:2] == b"\xff\xd8" and tail.endswith(b"\xff\xd9"):
                    return None
                if head == b"\x89PNG\r\n\x1a\n" and tail.endswith(b"IEND\xaeB`\x82"):
                    return None
                f.seek(0)
            return image_problem(f.read())
    except FileNotFoundError:
        return "image file not found"
    except IsADirectoryError:
        return "is a directory, not an image"
    except OSError as e:
        return f"cannot read image ({e.strerror})"


def image_problem(data: bytes) -> str | None:
    """Why ``data`` (a whole image file) is not a complete image, or ``None``.

    JPEG: the marker segments are walked and the entropy-coded data scanned to the end-of-image marker (a
    thumbnail's end marker inside EXIF does not count, trailing bytes after the real one are allowed).
    PNG: every chunk must be whole, with its CRC, up to IEND. BMP and WebP: the size in the header must fit.
    Other formats are left to the decoder.
    """
    if not data:
        return "empty file (0 bytes)"
    if data[:2] == b"\xff\xd8":
        return _jpeg_problem(data)
    if data[:8] == b"\x89PNG\r\n\x1a\n":
        return _png_problem(data)
    if data[:2] == b"BM" and len(data) >= 14:
        declared = int.from_bytes(data[2:6], "little")
        if declared > len(data) or int.from_bytes(data[10:14], "little") >= len(data):
            return f"truncated BMP image ({len(data)} of {declared} bytes)"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        declared = int.from_bytes(data[4:8], "little") + 8
        if declared > len(data):
            return f"truncated WebP image ({len(data)} of {declared} bytes)"
    return None


def _jpeg_problem(b: bytes) -> str | None:
    n, pos = len(b), 2
    cut = f"truncated JPEG image ({n} bytes, no end-of-image marker)"
    while True:
        if pos >= n:
            return cut
        if b[pos] != 0xFF:
            return f"corrupt JPEG image (no marker at byte {pos})"
        while pos < n and b[pos] == 0xFF:  # fill bytes before a marker
            pos += 1
        if pos >= n:
            return cut
        marker = b[pos]
        pos += 1
        if marker == 0xD9:  # EOI
            return None
        if marker in (0x01, 0xD8) or 0xD0 <= marker <= 0xD7:  # standalone markers
            continue
        if pos + 2 > n:
            return cut
        length = (b[pos] << 8) | b[pos + 1]
        if length < 2:
            return f"corrupt JPEG image (segment length {length} at byte {pos})"
        if pos + length > n:
            return cut
        pos += length
        if marker == 0xDA:  # start of scan: entropy-coded data up to the next real marker
            while True:
                pos = b.find(b"\xff", pos)
                if pos < 0 or pos + 1 >= n:
                    return cut
                nxt = b[pos + 1]
                if nxt == 0x00 or 0xD0 <= nxt <= 0xD7:  # stuffed 0xFF or a restart marker
                    pos += 2
                elif nxt == 0xFF:  # fill byte
                    pos += 1
                else:
                    break


def _png_problem(b: bytes) -> str | None:
    import zlib

    n, pos = len(b), 8
    view = memoryview(b)
    while pos + 8 <= n:
        length = int.from_bytes(b[pos : pos + 4], "big")
        kind = bytes(b[pos + 4 : pos + 8])
        end = pos + 12 + length
        if length > 0x7FFFFFFF or end > n:
            return f"truncated PNG image ({n} bytes, chunk {kind.decode('latin-1')!r} cut off)"
        if zlib.crc32(view[pos + 4 : end - 4]) != int.from_bytes(b[end - 4 : end], "big"):
            return f"corrupt PNG image (chunk {kind.decode('latin-1')!r} at byte {pos} fails its CRC)"
        if kind == b"IEND":
            return None
        pos = end
    return f"truncated PNG image ({n} bytes, no IEND chunk)"
