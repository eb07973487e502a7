"""One-Euro filter: outputs computed by hand from the paper's equations (a step, a ramp, a constant with noise),
joints that drop out, bad timestamps and parameters.

Most cases use a period Te = 0.1 s and cutoffs of 5/pi Hz, so that tau = 1 / (2 pi fc) = 0.1 s and the smoothing
factor alpha = 1 / (1 + tau / Te) = 1/2: every expected value below is a short hand calculation."""
from __future__ import annotations

import math

import numpy as np
import pytest

from keypoints.smoothing import OneEuroFilter, check_smoothing, smoothing_factor

HALF = 5 / math.pi  # Hz: alpha = 1/2 at Te = 0.1 s
TE = 0.1


def run(f: OneEuroFilter, values, te: float = TE, valid=None) -> list[float]:
    out = []
    for i, v in enumerate(values):
        ok = None if valid is None else np.array([valid[i]])
        out.append(float(f(np.array([v], float), i * te, valid=ok)[0]))
    return out


def test_smoothing_factor_by_hand():
    assert smoothing_factor(0.1, HALF) == pytest.approx(0.5)
    assert smoothing_factor(0.1, 1.0) == pytest.approx(1 / (1 + (1 / (2 * math.pi)) / 0.1))  # 0.38587
    assert smoothing_factor(0.1, 15 / math.pi) == pytest.approx(0.75)  # tau = 1/30 s


def test_step_without_speed_term():
    # alpha = 1/2 throughout (beta = 0): y = x/2 + y_prev/2.
    out = run(OneEuroFilter(min_cutoff=HALF, beta=0.0, d_cutoff=HALF), [0, 1, 1, 1, 1])
    np.testing.assert_allclose(out, [0, 0.5, 0.75, 0.875, 0.9375])


def test_step_with_speed_term():
    # beta = 2/pi: at t = 0.1 the speed is (1 - 0) / 0.1 = 10 px/s, low-passed: 0.5 * 10 + 0.5 * 0 = 5;
    # fc = 5/pi + (2/pi) 5 = 15/pi -> alpha 3/4 -> y = 0.75.
    # At t = 0.2: speed (1 - 0.75) / 0.1 = 2.5, low-passed 0.5 * 2.5 + 0.5 * 5 = 3.75; fc = 5/pi + 7.5/pi = 12.5/pi
    # -> tau = 1/25 s, alpha = 1 / (1 + 0.4) = 5/7 -> y = 0.75 + (5/7) 0.25 = 13/14.
    out = run(OneEuroFilter(min_cutoff=HALF, beta=2 / math.pi, d_cutoff=HALF), [0, 1, 1])
    np.testing.assert_allclose(out, [0, 0.75, 13 / 14])


def test_ramp_lags_one_sample():
    # x = 0, 1, 2, 3, 4 (10 px/s), alpha 1/2: y = 0, 0.5, 1.25, 2.125, 3.0625 -> x - y tends to (1 - a) / a = 1.
    out = run(OneEuroFilter(min_cutoff=HALF, beta=0.0, d_cutoff=HALF), [0, 1, 2, 3, 4])
    np.testing.assert_allclose(out, [0, 0.5, 1.25, 2.125, 3.0625])


def test_constant_with_noise():
    # x = 5 +- 1 alternating, alpha 1/2: y = 6, 5, 5.5, 4.75, 5.375; the swing settles at +-1/3 (a = 1/2 - a/2).
    noisy = [6, 4, 6, 4, 6]
    out = run(OneEuroFilter(min_cutoff=HALF, beta=0.0, d_cutoff=HALF), noisy)
    np.testing.assert_allclose(out, [6, 5, 5.5, 4.75, 5.375])
    long = run(OneEuroFilter(min_cutoff=HALF, beta=0.0, d_cutoff=HALF), [5 + (-1) ** i for i in range(40)])
    assert np.ptp(long[-10:]) == pytest.approx(2 / 3, abs=1e-6)


def test_vectorised_elements_are_independent():
    f = OneEuroFilter(min_cutoff=HALF, beta=0.0, d_cutoff=HALF)
    frames = [np.array([[0.0, 10.0], [6.0, 0.0]]), np.array([[1.0, 10.0], [4.0, 0.0]]),
              np.array([[1.0, 10.0], [6.0, 0.0]])]
    out = [f(x, i * TE) for i, x in enumerate(frames)]
    np.testing.assert_allclose(out[-1], [[0.75, 10.0], [5.5, 0.0]])


def test_low_score_joint_passes_through_and_restarts():
    # Joint valid, valid, missing (passed through as is), valid again: the filter restarts from that value.
    values, valid = [0.0, 1.0, 50.0, 10.0, 12.0], [True, True, False, True, True]
    out = run(OneEuroFilter(min_cutoff=HALF, beta=0.0, d_cutoff=HALF), values, valid=valid)
    np.testing.assert_allclose(out, [0, 0.5, 50.0, 10.0, 11.0])
    # A per-keypoint mask (K,) applies to both coordinates of (K, 2) keypoints.
    f = OneEuroFilter(min_cutoff=HALF, beta=0.0, d_cutoff=HALF)
    f(np.zeros((2, 2)), 0.0)
    out = f(np.full((2, 2), 2.0), TE, valid=np.array([True, False]))
    np.testing.assert_allclose(out, [[1.0, 1.0], [2.0, 2.0]])
    np.testing.assert_allclose(f(np.full((2, 2), 2.0), 2 * TE), [[1.5, 1.5], [2.0, 2.0]])  # joint 1 restarted


def test_timestamps_must_increase():
    f = OneEuroFilter(min_cutoff=1.0, beta=0.1)
    f(np.zeros(3), 1.0)
    with pytest.raises(ValueError, match="timestamps must increase"):
        f(np.zeros(3), 1.0)
    with pytest.raises(ValueError, match="timestamps must increase"):
        f(np.zeros(3), 0.5)
    with pytest.raises(ValueError, match="finite"):
        f(np.zeros(3), float("nan"))
    with pytest.raises(ValueError, match="reset"):
        f(np.zeros(4), 2.0)  # another shape
    f.reset()
    np.testing.assert_array_equal(f(np.ones(3), 0.0), np.ones(3))  # a new clip may start anywhere in time


@pytest.mark.parametrize("kwargs, message", [
    ({"min_cutoff": 0.0}, "min_cutoff"), ({"min_cutoff": float("inf")}, "min_cutoff"),
    ({"beta": -0.1}, "beta"), ({"beta": float("nan")}, "beta"), ({"d_cutoff": -1.0}, "d_cutoff")])
def test_bad_parameters(kwargs, message):
    with pytest.raises(ValueError, match=message):
        OneEuroFilter(**kwargs)


def test_smoothing_choices():
    assert check_smoothing("one-euro") == "one-euro"
    with pytest.raises(ValueError, match="none, one-euro"):
        check_smoothing("kalman")
