"""The fast pre/post-processing paths against plain definitions, the uint8-input pipeline against the float one,
and the streaming API against the serial pipeline (identical outputs, in order, errors raised, thread ended)."""

from __future__ import annotations

import threading

import cv2
import numpy as np
import pytest

from edgepose import EdgeposeError, get_spec
from edgepose.processing import (
    INPUT_FLOAT,
    INPUT_UINT8,
    TopDownPipeline,
    crop_batch,
    flip_batch,
    keypoints_from_heatmaps,
    normalize,
    transform_preds,
)

SPEC = get_spec("coco_256x192")


# ------------------------------------------------------------------------------------ the definitions
def _decode_by_loops(hm: np.ndarray, centers, scales) -> np.ndarray:
    """mmpose's _get_max_preds + 'default' post-processing, one joint at a time (the spec's wording)."""
    n, k, h, w = hm.shape
    out = np.zeros((n, k, 3), np.float32)
    for i in range(n):
        coords = np.zeros((k, 2), np.float32)
        for j in range(k):
            m = hm[i, j]
            idx = int(np.argmax(m))
            peak = m.reshape(-1)[idx]
            px, py = (float(idx % w), float(idx // w)) if peak > 0 else (-1.0, -1.0)
            ix, iy = int(px), int(py)
            if 1 < ix < w - 1 and 1 < iy < h - 1:
                px += 0.25 * np.sign(m[iy, ix + 1] - m[iy, ix - 1])
                py += 0.25 * np.sign(m[iy + 1, ix] - m[iy - 1, ix])
            coords[j] = (px, py)
            out[i, j, 2] = peak
        out[i, :, :2] = transform_preds(coords[None], centers[i : i + 1], scales[i : i + 1], (w, h))[0]
    return out


def test_vectorised_decode_equals_the_per_joint_loop():
    rng = np.random.default_rng(7)
    hm = rng.standard_normal((3, 17, 64, 48)).astype(np.float32)
    hm[0, :4] -= 10.0  # peaks <= 0: (-1, -1)
    hm[1, 5, 0, 0] = hm[1, 6, 63, 47] = hm[1, 7, 1, 30] = hm[1, 8, 40, 46] = 50.0  # border peaks: no shift
    hm[2, 9, 20, 20] = 50.0
    hm[2, 9, 20, 19] = hm[2, 9, 20, 21] = 3.0  # equal neighbours: sign 0
    centers = rng.uniform(50, 500, (3, 2)).astype(np.float32)
    scales = rng.uniform(0.3, 3, (3, 2)).astype(np.float32)
    assert np.array_equal(keypoints_from_heatmaps(hm, centers, scales), _decode_by_loops(hm, centers, scales))


def test_flip_batch_equals_numpy_mirroring():
    rng = np.random.default_rng(1)
    crops = rng.integers(0, 256, (2, 256, 192, 3), dtype=np.uint8)
    x = rng.standard_normal((2, 3, 256, 192)).astype(np.float32)
    assert np.array_equal(flip_batch(crops), crops[:, :, ::-1]) and np.array_equal(flip_batch(x), x[..., ::-1])
    norm = lambda c: normalize(c, SPEC.mean, SPEC.std)  # noqa: E731
    assert np.array_equal(norm(flip_batch(crops)), flip_batch(norm(crops)))


def test_crop_and_normalize_into_buffers_are_the_same_values():
    rng = np.random.default_rng(2)
    img = rng.integers(0, 256, (300, 400, 3), dtype=np.uint8)
    c, s = np.array([[200.0, 150.0], [10.0, 290.0]], np.float32), np.array([[1.0, 1.3], [2.0, 2.6]], np.float32)
    buf = np.zeros((2, 256, 192, 3), np.uint8)
    crops = crop_batch(img, c, s, (192, 256), out=buf)
    assert crops is buf
    from edgepose.processing import get_affine_transform

    for i in range(2):  # each slot is warpAffine's own output for that box
        m = get_affine_transform(c[i], s[i], (192, 256))
        assert np.array_equal(crops[i], cv2.warpAffine(img, m, (192, 256), flags=cv2.INTER_LINEAR))
    fbuf = np.empty((2, 3, 256, 192), np.float32)
    x = normalize(crops, SPEC.mean, SPEC.std, out=fbuf)
    ref = (crops.astype(np.float32) / np.float32(255) - np.float32(SPEC.mean) / 255) / (np.float32(SPEC.std) / 255)
    assert x is fbuf and np.allclose(x, ref.transpose(0, 3, 1, 2), atol=1e-6)


@pytest.mark.parametrize("mean,std", [
    ((124.0, 116.0, 104.0), (58.4, 57.1, 57.4)),
    ((0.0, 0.0, 0.0), (255.0, 255.0, 255.0)),
    ((103.53, 116.28, 123.675), (1.0, 2.0, 0.5)),
])
def test_detector_normalisation_is_bit_identical_to_the_float32_formula(mean, std):
    """normalize_pixels (a table per channel) gives the very bits of ``(image - mean) / std`` in float32, NCHW and
    NHWC, on frames of odd sizes; float input takes the formula itself."""
    from edgepose.processing import normalize_pixels

    rng = np.random.default_rng([7, int(std[2] * 10)])
    m, s = np.float32(mean), np.float32(std)
    for shape in [(256, 320, 3), (7, 5, 3), (1, 1, 3)]:
        img = rng.integers(0, 256, shape, dtype=np.uint8)
        ref = (img.astype(np.float32) - m) / s
        nchw, nhwc = normalize_pixels(img, mean, std), normalize_pixels(img, mean, std, nhwc=True)
        assert nchw.dtype == nhwc.dtype == np.float32 and nchw.flags.c_contiguous
        assert np.array_equal(nchw.view(np.uint32), ref.transpose(2, 0, 1)[None].view(np.uint32))
        assert np.array_equal(nhwc.view(np.uint32), ref[None].view(np.uint32))
        assert np.array_equal(normalize_pixels(img.astype(np.float32), mean, std), nchw)


# ---------------------------------------------------------------------------------- stand-in models
def float_model(spec=SPEC):
    """A deterministic stand-in for a float model: each heatmap a fixed mix of the downsampled input planes
    (mirroring the input changes the output, so the flip path is exercised)."""
    w, h = spec.heatmap_size
    mix = np.random.default_rng(11).standard_normal((spec.num_keypoints, 3)).astype(np.float32)

    def infer(batch: np.ndarray) -> np.ndarray:
        assert batch.dtype == np.float32 and batch.shape[1] == 3
        small = np.stack([[cv2.resize(p, (w, h), interpolation=cv2.INTER_AREA) for p in b] for b in batch])
        return np.einsum("kc,nchw->nkhw", mix, small).astype(np.float32)

    return infer


def uint8_model(spec=SPEC):
    """The same stand-in behind a uint8 NHWC input (normalisation inside, as ``--input uint8`` artifacts)."""
    inner = float_model(spec)

    def infer(crops: np.ndarray) -> np.ndarray:
        assert crops.dtype == np.uint8 and crops.shape[3] == 3
        return inner(normalize(crops, spec.mean, spec.std))

    infer.input_kind = INPUT_UINT8
    return infer


def _scene(seed: int, n_boxes: int):
    rng = np.random.default_rng(seed)
    img = rng.integers(0, 256, (240 + 10 * seed, 320, 3), dtype=np.uint8)
    boxes = np.c_[rng.uniform(0, 250, (n_boxes, 2)), rng.uniform(20, 200, (n_boxes, 2))].astype(np.float32)
    return img, boxes


@pytest.mark.parametrize("flip", [True, False])
def test_uint8_input_pipeline_gives_the_float_pipelines_keypoints(flip):
    img, boxes = _scene(0, 3)
    a = TopDownPipeline(SPEC, flip_test=flip)(float_model(), img, boxes)
    b = TopDownPipeline(SPEC, flip_test=flip, input_kind=INPUT_UINT8)(uint8_model(), img, boxes)
    assert np.array_equal(a, b)
    with pytest.raises(EdgeposeError, match="unknown input kind"):
        TopDownPipeline(SPEC, input_kind="uint16")


# ----------------------------------------------------------------------------------------- streaming
@pytest.mark.parametrize("kind", [INPUT_FLOAT, INPUT_UINT8])
@pytest.mark.parametrize("flip", [True, False])
def test_stream_equals_the_serial_pipeline_in_order(kind, flip):
    pipe = TopDownPipeline(SPEC, flip_test=flip, input_kind=kind)
    infer = uint8_model() if kind == INPUT_UINT8 else float_model()
    items = [_scene(i, n) for i, n in enumerate([1, 3, 0, 2, 1, 1, 4])]
    items[2] = items[2][0]  # a bare image: the whole image is the box
    serial = [pipe(infer, *(it if isinstance(it, tuple) else (it, None))) for it in items]
    for prefetch in (1, 2, 5):
        got = list(pipe.stream(infer, iter(items), prefetch=prefetch))
        assert len(got) == len(serial)
        for a, b in zip(got, serial):
            assert np.array_equal(a, b)


def test_stream_runs_the_crops_off_the_calling_thread():
    seen = set()
    inner = float_model()

    def infer(batch):
        seen.add(("infer", threading.get_ident()))
        return inner(batch)

    pipe = TopDownPipeline(SPEC, flip_test=False)
    items = [_scene(i, 1) for i in range(4)]
    original = pipe.preprocess
    pipe.preprocess = lambda *a: (seen.add(("pre", threading.get_ident())), original(*a))[1]
    list(pipe.stream(infer, items))
    me = threading.get_ident()
    assert {t for k, t in seen if k == "infer"} == {me} and me not in {t for k, t in seen if k == "pre"}


def test_stream_raises_in_order_and_ends_its_thread():
    inner = float_model()
    calls = []

    def infer(batch):
        calls.append(1)
        if len(calls) == 3:
            raise RuntimeError("engine failed on the third item")
        return inner(batch)

    before = {t.name for t in threading.enumerate()}
    gen = TopDownPipeline(SPEC, flip_test=False).stream(infer, [_scene(i, 1) for i in range(6)])
    got = []
    with pytest.raises(RuntimeError, match="third item"):
        for kp in gen:
            got.append(kp)
    assert len(got) == 2
    gen = TopDownPipeline(SPEC, flip_test=False).stream(float_model(), [_scene(i, 1) for i in range(6)])
    next(gen)
    gen.close()  # a consumer that stops early
    alive = {t.name for t in threading.enumerate()} - before
    assert not any(n.startswith("edgepose-stream") for n in alive), alive
