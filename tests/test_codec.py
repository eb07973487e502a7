"""HeatmapCodec against hand-computed values (SPEC sections 5 and 6)."""
import math

import numpy as np
import pytest
import torch

from keypoints.codec import HeatmapCodec


def test_encode_gaussian_values_and_rounding():
    codec = HeatmapCodec(input_size=(192, 256), heatmap_size=(48, 64), sigma=2.0)
    heatmaps, weights = codec.encode(np.array([[41.9, 30.1]]), np.array([2]))
    # x / 4 = 10.475 -> cell 10, y / 4 = 7.525 -> cell 8 (nearest cell, peak exactly 1 there)
    hm = heatmaps[0]
    assert hm.shape == (64, 48) and weights.tolist() == [1.0]
    assert hm[8, 10] == 1.0 and np.unravel_index(hm.argmax(), hm.shape) == (8, 10)
    assert hm[8, 11] == pytest.approx(math.exp(-1 / 8))  # exp(-d^2 / (2 sigma^2)), d = 1
    assert hm[10, 12] == pytest.approx(math.exp(-8 / 8))
    assert hm[8, 16] == pytest.approx(math.exp(-36 / 8))  # 3 sigma: still inside the 6 sigma + 1 window
    assert hm[8, 17] == 0.0 and hm[15, 10] == 0.0  # outside the window
    assert (hm > 0).sum() == 13 * 13


def test_encode_weights():
    codec = HeatmapCodec()
    kpts = np.array([[50, 50], [50, 50], [-30, 10], [-25, 10], [191 + 28, 10], [np.nan, 5]], dtype=np.float32)
    _, weights = codec.encode(kpts, np.array([2, 0, 1, 1, 1, 2]))
    # labelled -> 1; v = 0 -> 0; window fully left of the map -> 0; window touching the map -> 1; right -> 0; NaN -> 0
    assert weights.tolist() == [1, 0, 0, 1, 0, 0]


def test_decode_standard_refinement_and_scores():
    codec = HeatmapCodec(input_size=(16, 16), heatmap_size=(8, 8), sigma=1.0)
    hm = torch.zeros(1, 2, 8, 8)
    hm[0, 0, 3, 4] = 0.9
    hm[0, 0, 3, 5] = 0.5  # right neighbour higher than the left: +0.25 in x
    hm[0, 0, 2, 4] = 0.2  # upper neighbour higher than the lower: -0.25 in y
    hm[0, 1, 0, 0] = 0.7  # on the border: no refinement
    coords, scores = codec.decode(hm, refine="standard")
    assert coords[0, 0].tolist() == [(4 + 0.25) * 2, (3 - 0.25) * 2]  # input pixels = cells x stride 2
    assert coords[0, 1].tolist() == [0.0, 0.0]
    assert scores[0].tolist() == pytest.approx([0.9, 0.7])
    none, _ = codec.decode(hm, refine="none")
    assert none[0, 0].tolist() == [8.0, 6.0]


def test_dark_recovers_subpixel_centres():
    codec = HeatmapCodec()
    ys, xs = torch.meshgrid(torch.arange(64.0), torch.arange(48.0), indexing="ij")
    centres = [(20.3, 30.7), (10.8, 12.2), (33.5, 50.1)]
    hm = torch.stack([torch.exp(-((xs - x) ** 2 + (ys - y) ** 2) / 8) for x, y in centres])[None]
    cells, _ = codec.decode_cells(hm, refine="dark")
    torch.testing.assert_close(cells[0], torch.tensor(centres), atol=0.02, rtol=0)
    standard, _ = codec.decode_cells(hm, refine="standard")
    assert (standard[0] - torch.tensor(centres)).abs().max() <= 0.25 + 1e-6


def test_encode_decode_round_trip_on_cells():
    codec = HeatmapCodec()
    rng = np.random.default_rng(0)
    cells = rng.integers(2, 40, size=(17, 2)).astype(np.float32)
    heatmaps, _ = codec.encode(cells * 4, np.full(17, 2))
    coords, scores = codec.decode(torch.from_numpy(heatmaps)[None])
    torch.testing.assert_close(coords[0], torch.from_numpy(cells * 4))
    assert torch.all(scores == 1)


def test_bad_arguments():
    with pytest.raises(ValueError, match="positive"):
        HeatmapCodec(sigma=0)
    with pytest.raises(ValueError, match="unknown refinement 'udp'"):
        HeatmapCodec().decode(torch.zeros(1, 1, 4, 4), refine="udp")
    with pytest.raises(ValueError, match=r"\(B, K, H, W\)"):
        HeatmapCodec().decode(torch.zeros(4, 4))
