"""Section "video": keypoint smoothing and track ids measured on a generated clip whose truth is known.

The clip (:func:`keypoints.data.synthetic.synthetic_people_clip`) holds people who move on their own, each in a
strip of its own (their paths never cross), with fresh sensor noise in every frame. Each frame is predicted once
with detector-like boxes: the true boxes with independent noise per frame (centre +-3%, size +-5%, one sigma) in a
shuffled order, so the order says nothing about who is who. The same raw predictions then go through a
:class:`~keypoints.tracking.PoseTracker` per variant (no smoothing, One-Euro with each parameter pair), which is
what ``PoseEstimator(tracking=True)`` runs after the network. Metrics, over the joints visible in the truth
(visibility 2), in image pixels:

- jitter: mean ``|e(t+1) - 2 e(t) + e(t-1)|`` of the error ``e = prediction - truth`` (a 2-vector; frames where
  the joint is visible three frames running): the frame-to-frame shake that the motion itself does not explain;
- error: mean ``|prediction - truth|``;
- lag: the shift ``s`` (frames, 0.05 steps, truth linearly interpolated) minimising the mean squared distance
  between the prediction at ``t`` and the truth at ``t - s``: how far the output trails the motion;
- identity switches: for each true person, how often the track id of its prediction changes from one frame
  to the next (MOT's IDSW);
- cost: the tracker's and filter's milliseconds per person per frame (medians of interleaved rounds,
  :func:`~keypoints.benchmark.timing.interleaved_medians`), the network excluded.

Targets (issue 22): jitter at most half of no smoothing, error at most 5% above it, 0 identity switches on this
clip (nobody crosses), cost under 0.5 ms per person per frame.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..data.synthetic import SyntheticClip, synthetic_people_clip
from ..predictor import PoseEstimator
from ..results import append_rows
from ..tracking import PoseTracker
from .timing import interleaved_medians

TARGETS = {"jitter_px_x": 0.5, "error_px_x": 1.05, "id_switches": 0, "ms_per_person": 0.5}
ROW_FIELDS = ("smoothing", "min_cutoff", "beta", "d_cutoff", "kpt_thr", "jitter_px", "error_px", "lag_frames",
              "id_switches", "ms_per_person")  # the CSV's columns of each variant (after the clip's)


@dataclass
class VideoSettings:
    frames: int = 90  # clip length (3 s at 30 FPS)
    size: tuple[int, int] = (640, 480)  # (width, height) pixels
    people: int = 3  # people in the clip
    seed: int = 0  # the clip's seed (tune parameters on another one)
    fps: float = 30.0  # frame rate: timestamps are index / fps seconds
    box_noise: tuple[float, float] = (0.03, 0.05)  # sigma of the box centre (fraction of its size), log size
    rounds: int = 5  # timed interleaved rounds of the tracker loops (medians)


# ----------------------------------------------------------------------------- metrics


def jitter(pred: np.ndarray, truth: np.ndarray, valid: np.ndarray) -> float:
    """Mean norm of the second difference over time of ``pred - truth`` (``(T, P, K, 2)`` pixels), over the
    samples whose three frames are all ``valid`` (``(T, P, K)`` bool); NaN when there is none."""
    e = pred - truth
    d2 = np.linalg.norm(e[2:] - 2 * e[1:-1] + e[:-2], axis=-1)
    ok = valid[2:] & valid[1:-1] & valid[:-2]
    return float(d2[ok].mean()) if ok.any() else float("nan")


def mean_error(pred: np.ndarray, truth: np.ndarray, valid: np.ndarray) -> float:
    """Mean distance (pixels) between ``pred`` and ``truth`` ``(T, P, K, 2)`` over ``valid`` ``(T, P, K)``."""
    return float(np.linalg.norm(pred - truth, axis=-1)[valid].mean()) if valid.any() else float("nan")


def lag_frames(pred: np.ndarray, truth: np.ndarray, valid: np.ndarray, shifts: np.ndarray | None = None) -> float:
    """The shift ``s`` in frames (default -3..6 by 0.05, narrower for clips under 14 frames) minimising the mean
    squared distance between ``pred`` at ``t`` and ``truth`` at ``t - s`` (linear interpolation between frames),
    ``(T, P, K, 2)`` pixels, over the samples ``valid`` (``(T, P, K)``) for every shift; positive: the prediction
    trails the truth."""
    n = len(truth)
    if shifts is None:
        low, high = min(3, (n - 2) // 4), min(6, (n - 2) // 2)
        shifts = np.round(np.arange(-low, high + 1e-9, 0.05), 2)
    shifts = np.asarray(shifts, float)
    t = np.arange(n)
    costs, masks = [], []
    for s in shifts:
        src = t - s
        i0 = np.clip(np.floor(src).astype(int), 0, n - 1)
        i1 = np.clip(i0 + 1, 0, n - 1)
        frac = (src - np.floor(src))[:, None, None, None]
        inside = (src >= 0) & (src <= n - 1)
        shifted = truth[i0] * (1 - frac) + truth[i1] * frac
        exact = frac[:, 0, 0, 0] == 0
        masks.append(inside[:, None, None] & valid & valid[i0] & (valid[i1] | exact[:, None, None]))
        costs.append(((pred - shifted) ** 2).sum(-1))
    common = np.logical_and.reduce(masks)  # the same samples for every shift
    if not common.any():
        return float("nan")
    return float(shifts[int(np.argmin([c[common].mean() for c in costs]))])


def identity_switches(track_ids: np.ndarray) -> int:
    """Track id changes of each true person over time: ``track_ids`` ``(T, P)`` (-1 where the person has no
    prediction; a change across such a gap counts too)."""
    switches = 0
    for column in np.asarray(track_ids).T:
        seen = column[column >= 0]
        switches += int((seen[1:] != seen[:-1]).sum())
    return switches


# ----------------------------------------------------------------------------- clip and predictions


def detector_like_boxes(clip: SyntheticClip, noise: tuple[float, float], seed: int
                        ) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Per frame: the true boxes with independent noise (centre sigma ``noise[0]`` x size, log-size sigma
    ``noise[1]``), shuffled; and the order ``(P,)`` (box j is person ``order[j]``)."""
    rng = np.random.default_rng([seed, 22])
    boxes, orders = [], []
    for true in clip.boxes:
        centre = true[:, :2] + true[:, 2:] / 2 + rng.normal(0, noise[0], true[:, :2].shape) * true[:, 2:]
        size = true[:, 2:] * np.exp(rng.normal(0, noise[1], true[:, 2:].shape))
        order = rng.permutation(len(true))
        boxes.append(np.concatenate([centre - size / 2, size], axis=1)[order])
        orders.append(order)
    return boxes, orders


def predict_clip(estimator: PoseEstimator, clip: SyntheticClip, boxes: list[np.ndarray],
                 orders: list[np.ndarray]) -> np.ndarray:
    """Raw keypoints ``(T, P, K, 3)`` (image pixels, score; person order of the truth) of every frame, predicted
    with the given ``boxes`` (no tracking, no smoothing)."""
    out = np.zeros((len(clip.frames), *clip.keypoints[0].shape))
    for f, (frame, frame_boxes, order) in enumerate(zip(clip.frames, boxes, orders)):
        prediction = estimator(frame, boxes=frame_boxes)
        out[f, order] = prediction.keypoints
    return out


def run_tracker(tracker: PoseTracker, raw: np.ndarray, orders: list[np.ndarray], fps: float
                ) -> tuple[np.ndarray, np.ndarray]:
    """``tracker`` (reset first) over the raw keypoints ``(T, P, K, 3)``, each frame's people in the shuffled box
    order as the estimator saw them: (track ids ``(T, P)``, keypoints ``(T, P, K, 3)``), in the truth's order."""
    tracker.reset()
    ids, out = np.full(raw.shape[:2], -1, dtype=np.int64), np.zeros_like(raw)
    for f, order in enumerate(orders):
        frame_ids, keypoints = tracker.update(raw[f, order], f / fps)
        ids[f, order], out[f, order] = frame_ids, keypoints
    return ids, out


def clip_metrics(keypoints: np.ndarray, ids: np.ndarray, clip: SyntheticClip) -> dict:
    """Jitter, error, lag (see the module docstring) and identity switches of ``keypoints`` ``(T, P, K, 3)`` and
    ``ids`` ``(T, P)`` against the clip's truth."""
    truth = np.stack(clip.keypoints)
    visible = truth[..., 2] == 2
    pred, gt = keypoints[..., :2], truth[..., :2]
    return {"jitter_px": jitter(pred, gt, visible), "error_px": mean_error(pred, gt, visible),
            "lag_frames": lag_frames(pred, gt, visible), "id_switches": identity_switches(ids)}


# ----------------------------------------------------------------------------- the section


def measure_video(estimator: PoseEstimator, variants: dict[str, dict], settings: VideoSettings,
                  clip: SyntheticClip | None = None) -> dict:
    """Rows of metrics for each variant (``{label: PoseTracker keyword arguments}``, e.g. ``{"none": {"smoothing":
    "none"}}``; the first is the baseline of the ratios ``jitter_px_x`` and ``error_px_x``) on the clip of
    ``settings`` (or ``clip``), with the tracker's ms per person per frame; and the clip's facts."""
    clip = clip if clip is not None else synthetic_people_clip(settings.frames, settings.size, settings.seed,
                                                               settings.people, settings.fps)
    boxes, orders = detector_like_boxes(clip, settings.box_noise, settings.seed)
    estimator.reset()
    raw = predict_clip(estimator, clip, boxes, orders)
    trackers = {label: PoseTracker(estimator.metadata.sigmas, **kwargs) for label, kwargs in variants.items()}
    seconds = interleaved_medians({label: lambda t=t: run_tracker(t, raw, orders, clip.fps)
                                   for label, t in trackers.items()}, settings.rounds, warmup=1)
    person_frames = sum(len(o) for o in orders)
    rows = []
    for label, tracker in trackers.items():
        ids, keypoints = run_tracker(tracker, raw, orders, clip.fps)
        smoothed = tracker.smoothing != "none"
        rows.append({"variant": label, "smoothing": tracker.smoothing,
                     "min_cutoff": tracker.min_cutoff if smoothed else None, "beta": tracker.beta if smoothed else None,
                     "d_cutoff": tracker.d_cutoff if smoothed else None, "kpt_thr": tracker.kpt_thr,
                     **clip_metrics(keypoints, ids, clip), "ms_per_person": seconds[label] * 1e3 / person_frames})
    base = rows[0]
    for row in rows:
        row["jitter_px_x"] = row["jitter_px"] / base["jitter_px"]
        row["error_px_x"] = row["error_px"] / base["error_px"]
    truth = np.stack(clip.keypoints)
    both = (truth[1:, ..., 2] == 2) & (truth[:-1, ..., 2] == 2)
    speed = np.linalg.norm(np.diff(truth[..., :2], axis=0), axis=-1)[both]
    return {"rows": rows, "frames": len(clip.frames), "people": int(truth.shape[1]), "fps": clip.fps,
            "size": list(clip.frames[0].shape[1::-1]), "truth_speed_px_per_frame": float(speed.mean()),
            "visible_share": float((truth[..., 2] == 2).mean())}


def target_lines(rows: list[dict]) -> list[str]:
    """Each One-Euro row read against the issue's targets (met or not, with the numbers)."""
    lines = []
    for row in rows[1:]:
        jitter, error = row["jitter_px_x"], row["error_px_x"]
        checks = [("jitter", jitter <= TARGETS["jitter_px_x"], f"{jitter:.2f}x of none (<= 0.5x)"),
                  ("error", error <= TARGETS["error_px_x"], f"{error:.3f}x of none (<= 1.05x)"),
                  ("identity switches", row["id_switches"] == 0, f"{row['id_switches']} (0)"),
                  ("cost", row["ms_per_person"] < TARGETS["ms_per_person"],
                   f"{row['ms_per_person']:.3f} ms per person per frame (< 0.5)")]
        lines.append(f"targets, {row['variant']}: " + "; ".join(
            f"{name} {'met' if ok else 'NOT met'}: {text}" for name, ok, text in checks))
    return lines


VIDEO_COLUMNS = [("variant", "smoothing", "s"), ("jitter_px", "jitter px", ".3f"), ("error_px", "error px", ".3f"),
                 ("lag_frames", "lag frames", ".2f"), ("id_switches", "id switches", "d"),
                 ("ms_per_person", "ms / person / frame", ".3f")]


def append_csv(path: str | Path, result: dict, checkpoint: str, seed: int) -> Path:
    """Append the rows of :func:`measure_video` to the results CSV ``path`` (:func:`keypoints.results.append_rows`:
    with commit, date, machine and load average; earlier rows kept), one row per variant with the clip's facts."""
    clip = {"checkpoint": checkpoint, "seed": seed, "frames": result["frames"], "people": result["people"],
            "fps": result["fps"], "size": "x".join(map(str, result["size"]))}
    return append_rows(path, [{**clip, **{k: row.get(k) for k in ROW_FIELDS}} for row in result["rows"]])
