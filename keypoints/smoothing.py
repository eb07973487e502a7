"""Temporal smoothing of keypoints: the One-Euro filter (Casiez, Roussel and Vogel, CHI 2012), vectorised.

    smoother = OneEuroFilter(min_cutoff=0.5, beta=0.03)          # Hz, 1/pixel
    for t, keypoints in stream:                                   # t in seconds, keypoints (K, 3) x, y, score
        xy = smoother(keypoints[:, :2], t, valid=keypoints[:, 2] >= 0.1)

Units: positions in image pixels, time in seconds, so ``min_cutoff`` and ``d_cutoff`` are in Hz and ``beta`` in
1/pixel (the cutoff grows by ``beta`` Hz for each pixel per second of speed). The paper's equations, per coordinate:

    Te = t - t_prev                                   sampling period (s)
    alpha(fc) = 1 / (1 + tau / Te),  tau = 1 / (2 pi fc)
    dx = (x - x_hat_prev) / Te                        speed (px/s), low-passed at d_cutoff:
    dx_hat = alpha(d_cutoff) dx + (1 - alpha(d_cutoff)) dx_hat_prev
    fc = min_cutoff + beta |dx_hat|                   slow motion: strong smoothing; fast motion: little lag
    x_hat = alpha(fc) x + (1 - alpha(fc)) x_hat_prev

The first sample of a coordinate passes through unchanged (``x_hat = x``, ``dx_hat = 0``). A coordinate marked not
``valid`` (a keypoint scoring too low) also passes through unchanged and its state is dropped, so a missing joint
does not drag stale state along: it starts afresh when it is seen again. Timestamps must increase strictly: an
equal or earlier one raises ``ValueError`` (a new, unrelated clip needs :meth:`OneEuroFilter.reset`).
"""
from __future__ import annotations

import math

import numpy as np

SMOOTHING = ("none", "one-euro")  # the choices of every `smoothing` option (config, API, demo)


def check_smoothing(smoothing: str) -> str:
    """``smoothing`` if it is one of :data:`SMOOTHING`, else a one-line ``ValueError`` naming the choices."""
    if smoothing not in SMOOTHING:
        raise ValueError(f"smoothing {smoothing!r} is not valid; choose one of {', '.join(SMOOTHING)}")
    return smoothing


def check_one_euro(min_cutoff: float, beta: float, d_cutoff: float) -> None:
    """One-line ``ValueError`` unless the cutoffs (Hz) are finite and positive and ``beta`` finite and >= 0."""
    for name, value in (("min_cutoff", min_cutoff), ("d_cutoff", d_cutoff)):
        if not (math.isfinite(value) and value > 0):
            raise ValueError(f"{name} must be a finite, positive frequency in Hz, got {value!r}")
    if not (math.isfinite(beta) and beta >= 0):
        raise ValueError(f"beta must be a finite number >= 0 (1/pixel; 0: a plain low-pass filter), got {beta!r}")


def smoothing_factor(te: float, cutoff: np.ndarray | float) -> np.ndarray | float:
    """The exponential smoothing factor ``alpha = 1 / (1 + tau / Te)`` with ``tau = 1 / (2 pi cutoff)``, for a
    sampling period ``te`` (s) and a cutoff frequency (Hz, scalar or array)."""
    tau = 1.0 / (2.0 * math.pi * cutoff)
    return 1.0 / (1.0 + tau / te)


class OneEuroFilter:
    """One-Euro filter over an array of coordinates of any fixed shape (e.g. ``(K, 2)`` keypoints in pixels), one
    independent filter per element; see the module docstring for the equations, units and reset rules."""

    def __init__(self, min_cutoff: float = 1.0, beta: float = 0.0, d_cutoff: float = 1.0) -> None:
        check_one_euro(min_cutoff, beta, d_cutoff)
        self.min_cutoff, self.beta, self.d_cutoff = float(min_cutoff), float(beta), float(d_cutoff)
        self.reset()

    def __repr__(self) -> str:
        return (f"OneEuroFilter(min_cutoff={self.min_cutoff:g} Hz, beta={self.beta:g} /px, "
                f"d_cutoff={self.d_cutoff:g} Hz)")

    def reset(self) -> None:
        """Forget every state (the next call passes its input through): between unrelated clips."""
        self.t_prev: float | None = None
        self.x_hat: np.ndarray | None = None  # filtered positions, NaN where an element has no state
        self.dx_hat: np.ndarray | None = None  # filtered speeds (px/s)

    def __call__(self, x: np.ndarray, t: float, valid: np.ndarray | None = None) -> np.ndarray:
        """Filtered copy (float64) of ``x`` observed at time ``t`` (seconds). ``valid`` (bool, broadcastable to
        ``x``'s shape, e.g. ``(K, 1)`` or ``(K,)`` for ``(K, 2)`` keypoints): elements marked False pass through and
        lose their state. The shape of ``x`` must stay the same between resets."""
        x = np.asarray(x, dtype=np.float64)
        t = float(t)
        if not math.isfinite(t):
            raise ValueError(f"timestamp must be a finite number of seconds, got {t!r}")
        ok = np.ones(x.shape, bool) if valid is None else np.broadcast_to(self._mask(valid, x.shape), x.shape)
        ok = ok & np.isfinite(x)
        if self.x_hat is None or self.t_prev is None:
            self.x_hat, self.dx_hat = np.where(ok, x, np.nan), np.zeros_like(x)
            self.t_prev = t
            return x.copy()
        if x.shape != self.x_hat.shape:
            raise ValueError(f"OneEuroFilter got shape {x.shape} after {self.x_hat.shape}; call reset() first")
        te = t - self.t_prev
        if te <= 0:
            raise ValueError(f"timestamps must increase: got {t:g} s after {self.t_prev:g} s; call reset() between "
                             f"unrelated clips")
        seen = ok & np.isfinite(self.x_hat)  # a state to continue; other valid elements start afresh
        prev = np.where(seen, self.x_hat, x)
        dx = (x - prev) / te
        dx_hat = np.where(seen, smoothing_factor(te, self.d_cutoff) * dx
                          + (1 - smoothing_factor(te, self.d_cutoff)) * self.dx_hat, 0.0)
        a = smoothing_factor(te, self.min_cutoff + self.beta * np.abs(dx_hat))
        filtered = np.where(seen, a * x + (1 - a) * prev, x)
        self.x_hat, self.dx_hat, self.t_prev = np.where(ok, filtered, np.nan), dx_hat, t
        return filtered

    @staticmethod
    def _mask(valid: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
        """``valid`` as a bool mask broadcastable to ``shape``: a per-keypoint ``(K,)`` mask for ``(K, 2)`` input
        gains a trailing axis."""
        mask = np.asarray(valid, dtype=bool)
        if mask.ndim == len(shape) - 1 and mask.shape == tuple(shape[:-1]):
            mask = mask[..., None]
        return mask
