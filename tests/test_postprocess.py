"""Post-processing: rescoring, OKS and (soft) OKS-NMS against plain references, and the shared instance policy."""
import math

import numpy as np
import pytest
import torch

from keypoints.constants import FLIP_INDEX, OKS_SIGMAS
from keypoints.postprocess import (instance_areas, nms_per_image, oks_matrix, oks_nms, rescore, select_instances,
                                   soft_oks_nms)

K = len(FLIP_INDEX)


# ----------------------------------------------------------------------------- rescoring


def _hrnet_rescore(box_score, kpt_scores, thr):
    kpt_score, valid = 0.0, 0
    for s in kpt_scores:
        if s > thr:
            kpt_score += s
            valid += 1
    if valid != 0:
        kpt_score /= valid
    return kpt_score * box_score


def test_rescore_matches_hrnet_loop():
    rng = np.random.default_rng(3)
    box = rng.uniform(0, 1, 20)
    kpt = rng.uniform(0, 0.5, (20, K))
    kpt[0] = 0.1  # nothing above the threshold -> 0
    kpt[1, 3] = 0.2  # exactly the threshold does not count
    expected = np.array([_hrnet_rescore(b, s, 0.2) for b, s in zip(box, kpt)])
    out_np = rescore(box, kpt, thr=0.2)
    assert isinstance(out_np, np.ndarray)
    np.testing.assert_allclose(out_np, expected, rtol=1e-12)
    assert out_np[0] == 0.0
    out_t = rescore(torch.from_numpy(box).float(), torch.from_numpy(kpt).float(), thr=0.2)
    assert isinstance(out_t, torch.Tensor) and out_t.dtype == torch.float32
    np.testing.assert_allclose(out_t.numpy(), expected, rtol=1e-5)


def test_instance_areas():
    assert instance_areas(np.array([[2.0, 3.0], [4.0, 5.0]])).tolist() == [6.0, 20.0]


# ----------------------------------------------------------------------------- OKS and NMS


def _oks_plain(g, d, a_g, a_d, sigmas, vis_thr=None):
    total, count = 0.0, 0
    for j, sigma in enumerate(sigmas):
        if vis_thr is not None and not (g[j][2] > vis_thr and d[j][2] > vis_thr):
            continue
        var = (sigma * 2) ** 2
        dist2 = (d[j][0] - g[j][0]) ** 2 + (d[j][1] - g[j][1]) ** 2
        total += math.exp(-(dist2 / var / ((a_g + a_d) / 2 + np.spacing(1)) / 2))
        count += 1
    return total / count if count else 0.0


def _oks_nms_plain(kpts, scores, areas, thr, sigmas=OKS_SIGMAS, vis_thr=None):
    """Greedy NMS with loops; ties: the larger index first (HRNet's reversed argsort)."""
    order = sorted(range(len(scores)), key=lambda i: (-scores[i], -i))
    keep = []
    while order:
        i = order.pop(0)
        keep.append(i)
        order = [j for j in order if _oks_plain(kpts[i], kpts[j], areas[i], areas[j], sigmas, vis_thr) <= thr]
    return keep


def _random_instances(rng, n, n_people=4):
    """n instances around a few people, so that OKS spans from ~0 to ~1; scores with ties."""
    people = rng.uniform(0, 300, size=(n_people, K, 2))
    who = rng.integers(0, n_people, n)
    noise = rng.normal(0, 1, size=(n, 1, 1)) * rng.uniform(0.5, 12, size=(n, 1, 1))
    xy = people[who] + noise * rng.normal(0, 1, size=(n, K, 2))
    kpts = np.concatenate([xy, rng.uniform(0, 1, size=(n, K, 1))], axis=-1)
    scores = rng.integers(0, 5, n) / 4.0  # few values -> ties
    areas = rng.uniform(2000, 20000, n)
    return kpts, scores, areas


def test_oks_matrix_matches_plain():
    rng = np.random.default_rng(4)
    kpts, _, areas = _random_instances(rng, 9)
    for vis_thr in (None, 0.3):
        m = oks_matrix(kpts, kpts[:5], areas, areas[:5], vis_thr=vis_thr)
        assert m.shape == (9, 5)
        ref = [[_oks_plain(kpts[i], kpts[j], areas[i], areas[j], OKS_SIGMAS, vis_thr) for j in range(5)]
               for i in range(9)]
        np.testing.assert_allclose(m, ref, rtol=1e-12, atol=1e-15)
    assert np.allclose(np.diag(oks_matrix(kpts, kpts, areas, areas)), 1.0)


@pytest.mark.parametrize("seed", range(8))
@pytest.mark.parametrize("thr", [0.5, 0.9])
def test_oks_nms_matches_plain_reference(seed, thr):
    rng = np.random.default_rng(seed)
    n = int(rng.integers(1, 30))
    kpts, scores, areas = _random_instances(rng, n)
    keep = oks_nms(kpts, scores, areas, thr=thr)
    assert keep.dtype == np.int64
    assert keep.tolist() == _oks_nms_plain(kpts, scores, areas, thr)
    assert (np.diff(scores[keep]) <= 0).all()  # descending score order
    vis = oks_nms(kpts, scores, areas, thr=thr, vis_thr=0.3)
    assert vis.tolist() == _oks_nms_plain(kpts, scores, areas, thr, vis_thr=0.3)


def test_oks_nms_does_work_and_edge_cases():
    rng = np.random.default_rng(11)
    kpts, scores, areas = _random_instances(rng, 25)
    assert 0 < len(oks_nms(kpts, scores, areas, thr=0.9)) < 25
    assert oks_nms(np.zeros((0, K, 3)), np.zeros(0), np.zeros(0)).tolist() == []
    # An exact duplicate is always suppressed; with equal scores the larger index survives.
    dup = np.concatenate([kpts[:1], kpts[:1]])
    assert oks_nms(dup, np.array([0.5, 0.5]), np.array([1e4, 1e4])).tolist() == [1]
    assert oks_nms(dup, np.array([0.7, 0.5]), np.array([1e4, 1e4])).tolist() == [0]


def test_soft_oks_nms_sanity():
    rng = np.random.default_rng(5)
    # Far-apart instances: nothing decays, all kept in descending score order.
    far = np.zeros((5, K, 3))
    far[..., :2] = np.arange(5)[:, None, None] * 1000.0
    scores = np.array([0.3, 0.9, 0.5, 0.1, 0.7])
    keep, decayed = soft_oks_nms(far, scores, np.full(5, 1e4), thr=0.9)
    assert keep.tolist() == [1, 4, 2, 0, 3]
    np.testing.assert_allclose(decayed, scores[keep])
    # An exact duplicate (OKS 1) decays by exp(-1 / thr) and falls behind a lower, non-overlapping instance.
    kpts = np.concatenate([far[:1], far[:1], far[1:2]])
    keep, decayed = soft_oks_nms(kpts, np.array([0.9, 0.8, 0.5]), np.full(3, 1e4), thr=0.9)
    assert keep.tolist() == [0, 2, 1]
    np.testing.assert_allclose(decayed, [0.9, 0.5, 0.8 * math.exp(-1 / 0.9)])
    # Soft NMS drops nothing except beyond max_dets; kept scores never increase.
    kpts, scores, areas = _random_instances(rng, 30)
    keep, decayed = soft_oks_nms(kpts, scores, areas, thr=0.9, max_dets=20)
    assert len(keep) == 20 and len(set(keep.tolist())) == 20
    assert (decayed <= scores[keep] + 1e-12).all() and (np.diff(decayed) <= 1e-12).all()
    assert soft_oks_nms(kpts[:0], scores[:0], areas[:0])[0].tolist() == []


def test_nms_per_image_groups_by_image():
    rng = np.random.default_rng(6)
    kpts, scores, areas = _random_instances(rng, 40)
    image_ids = rng.choice([7, 3, 12], size=40)
    keep = nms_per_image(image_ids, kpts, scores, areas, thr=0.9)
    expected = []
    for img in (3, 7, 12):
        idx = np.flatnonzero(image_ids == img)
        expected += idx[oks_nms(kpts[idx], scores[idx], areas[idx], thr=0.9)].tolist()
    assert keep.tolist() == expected
    soft = nms_per_image(image_ids, kpts, scores, areas, thr=0.9, soft=True, max_dets=5)
    assert all((image_ids[soft] == img).sum() == min(5, (image_ids == img).sum()) for img in (3, 7, 12))
    assert nms_per_image(np.zeros(0), np.zeros((0, K, 3)), np.zeros(0), np.zeros(0)).tolist() == []
    with pytest.raises(ValueError, match="one entry per instance"):
        nms_per_image(image_ids[:3], kpts, scores, areas)


def test_select_instances_is_rescoring_then_nms_per_image():
    """The one instance policy (evaluation and the API): rescoring, then OKS-NMS per image; without NMS every
    instance is kept, best first within each image."""
    rng = np.random.default_rng(5)
    n = 12
    ids = np.repeat([3, 1, 2], 4)
    centres = rng.uniform(50, 400, size=(3, 1, 2)).repeat(4, axis=0)[:n]
    kpts = np.concatenate([centres + rng.normal(0, 2, (n, K, 2)), rng.uniform(0, 1, (n, K, 1))], axis=-1)
    box_scores, areas = rng.uniform(0.5, 1, n), rng.uniform(5e3, 2e4, n)
    keep, scores = select_instances(ids, kpts, box_scores, areas, kpt_score_thr=0.2, oks_nms_thr=0.9)
    np.testing.assert_allclose(scores, rescore(box_scores, kpts[..., 2], thr=0.2))
    np.testing.assert_array_equal(keep, nms_per_image(ids, kpts, scores, areas, thr=0.9))
    assert len(keep) < n  # near-duplicates went
    order, _ = select_instances(ids, kpts, box_scores, areas, oks_nms_thr=None)
    assert sorted(order.tolist()) == list(range(n))
    for image_id in (1, 2, 3):
        mine = [i for i in order if ids[i] == image_id]
        assert np.all(np.diff(scores[mine]) <= 0)
    assert [ids[i] for i in order] == sorted(ids.tolist())
