"""PoseTracker on synthetic tracks: people appearing, disappearing and coming back (within and after max_missed),
two people swapping places slowly, crossing at a steady pace, and smoothing that follows identity."""
from __future__ import annotations

import numpy as np
import pytest

from keypoints.metadata import DatasetMeta
from keypoints.smoothing import OneEuroFilter
from keypoints.tracking import PoseTracker, greedy_match

SIGMAS = DatasetMeta.coco_person().sigmas
# A standing person about 100 px wide and 200 px tall around (0, 0): 17 joints in COCO order.
TEMPLATE = np.array([[0, -90], [8, -95], [-8, -95], [16, -92], [-16, -92], [30, -60], [-30, -60], [40, -20],
                     [-40, -20], [45, 15], [-45, 15], [18, 10], [-18, 10], [20, 55], [-20, 55], [22, 100],
                     [-22, 100]], dtype=np.float64)


def person(x: float, y: float, score: float = 0.9) -> np.ndarray:
    kp = np.concatenate([TEMPLATE + (x, y), np.full((17, 1), score)], axis=1)
    return kp


def frame(*centres) -> np.ndarray:
    return np.stack([person(x, y) for x, y in centres]) if centres else np.zeros((0, 17, 3))


def tracker(**kwargs) -> PoseTracker:
    return PoseTracker(SIGMAS, **{"max_missed": 3, **kwargs})


def test_appear_disappear_and_return():
    t = tracker()
    ids = lambda *c: t.update(frame(*c), ids.time)[0].tolist()  # noqa: E731
    ids.time = 0.0

    def step(*centres):
        ids.time += 1 / 30
        return ids(*centres)
    assert step((100, 200)) == [1]
    assert step((102, 200), (400, 200)) == [1, 2]  # a new person: the next id
    assert step((104, 200)) == [1]  # person 2 missed 1 frame
    assert step((106, 200)) == [1]
    assert step((108, 200), (400, 201)) == [1, 2]  # back within max_missed (3): same id
    for _ in range(4):  # person 2 gone for 4 frames > max_missed: retired
        step((110, 200))
    assert [tr.track_id for tr in t.tracks] == [1]
    assert step((110, 200), (400, 200)) == [1, 3]  # back too late: a new id, never a reused one
    assert step((400, 200), (110, 200)) == [3, 1]  # ids belong to people, not to the order of the input
    t.reset()
    ids.time = 0.0
    assert step((400, 200)) == [1]


def test_empty_frames_count_as_missed():
    t = tracker(max_missed=1)
    assert t.update(frame((100, 200)), 0.0)[0].tolist() == [1]
    t.update(frame(), 0.1)
    assert t.update(frame((100, 200)), 0.2)[0].tolist() == [1]
    t.update(frame(), 0.3)
    t.update(frame(), 0.4)
    assert t.update(frame((100, 200)), 0.5)[0].tolist() == [2]


def test_swap_places_slowly():
    """A walks right along the top, B left along the bottom: they exchange sides without overlapping."""
    t = tracker()
    for i, s in enumerate(np.linspace(0, 1, 41)):
        a, b = (100 + 400 * s, 150), (500 - 400 * s, 400)
        order = [1, 0] if i % 2 else [0, 1]  # the input order changes every frame
        ids, _ = t.update(frame(*[(a, b)[j] for j in order]), i / 30)
        assert dict(zip(order, ids.tolist())) == {0: 1, 1: 2}


@pytest.mark.parametrize("speed", [4.0, 12.0])
def test_crossing_at_a_steady_pace(speed):
    """A and B walk through each other on the same line: the velocity prediction keeps each id on its person."""
    t = tracker()
    for i in range(60):
        a, b = (100 + speed * i, 300), (100 + speed * 59 - speed * i, 300)
        ids, _ = t.update(frame(a, b), i / 30)
        assert ids.tolist() == [1, 2], f"frame {i}"


def test_teleporting_swap_follows_places():
    """Two people exchanging places between two frames cannot be told apart by motion: the ids stay with the places
    (the documented limit)."""
    t = tracker()
    t.update(frame((100, 200), (400, 200)), 0.0)
    ids, _ = t.update(frame((400, 200), (100, 200)), 1 / 30)
    assert ids.tolist() == [2, 1]


def test_low_scores_do_not_match():
    t = tracker()
    t.update(frame((100, 200)), 0.0)
    low = person(100, 200, score=0.05)[None]
    assert t.update(low, 0.1)[0].tolist() == [2]  # no confident joint to compare: a new track


def test_smoothing_follows_identity():
    """Each person's output is what their own One-Euro filter gives, whatever the input order."""
    rng = np.random.default_rng(0)
    t = tracker(smoothing="one-euro", min_cutoff=1.0, beta=0.01)
    own = {0: OneEuroFilter(1.0, 0.01), 1: OneEuroFilter(1.0, 0.01)}
    for i in range(20):
        people = [person(100 + 2 * i, 200), person(400, 200 - i)]
        for p in people:
            p[:, :2] += rng.normal(0, 2, (17, 2))
        order = [1, 0] if i % 3 == 1 else [0, 1]
        ids, out = t.update(np.stack([people[j] for j in order]), i / 30)
        for j, person_index in enumerate(order):
            assert ids[j] == person_index + 1
            expected = own[person_index](people[person_index][:, :2], i / 30)
            np.testing.assert_allclose(out[j, :, :2], expected)
            np.testing.assert_array_equal(out[j, :, 2], people[person_index][:, 2])  # scores untouched


def test_no_smoothing_returns_the_input():
    t = tracker()
    kp = frame((100, 200), (300, 200))
    _, out = t.update(kp, 0.0)
    np.testing.assert_array_equal(out, kp)
    _, out = t.update(kp + 1.5, 0.1)
    np.testing.assert_array_equal(out, kp + 1.5)


def test_bad_inputs():
    t = tracker()
    t.update(frame((100, 200)), 1.0)
    with pytest.raises(ValueError, match="timestamps must be finite and increase"):
        t.update(frame((100, 200)), 1.0)
    with pytest.raises(ValueError, match="none, one-euro"):
        PoseTracker(SIGMAS, smoothing="kalman")
    with pytest.raises(ValueError, match="match_thr"):
        PoseTracker(SIGMAS, match_thr=1.5)
    with pytest.raises(ValueError, match="max_missed"):
        PoseTracker(SIGMAS, max_missed=-1)
    with pytest.raises(ValueError, match="min_cutoff"):
        PoseTracker(SIGMAS, min_cutoff=0.0)


def test_greedy_match_takes_the_best_pairs_first():
    sim = np.array([[0.9, 0.8], [0.85, 0.1], [0.2, 0.2]])
    assert greedy_match(sim, 0.3) == [(0, 0)]  # row 1's best column is taken; its other pair is below 0.3
    assert greedy_match(sim, 0.15) == [(0, 0), (2, 1)]  # (2, 1) at 0.2 goes before (1, 1) at 0.1
    assert greedy_match(sim, 0.0) == [(0, 0), (2, 1)]
    assert greedy_match(np.zeros((0, 3)), 0.3) == []
