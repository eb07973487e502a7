"""Crop transforms: keypoints follow the pixels, inverse maps back, flip, half-body, sampling families, targets."""
import warnings

import albumentations as A
import cv2
import numpy as np
import pytest

from keypoints.codec import HeatmapCodec
from keypoints.constants import FLIP_INDEX, KEYPOINT_NAMES, LOWER_BODY, UPPER_BODY
from keypoints.data.transforms import (TopDownTransform, build_photometric, flip_keypoints, flip_matrix,
                                       half_body_box, inverse_matrix)
from keypoints.geometry import affine_points, get_affine_transform

INPUT = (192, 256)


def _scene(seed=0, w=320, h=240, k=17):
    rng = np.random.default_rng(seed)
    kpts = np.stack([rng.uniform(20, w - 20, k), rng.uniform(20, h - 20, k)], 1).astype(np.float32)
    return rng, kpts, np.full(k, 2)


def _random_transform(seed, flip_prob=0.5, family="hrnet"):
    return TopDownTransform(INPUT, flip_prob=flip_prob, family=family, scale_range=(0.65, 1.35), rotation_max=80,
                            rotation_prob=1.0, shift_factor=0.1, shift_prob=0.5, seed=seed)


def test_flip_index_swaps_left_and_right_names():
    for i, j in enumerate(FLIP_INDEX):
        a, b = KEYPOINT_NAMES[i], KEYPOINT_NAMES[j]
        swapped = a.replace("left", "#").replace("right", "left").replace("#", "right")
        assert b == swapped, (a, b)
    assert sorted(FLIP_INDEX) == list(range(17))
    assert all(FLIP_INDEX[FLIP_INDEX[i]] == i for i in range(17))


def test_flip_twice_is_identity():
    _, kpts, vis = _scene()
    vis = np.arange(17) % 3
    once_k, once_v = flip_keypoints(kpts, vis, 320)
    assert not np.allclose(once_k, kpts)
    twice_k, twice_v = flip_keypoints(once_k, once_v, 320)
    np.testing.assert_allclose(twice_k, kpts, atol=1e-4)  # float32 rounding of W - 1 - x
    np.testing.assert_array_equal(twice_v, vis)
    # The folded flip matrix applied twice is the identity as well.
    np.testing.assert_allclose(flip_matrix(320) @ flip_matrix(320), np.eye(3))


def test_flipped_crop_equals_crop_of_flipped_image():
    """Folding the flip into the matrix gives HRNet's image[:, ::-1] followed by the crop."""
    rng = np.random.default_rng(1)
    image = rng.integers(0, 256, size=(240, 320, 3), dtype=np.uint8)
    kpts, vis = rng.uniform(0, 300, (17, 2)).astype(np.float32), np.full(17, 2)
    t = TopDownTransform(INPUT, flip_prob=1.0, seed=0)
    center, scale = np.array([150.0, 110.0]), np.array([120.0, 160.0])
    out = t(image, center, scale, kpts, vis)
    assert out["params"].flip
    flipped = np.ascontiguousarray(image[:, ::-1])
    m = get_affine_transform(np.array([320 - 1 - 150.0, 110.0]), scale, 0.0, INPUT)
    ref = cv2.warpAffine(flipped, m, INPUT, flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT, borderValue=0)
    assert np.abs(out["image"].astype(int) - ref.astype(int)).max() <= 1  # float rounding of the sample positions
    fk, fv = flip_keypoints(kpts, vis, 320)
    np.testing.assert_allclose(out["keypoints"], affine_points(fk, m), atol=1e-3)


@pytest.mark.parametrize("family", ["hrnet", "mmpose"])
@pytest.mark.parametrize("seed", range(5))
def test_crop_then_inverse_maps_keypoints_back(seed, family):
    rng, kpts, vis = _scene(seed)
    image = np.zeros((240, 320, 3), np.uint8)
    t = _random_transform(seed, family=family)
    out = t(image, np.array([160.0, 120.0]), np.array([150.0, 200.0]), kpts, vis)
    p = out["params"]
    back = affine_points(out["keypoints"], inverse_matrix(out["matrix"]))
    if p.flip:  # undo the swap: crop joint j came from image joint FLIP_INDEX[j]
        back = back[np.asarray(FLIP_INDEX)]
    np.testing.assert_allclose(back, kpts, atol=1e-3)
    # Same through geometry's inverse matrix (the one inference uses), in the flipped image.
    inv = get_affine_transform(p.center, p.scale, p.rotation, INPUT, p.shift, inverse=True)
    ref = flip_keypoints(kpts, vis, 320)[0] if p.flip else kpts
    np.testing.assert_allclose(affine_points(out["keypoints"], inv), ref, atol=1e-3)


@pytest.mark.parametrize("seed", range(6))
def test_keypoints_follow_the_pixels(seed):
    """A bright dot at a keypoint lands where the transformed keypoint says (rotation, scale, flip, shift)."""
    image = np.zeros((240, 320, 3), np.uint8)
    kpt = np.array([[171.0, 97.0]], np.float32)
    cv2.circle(image, (171, 97), 2, (255, 255, 255), -1)
    t = TopDownTransform(INPUT, flip_prob=0.5, scale_range=(0.5, 0.8), rotation_max=90, rotation_prob=1.0,
                         shift_factor=0.1, shift_prob=1.0, flip_index=[0], seed=seed)
    out = t(image, np.array([160.0, 120.0]), np.array([90.0, 120.0]), kpt, np.array([2]))
    ys, xs = np.nonzero(out["image"][..., 0] > 40)
    w = out["image"][ys, xs, 0].astype(float)
    centroid = np.array([(xs * w).sum() / w.sum(), (ys * w).sum() / w.sum()])
    np.testing.assert_allclose(centroid, out["keypoints"][0], atol=0.5)


def test_validation_transform_is_the_plain_crop():
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, size=(240, 320, 3), dtype=np.uint8)
    t = TopDownTransform(INPUT)
    assert not t.is_random
    center, scale = np.array([100.5, 140.0]), np.array([90.0, 120.0])
    out = t(image, center, scale, np.zeros((17, 2)), np.zeros(17))
    m = get_affine_transform(center, scale, 0.0, INPUT)
    np.testing.assert_array_equal(out["image"], cv2.warpAffine(image, m, INPUT, flags=cv2.INTER_LINEAR))
    # bgr=True swaps the channels of the crop only
    out_bgr = t(image, center, scale, np.zeros((17, 2)), np.zeros(17), bgr=True)
    np.testing.assert_array_equal(out_bgr["image"], out["image"][..., ::-1])


def test_target_weights_zero_outside_window_and_for_unlabelled():
    codec = HeatmapCodec(INPUT, (48, 64), 2.0)
    image = np.zeros((240, 320, 3), np.uint8)
    kpts = np.array([[160, 120]] * 17, np.float32)
    kpts[1] = (160 + 500, 120)  # far right of the crop: window outside the heatmap
    kpts[2] = (160, 120 - 400)  # far above
    kpts[3] = (160 + 45 + 13, 120)  # just outside the crop on the right: window (radius 6 cells) still touches
    vis = np.full(17, 2)
    vis[4] = 0  # unlabelled
    vis[5] = 1  # occluded but labelled -> supervised
    out = TopDownTransform(INPUT)(image, np.array([160.0, 120.0]), np.array([96.0, 128.0]), kpts, vis)
    assert out["keypoints"][3, 0] > INPUT[0]  # outside the crop ...
    heatmaps, weights = codec.encode(out["keypoints"], out["visibility"])
    expected = np.ones(17, np.float32)
    expected[[1, 2, 4]] = 0
    np.testing.assert_array_equal(weights, expected)
    assert heatmaps[[1, 2, 4]].max() == 0 and heatmaps[3].max() > 0  # ... but its window reaches in
    assert heatmaps[0].max() == pytest.approx(1.0)


def test_half_body_box_hrnet_rule():
    rng, kpts, vis = _scene(3)
    box = half_body_box(kpts, vis, np.random.default_rng(0), aspect_ratio=0.75, upper_body_prob=1.0, enlarge=1.5)
    chosen = kpts[list(UPPER_BODY)]
    center, scale = box
    np.testing.assert_allclose(center, chosen.mean(0), rtol=1e-6)
    extent = chosen.max(0) - chosen.min(0)
    assert scale[0] / scale[1] == pytest.approx(0.75)
    assert (scale >= extent * 1.5 - 1e-4).all() and np.isclose(scale, extent * 1.5).any()
    center, _ = half_body_box(kpts, vis, np.random.default_rng(0), 0.75, upper_body_prob=0.0)
    np.testing.assert_allclose(center, kpts[list(LOWER_BODY)].mean(0), rtol=1e-6)
    vis_low = np.zeros(17)
    vis_low[[11, 12]] = 2
    vis_low[[0, 1, 2]] = 2  # upper has 3 (> 2) -> upper even when lower preferred
    center, _ = half_body_box(kpts, vis_low, np.random.default_rng(0), 0.75, upper_body_prob=0.0)
    np.testing.assert_allclose(center, kpts[[0, 1, 2]].mean(0), rtol=1e-6)
    assert half_body_box(kpts, (np.arange(17) == 0) * 2, np.random.default_rng(0), 0.75) is None


def test_half_body_needs_min_joints():
    _, kpts, vis = _scene(4)
    image = np.zeros((240, 320, 3), np.uint8)
    t = TopDownTransform(INPUT, half_body_prob=1.0, half_body_min_joints=9, seed=0)
    center, scale = np.array([160.0, 120.0]), np.array([300.0, 400.0])
    assert t(image, center, scale, kpts, vis)["params"].half_body
    few = np.where(np.arange(17) < 8, 2, 0)
    assert not t(image, center, scale, kpts, few)["params"].half_body


@pytest.mark.parametrize("family", ["hrnet", "mmpose"])
def test_scale_rotation_families(family):
    t = TopDownTransform(INPUT, family=family, scale_range=(0.65, 1.35), rotation_max=80, rotation_prob=0.6, seed=0)
    draws = np.array([t._scale_rotation() for _ in range(4000)])
    s, r = draws[:, 0], draws[:, 1]
    assert s.min() >= 0.65 and s.max() <= 1.35 and abs(s.mean() - 1.0) < 0.02
    assert r.min() >= -80 and r.max() <= 80
    assert abs((r != 0).mean() - 0.6) < 0.03
    if family == "hrnet":  # clip(N(1, 0.35)): 32 % of the draws land on the bounds
        assert 0.25 < np.isin(s, [0.65, 1.35]).mean() < 0.38
        assert abs(np.std(r[r != 0]) - 37.0) < 3.0  # clip(N(0, 40), -80, 80)
    else:  # truncated normal: nothing piles up on the bounds
        assert np.isin(s, [0.65, 1.35]).mean() == 0
        assert abs(np.std(r[r != 0]) - 80 * 0.5396) < 3.0  # std of N(0, 1) truncated to [-1, 1]
    with pytest.raises(ValueError, match="family"):
        TopDownTransform(INPUT, family="ssd")


def test_reseed_reproduces_geometry_and_photometric():
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, size=(240, 320, 3), dtype=np.uint8)
    photometric = build_photometric(1.0, 1.0, 1.0, 1.0, seed=0)
    t = TopDownTransform(INPUT, flip_prob=0.5, scale_range=(0.7, 1.3), rotation_max=40, rotation_prob=1.0,
                         photometric=photometric, seed=0)
    args = (image, np.array([160.0, 120.0]), np.array([150.0, 200.0]), np.zeros((17, 2)), np.full(17, 2))
    t.reseed(123)
    first = [t(*args)["image"] for _ in range(3)]
    t.reseed(123)
    again = [t(*args)["image"] for _ in range(3)]
    for a, b in zip(first, again):
        np.testing.assert_array_equal(a, b)
    assert not np.array_equal(first[0], first[1])


def test_photometric_is_strict_and_keeps_shape():
    with warnings.catch_warnings(), pytest.raises(ValueError, match="blur_limits"):
        warnings.simplefilter("ignore")  # albumentations also warns at the transform's construction
        A.Compose([A.Blur(blur_limits=3)], strict=True)  # a misspelt argument fails instead of being ignored
    aug = build_photometric(1.0, 1.0, 1.0, 1.0, seed=0)
    crop = np.full((256, 192, 3), 128, np.uint8)
    out = aug(image=crop)["image"]
    assert out.shape == crop.shape and out.dtype == np.uint8
