"""Person identities across video frames, and per-identity keypoint smoothing.

    tracker = PoseTracker(sigmas=estimator.metadata.sigmas, smoothing="one-euro", min_cutoff=0.5, beta=0.03)
    for t, keypoints in frames:                       # t in seconds; keypoints (N, K, 3) x, y (pixels), score
        track_ids, smoothed = tracker.update(keypoints, t)
    tracker.reset()                                   # between unrelated clips

Matching (each frame): every live track predicts where its person is now (its last keypoints moved on by the
person's last velocity, one step per frame since it was last seen); the similarity of a person and a track is the
OKS (:func:`keypoints.postprocess.oks_matrix`, the model's sigmas) over the joints scoring above ``kpt_thr`` in
both, with the area of the joints' extent as the scale. Pairs are taken greedily by descending similarity down to
``match_thr``. An unmatched person starts a new track with the next id (1, 2, ...); a track unmatched for more
than ``max_missed`` frames in a row is retired (its id is never reused). Predicting by velocity keeps the ids of
people who walk past each other at a steady pace; people who stop or turn while overlapping may swap ids.

Smoothing follows identity: each track owns a :class:`keypoints.smoothing.OneEuroFilter` over its ``(K, 2)``
pixel coordinates (timestamps in seconds); joints scoring below ``kpt_thr`` pass through unsmoothed and restart
their filter. A new track's first keypoints pass through unchanged. Scores are never smoothed.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

from .postprocess import oks_matrix
from .smoothing import OneEuroFilter, check_one_euro, check_smoothing


@dataclass
class Track:
    """One person followed over frames: ``keypoints`` ``(K, 3)`` last seen (unsmoothed), ``velocity`` ``(2,)``
    pixels per frame, frames ``missed`` since last seen, and the person's filter (None without smoothing)."""

    track_id: int
    keypoints: np.ndarray
    velocity: np.ndarray
    missed: int = 0
    smoother: OneEuroFilter | None = None

    def predicted(self) -> np.ndarray:
        """Where the person should be in the current frame: ``(K, 3)``, the last keypoints moved on by the
        velocity once per frame since they were seen."""
        out = self.keypoints.copy()
        out[:, :2] += self.velocity * (self.missed + 1)
        return out


def keypoint_areas(keypoints: np.ndarray, kpt_thr: float) -> np.ndarray:
    """Area (pixels^2, at least 1) of the extent of each pose's joints scoring above ``kpt_thr``: the OKS scale.
    ``keypoints`` ``(N, K, 3)`` -> ``(N,)``."""
    areas = np.ones(len(keypoints))
    for i, kp in enumerate(keypoints):
        pts = kp[kp[:, 2] > kpt_thr, :2]
        if len(pts) >= 2:
            w, h = pts.max(axis=0) - pts.min(axis=0)
            areas[i] = max(1.0, float(w * h))
    return areas


def greedy_match(similarity: np.ndarray, threshold: float) -> list[tuple[int, int]]:
    """``(row, column)`` pairs of ``similarity`` ``(N, M)`` taken greedily, most similar first, each row and column
    at most once, only pairs scoring at least ``threshold``; ties go to the lower row, then the lower column."""
    if similarity.size == 0:
        return []
    order = np.argsort(-similarity, axis=None, kind="stable")
    used_rows, used_cols, pairs = set(), set(), []
    for flat in order:
        r, c = divmod(int(flat), similarity.shape[1])
        if similarity[r, c] < threshold:
            break
        if r not in used_rows and c not in used_cols:
            used_rows.add(r)
            used_cols.add(c)
            pairs.append((r, c))
    return pairs


class PoseTracker:
    """Track ids (and smoothed keypoints) for the people of successive frames; see the module docstring.

    ``sigmas`` ``(K,)``: the model's OKS sigmas; ``match_thr``: the smallest OKS that continues a track;
    ``max_missed``: frames a track survives unmatched; ``kpt_thr``: joints above it are matched and smoothed;
    ``smoothing``: none | one-euro with ``min_cutoff`` (Hz), ``beta`` (1/pixel) and ``d_cutoff`` (Hz)."""

    def __init__(self, sigmas: Sequence[float], *, match_thr: float = 0.3, max_missed: int = 10, kpt_thr: float = 0.1,
                 smoothing: str = "none", min_cutoff: float = 0.5, beta: float = 0.03, d_cutoff: float = 1.0) -> None:
        if not 0.0 <= match_thr <= 1.0:
            raise ValueError(f"match_thr must be an OKS in [0, 1], got {match_thr!r}")
        if max_missed < 0:
            raise ValueError(f"max_missed must be 0 or more frames, got {max_missed!r}")
        check_one_euro(min_cutoff, beta, d_cutoff)
        self.sigmas = np.asarray(sigmas, dtype=np.float64)
        self.match_thr, self.max_missed, self.kpt_thr = float(match_thr), int(max_missed), float(kpt_thr)
        self.smoothing = check_smoothing(smoothing)
        self.min_cutoff, self.beta, self.d_cutoff = float(min_cutoff), float(beta), float(d_cutoff)
        self.reset()

    def __repr__(self) -> str:
        smoothing = self.smoothing if self.smoothing == "none" else \
            f"{self.smoothing} (min_cutoff {self.min_cutoff:g} Hz, beta {self.beta:g} /px)"
        return f"PoseTracker(match OKS >= {self.match_thr:g}, max_missed {self.max_missed}, smoothing {smoothing})"

    def reset(self) -> None:
        """Forget every track and filter (between unrelated clips); ids start at 1 again."""
        self.tracks: list[Track] = []
        self.next_id = 1
        self.t_prev: float | None = None

    def _new_track(self, keypoints: np.ndarray) -> Track:
        smoother = None if self.smoothing == "none" else OneEuroFilter(self.min_cutoff, self.beta, self.d_cutoff)
        track = Track(self.next_id, keypoints.copy(), np.zeros(2), smoother=smoother)
        self.next_id += 1
        self.tracks.append(track)
        return track

    def _velocity(self, track: Track, keypoints: np.ndarray) -> np.ndarray:
        """Pixels per frame from the track's last keypoints to ``keypoints`` ``(K, 3)``: the mean shift of the joints
        confident in both, over the frames in between (the previous velocity when no joint is shared)."""
        both = (track.keypoints[:, 2] > self.kpt_thr) & (keypoints[:, 2] > self.kpt_thr)
        if not both.any():
            return track.velocity
        return (keypoints[both, :2] - track.keypoints[both, :2]).mean(axis=0) / (track.missed + 1)

    def update(self, keypoints: np.ndarray, timestamp: float) -> tuple[np.ndarray, np.ndarray]:
        """Track ids ``(N,)`` int64 and keypoints ``(N, K, 3)`` (smoothed x, y; scores unchanged) of this frame's
        people ``keypoints`` ``(N, K, 3)`` (image pixels, score) seen at ``timestamp`` (seconds, increasing)."""
        keypoints = np.asarray(keypoints, dtype=np.float64).reshape(-1, len(self.sigmas), 3)
        timestamp = float(timestamp)
        if not np.isfinite(timestamp) or (self.t_prev is not None and timestamp <= self.t_prev):
            raise ValueError(f"timestamps must be finite and increase: got {timestamp!r} s after {self.t_prev!r} s; "
                             f"call reset() between unrelated clips")
        self.t_prev = timestamp
        n = len(keypoints)
        similarity = np.zeros((n, len(self.tracks)))
        if n and self.tracks:
            predicted = np.stack([t.predicted() for t in self.tracks])
            similarity = oks_matrix(keypoints, predicted, keypoint_areas(keypoints, self.kpt_thr),
                                    keypoint_areas(predicted, self.kpt_thr), self.sigmas, vis_thr=self.kpt_thr)
        matched = dict(greedy_match(similarity, self.match_thr))  # person index -> track index
        continued = set(matched.values())
        for j, track in enumerate(self.tracks):
            if j not in continued:
                track.missed += 1
        ids, out = np.zeros(n, dtype=np.int64), keypoints.copy()
        for i in range(n):
            if i in matched:
                track = self.tracks[matched[i]]
                track.velocity = self._velocity(track, keypoints[i])
                track.keypoints, track.missed = keypoints[i].copy(), 0
            else:
                track = self._new_track(keypoints[i])  # appended: the indices in `matched` stay valid
            ids[i] = track.track_id
            if track.smoother is not None:
                out[i, :, :2] = track.smoother(keypoints[i, :, :2], timestamp, valid=keypoints[i, :, 2] >= self.kpt_thr)
        self.tracks = [t for t in self.tracks if t.missed <= self.max_missed]
        return ids, out
