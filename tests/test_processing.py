"""The shared pipeline against hand-computed cases from the mmpose spec."""

from __future__ import annotations

import numpy as np
import pytest

from edgepose import EdgeposeError, get_spec
from edgepose.processing import (
    TopDownPipeline,
    box_to_center_scale,
    clean_coco_box,
    crop,
    get_affine_transform,
    keypoints_from_heatmaps,
    merge_flip,
    mpii_center_scale,
    normalize,
    transform_preds,
)


def gaussian(h, w, x0, y0, sigma=2.0, peak=1.0):
    ys, xs = np.mgrid[0:h, 0:w]
    return peak * np.exp(-((xs - x0) ** 2 + (ys - y0) ** 2) / (2 * sigma**2))


# ------------------------------------------------------------------------------------ centre / scale
def test_center_scale_wide_box_grows_height():
    c, s = box_to_center_scale([[10, 20, 100, 100]], aspect_ratio=192 / 256, padding=1.25)
    np.testing.assert_allclose(c[0], [60, 70])
    # w=100 > 0.75*100, so h = 100/0.75 = 133.33; scale = [100, 133.33]/200*1.25
    np.testing.assert_allclose(s[0], [0.625, 100 / 0.75 / 200 * 1.25], rtol=1e-6)


def test_center_scale_tall_box_grows_width_and_panoptic_padding():
    c, s = box_to_center_scale([[0, 0, 30, 200]], aspect_ratio=192 / 256, padding=1.25)
    np.testing.assert_allclose(s[0], [150 / 200 * 1.25, 200 / 200 * 1.25], rtol=1e-6)
    _, s = box_to_center_scale([[5, 5, 40, 80]], aspect_ratio=1.0, padding=get_spec("panoptic_256x256").box_padding)
    np.testing.assert_allclose(s[0], [80 / 200 * 1.76, 80 / 200 * 1.76], rtol=1e-6)


def test_mpii_center_shift_and_padding():
    c, s = mpii_center_scale([[100.0, 200.0], [-1.0, 50.0]], [2.0, 3.0])
    np.testing.assert_allclose(c[0], [99.0, 229.0])  # y += 15*2, then -1
    np.testing.assert_allclose(s[0], [2.5, 2.5])
    np.testing.assert_allclose(c[1], [-2.0, 49.0])  # no shift when c[0] == -1, still -1
    np.testing.assert_allclose(s[1], [3.0, 3.0])


def test_clean_coco_box():
    np.testing.assert_allclose(clean_coco_box([-5, 10, 50, 30], 640, 480), [0, 10, 49, 29])
    np.testing.assert_allclose(clean_coco_box([600, 400, 100, 100], 640, 480), [600, 400, 39, 79])
    assert clean_coco_box([10, 10, 0, 5], 640, 480) is None


# ------------------------------------------------------------------------------------------- affine
def test_affine_maps_center_and_corners():
    center, scale, out = np.array([300.0, 200.0]), np.array([1.5, 2.0]), (192, 256)
    m = get_affine_transform(center, scale, out)
    def apply(p):
        return m @ np.array([p[0], p[1], 1.0])
    np.testing.assert_allclose(apply(center), [96, 128], atol=1e-4)
    half = scale * 200 / 2  # (150, 200): the padded box corners map to the crop corners
    np.testing.assert_allclose(apply(center - half), [0, 0], atol=1e-4)
    np.testing.assert_allclose(apply(center + half), [192, 256], atol=1e-4)
    inv = get_affine_transform(center, scale, out, inv=True)
    np.testing.assert_allclose(inv @ np.array([96, 128, 1.0]), center, atol=1e-4)


def test_crop_samples_the_right_pixels():
    img = np.zeros((400, 600, 3), np.uint8)
    img[190:210, 290:310] = 255  # a white square at the box centre (300, 200)
    out = crop(img, [300.0, 200.0], [0.96, 1.28], (192, 256))  # factor 1: 192 px wide box
    assert out.shape == (256, 192, 3)
    assert out[128, 96].tolist() == [255, 255, 255] and out[0, 0].tolist() == [0, 0, 0]
    ys, xs = np.nonzero(out[..., 0] > 128)
    assert abs(xs.mean() - 96) <= 1 and abs(ys.mean() - 128) <= 1


def test_normalize_matches_mmpose_to_tensor_then_normalize():
    crops = np.random.default_rng(0).integers(0, 256, (2, 4, 3, 3), dtype=np.uint8)
    x = normalize(crops, (123.675, 116.28, 103.53), (58.395, 57.12, 57.375))
    ref = (crops.astype(np.float64) / 255 - [0.485, 0.456, 0.406]) / [0.229, 0.224, 0.225]
    assert x.shape == (2, 3, 4, 3) and x.dtype == np.float32
    np.testing.assert_allclose(x, ref.transpose(0, 3, 1, 2), atol=1e-5)


# ------------------------------------------------------------------------------------------- decode
@pytest.mark.parametrize("x0, y0", [(20.3, 30.6), (10.49, 12.1), (33.0, 40.0), (5.7, 60.2)])
def test_decode_recovers_gaussian_peak_within_quarter_pixel(x0, y0):
    hm = gaussian(64, 48, x0, y0)[None, None]
    kp = keypoints_from_heatmaps(hm, np.array([[24.0, 32.0]]), np.array([[48 / 200, 64 / 200]]))
    # centre (24, 32) and scale*200 = (48, 64): image coordinates equal heatmap coordinates
    assert abs(kp[0, 0, 0] - x0) <= 0.25 + 1e-6 and abs(kp[0, 0, 1] - y0) <= 0.25 + 1e-6
    assert kp[0, 0, 2] == pytest.approx(hm.max())


def _decode_hm(hm):
    """Decode in heatmap coordinates (identity transform)."""
    h, w = hm.shape[-2:]
    return keypoints_from_heatmaps(hm[None, None], np.array([[w / 2, h / 2]]), np.array([[w / 200, h / 200]]))[0, 0]


def test_shift_rule_edge_cases():
    h, w = 64, 48
    for px, expect in [(0, 0.0), (1, 1.0), (w - 1, w - 1.0), (2, 2.25), (w - 2, w - 2 + 0.25)]:
        hm = np.zeros((h, w), np.float32)
        hm[30, px] = 1.0
        if px + 1 < w:
            hm[30, px + 1] = 0.5  # right neighbour higher than left: +0.25 where the rule applies
        assert _decode_hm(hm)[0] == pytest.approx(expect), px
    hm = np.zeros((h, w), np.float32)
    hm[1, 20], hm[2, 20] = 1.0, 0.5  # row 1 is a border row: no y shift
    assert _decode_hm(hm)[1] == pytest.approx(1.0)
    hm = np.zeros((h, w), np.float32)
    hm[30, 20] = 1.0
    hm[30, 19] = hm[30, 21] = 0.5  # equal neighbours: sign 0, no shift
    assert tuple(_decode_hm(hm)[:2]) == (20.0, 30.0)


def test_flat_and_negative_maps():
    flat = np.zeros((64, 48), np.float32)
    x, y, s = _decode_hm(flat)
    assert (x, y, s) == (-1.0, -1.0, 0.0)  # max <= 0: (-1, -1), mapped with the identity transform
    neg = -np.ones((64, 48), np.float32)
    neg[5, 5] = -0.1
    x, y, s = _decode_hm(neg)
    assert s <= 0 and (x, y) == (-1.0, -1.0)
    const = np.full((64, 48), 0.3, np.float32)
    assert tuple(_decode_hm(const)) == pytest.approx((0.0, 0.0, 0.3))  # first argmax, border: no shift


def test_transform_preds_by_hand():
    out = transform_preds(np.array([[[10.0, 20.0]]]), np.array([[300.0, 200.0]]), np.array([[1.2, 1.6]]), (48, 64))
    # x = 10 * 240/48 + 300 - 120 = 230 ; y = 20 * 320/64 + 200 - 160 = 140
    np.testing.assert_allclose(out[0, 0], [230.0, 140.0])


def test_dark_decoder_is_closer_than_default_on_a_gaussian():
    hm = gaussian(64, 48, 20.3, 30.6)[None, None].astype(np.float32)
    c, s = np.array([[24.0, 32.0]]), np.array([[48 / 200, 64 / 200]])
    dark = keypoints_from_heatmaps(hm, c, s, "dark")[0, 0]
    default = keypoints_from_heatmaps(hm, c, s, "default")[0, 0]
    err = lambda k: np.hypot(k[0] - 20.3, k[1] - 30.6)  # noqa: E731
    assert err(dark) < 0.05 < err(default)
    with pytest.raises(EdgeposeError, match="unknown decoder"):
        keypoints_from_heatmaps(hm, c, s, "udp")


# ---------------------------------------------------------------------------------------- flip test
def test_merge_flip_definition_loop():
    rng = np.random.default_rng(1)
    hm, hf = rng.random((2, 17, 8, 6)), rng.random((2, 17, 8, 6))
    pairs = get_spec("coco_256x192").flip_pairs
    swap = {a: b for a, b in pairs} | {b: a for a, b in pairs}
    ref = np.empty_like(hm)
    for n in range(2):
        for k in range(17):
            back = hf[n, swap.get(k, k), :, ::-1]
            shifted = back.copy()
            for x in range(1, 6):
                shifted[:, x] = back[:, x - 1]
            ref[n, k] = (hm[n, k] + shifted) / 2
    np.testing.assert_allclose(merge_flip(hm, hf, pairs), ref)


def dot_detector(spec, left: int, right: int):
    """A stand-in model: channel ``left`` peaks at the bright dot in the input's left half, ``right`` at the other."""
    hw, hh = spec.heatmap_size

    def infer(batch):
        out = np.zeros((len(batch), spec.num_keypoints, hh, hw), np.float32)
        for i, img in enumerate(batch):
            ys, xs = np.nonzero(img[0] > 1.0)
            for ch, side in ((left, xs < img.shape[2] / 2), (right, xs >= img.shape[2] / 2)):
                out[i, ch] = gaussian(hh, hw, xs[side].mean() / 4, ys[side].mean() / 4)
        return out

    return infer


def test_flip_test_on_symmetric_input_mirrors_and_swaps_pairs():
    spec = get_spec("coco_256x192")
    img = np.zeros((256, 192, 3), np.uint8)
    img[98:102, 38:42] = 255  # two dots mirrored about the vertical centre line (x -> 191 - x)
    img[98:102, 150:154] = 255
    box = np.array([[0, 0, 192, 256]], np.float32)
    a, b = spec.flip_pairs[0]  # left_eye, right_eye
    kp_noflip = TopDownPipeline(spec, flip_test=False)(dot_detector(spec, a, b), img, box)[0]
    kp = TopDownPipeline(spec, flip_test=True)(dot_detector(spec, a, b), img, box)[0]
    # mirrored: x_a + x_b is the image width (within the one-column shift), same row
    assert abs((kp[a, 0] + kp[b, 0]) - 191) <= 4 and abs(kp[a, 1] - kp[b, 1]) <= 1e-3
    # pairs swapped on the way back: the flipped pass lands on the same dot, so the peaks add up (no 0.5 split)
    assert kp[a, 2] > 0.9 and kp[b, 2] > 0.9
    assert abs(kp[a, 0] - kp_noflip[a, 0]) <= 2 and kp[a, 0] < 96 < kp[b, 0]


def test_flip_without_pair_swap_would_split_the_peak():
    """Guards the previous test: with hands (no pairs) the same detector's channels land on opposite dots."""
    spec = get_spec("rhd_256x256")
    img = np.zeros((256, 256, 3), np.uint8)
    img[98:102, 38:42] = 255
    img[98:102, 214:218] = 255
    kp = TopDownPipeline(spec, flip_test=True)(dot_detector(spec, 1, 2), img, np.array([[0, 0, 256, 256]]))[0]
    assert kp[1, 2] < 0.6  # the flipped pass put channel 1 on the other dot: two half-height peaks
