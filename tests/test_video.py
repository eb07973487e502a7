"""Video: the API's track ids and smoothing (PoseEstimator(tracking=True)), the generated clip with its truth, the
video benchmark's metrics computed by hand, and the benchmark section on a tiny clip."""
from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from conftest import TRAINED_CHECKPOINT, load_tool
from keypoints.benchmark import video as bench_video
from keypoints.codec import HeatmapCodec
from keypoints.config import VideoConfig, load_config
from keypoints.data.synthetic import synthetic_people_clip
from keypoints.predictor import PoseEstimator
from keypoints.tracking import PoseTracker

ROOT = Path(__file__).resolve().parents[1]
IMAGE = np.zeros((480, 640, 3), np.uint8)
BOXES = np.array([[40, 40, 120, 240], [420, 60, 120, 240]], np.float64)


class PoseStub(nn.Module):
    """Heatmaps of one fixed standing pose in every crop, confident (peak 1)."""

    def __init__(self, codec: HeatmapCodec) -> None:
        super().__init__()
        w, h = codec.input_size
        xs = np.array([0.5, 0.55, 0.45, 0.6, 0.4, 0.65, 0.35, 0.7, 0.3, 0.72, 0.28, 0.6, 0.4, 0.6, 0.4, 0.6, 0.4]) * w
        ys = np.array([0.2, 0.18, 0.18, 0.19, 0.19, 0.3, 0.3, 0.42, 0.42, 0.52, 0.52, 0.55, 0.55, 0.68, 0.68, 0.8,
                       0.8]) * h
        heatmaps, _ = codec.encode(np.stack([xs, ys], axis=1), np.full(17, 2))
        self.register_buffer("heatmaps", torch.from_numpy(heatmaps))

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.heatmaps.expand(images.shape[0], -1, -1, -1).clone()


def stub_estimator(**kwargs) -> PoseEstimator:
    cfg = load_config(ROOT / "configs" / "quickstart.yaml")
    codec = HeatmapCodec(cfg.data.input_size, cfg.data.heatmap_size, cfg.data.sigma)
    return PoseEstimator.from_config(PoseStub(codec), cfg, flip=False, **kwargs)


# ----------------------------------------------------------------------------- API


def test_stream_carries_track_ids():
    stream = stub_estimator(tracking=True)
    first = stream(IMAGE, boxes=BOXES, timestamp=0.0)
    assert [p.track_id for p in first.people] == [1, 2]
    second = stream(IMAGE, boxes=BOXES[::-1] + 2, timestamp=1 / 30)  # the given order says nothing about who is who
    assert [p.track_id for p in second.people] == [2, 1]
    people = json.loads(json.dumps(second.to_dict()))["people"]
    assert [p["track_id"] for p in people] == [2, 1]
    stream.reset()
    assert [p.track_id for p in stream(IMAGE, boxes=BOXES[::-1], timestamp=0.0).people] == [1, 2]
    with pytest.raises(ValueError, match="timestamps must be finite and increase"):
        stream(IMAGE, boxes=BOXES, timestamp=0.0)


def test_images_have_no_ids_and_are_never_smoothed():
    plain = stub_estimator()
    prediction = plain(IMAGE, boxes=BOXES)
    assert plain.pose_tracker is None and [p.track_id for p in prediction.people] == [None, None]
    assert prediction.to_dict()["people"][0]["track_id"] is None
    with pytest.raises(ValueError, match="needs tracking=True"):
        stub_estimator(smoothing="one-euro")


def test_stream_smoothing_is_the_trackers():
    """A stream's keypoints are the raw keypoints through its PoseTracker (one-euro, the config's parameters);
    smoothing none gives the raw keypoints with ids."""
    plain, raw_ids = stub_estimator(), stub_estimator(tracking=True, smoothing="none")
    smooth = stub_estimator(tracking=True)  # cfg.video: one-euro
    video = VideoConfig()
    assert smooth.pose_tracker.smoothing == "one-euro" and smooth.pose_tracker.min_cutoff == video.min_cutoff
    reference = PoseTracker(plain.metadata.sigmas, smoothing="one-euro", min_cutoff=video.min_cutoff,
                            beta=video.beta, d_cutoff=video.d_cutoff, kpt_thr=video.kpt_thr)
    rng = np.random.default_rng(0)
    for i in range(6):
        boxes = BOXES + np.array([3.0 * i, 0, 0, 0]) + rng.normal(0, 2, BOXES.shape) * [1, 1, 0, 0]
        raw = plain(IMAGE, boxes=boxes).keypoints
        np.testing.assert_allclose(raw_ids(IMAGE, boxes=boxes, timestamp=i / 30).keypoints, raw)
        got = smooth(IMAGE, boxes=boxes, timestamp=i / 30).keypoints
        _, expected = reference.update(raw, i / 30)
        np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-3)
        if i == 0:
            np.testing.assert_allclose(got, raw)  # a new track passes through
    assert np.abs(got[..., :2] - raw[..., :2]).max() > 0.1  # smoothing did something


def test_old_checkpoints_load_with_video_defaults():
    raw = torch.load(TRAINED_CHECKPOINT, map_location="cpu", weights_only=False)
    assert "video" not in raw.get("config", {})  # saved before the section existed
    stream = PoseEstimator.from_checkpoint(TRAINED_CHECKPOINT, device="cpu", tracking=True, min_cutoff=2.0)
    assert stream.pose_tracker.min_cutoff == 2.0 and stream.pose_tracker.beta == VideoConfig().beta


# ----------------------------------------------------------------------------- the generated clip


def test_people_clip_truth():
    clip = synthetic_people_clip(num_frames=6, size=(160, 120), seed=3, people=2)
    assert len(clip.frames) == len(clip.keypoints) == len(clip.boxes) == 6 and clip.frames[0].shape == (120, 160, 3)
    assert clip.keypoints[0].shape == (2, 17, 3) and clip.boxes[0].shape == (2, 4)
    for kp, boxes in zip(clip.keypoints, clip.boxes):
        inside = kp[..., 2] > 0
        assert ((kp[..., 0] >= boxes[:, None, 0] - 1) | ~inside).all()  # labelled joints lie in their person's box
        assert ((kp[..., 0] <= boxes[:, None, 0] + boxes[:, None, 2] + 1) | ~inside).all()
        hips = kp[:, 11:13, :2].mean(axis=1)
        assert hips[0, 0] < 80 < hips[1, 0]  # each person keeps to their own half: paths never cross
    still = synthetic_people_clip(num_frames=3, size=(160, 120), seed=3, people=2, speed=0.0)
    np.testing.assert_array_equal(still.keypoints[0], still.keypoints[2])
    assert not np.array_equal(still.frames[0], still.frames[2])  # fresh sensor noise in every frame


# ----------------------------------------------------------------------------- metrics by hand


def series(values_x, values_y=None) -> np.ndarray:
    """(T, 1, 1, 2) positions from per-frame x (and y, default 0)."""
    x = np.asarray(values_x, float)
    y = np.zeros_like(x) if values_y is None else np.asarray(values_y, float)
    return np.stack([x, y], axis=-1)[:, None, None, :]


def test_jitter_and_error_by_hand():
    truth = series(3.0 * np.arange(5))  # a ramp: motion alone has no second difference
    valid = np.ones((5, 1, 1), bool)
    assert bench_video.jitter(truth + 7.0, truth, valid) == 0.0  # a constant offset does not shake
    # error x: 0, 1, 0, 1, 0 -> second differences -2, 2, -2 -> mean |.| = 2; mean |error| = 2/5.
    noisy = truth + series([0, 1, 0, 1, 0])
    assert bench_video.jitter(noisy, truth, valid) == pytest.approx(2.0)
    assert bench_video.mean_error(noisy, truth, valid) == pytest.approx(0.4)
    assert bench_video.mean_error(truth + series([3] * 5, [4] * 5), truth, valid) == pytest.approx(5.0)
    valid[2] = False  # frame 2 hidden: no second difference has three valid frames; the error skips it
    assert np.isnan(bench_video.jitter(noisy, truth, valid))
    assert bench_video.mean_error(noisy, truth, valid) == pytest.approx(0.5)


@pytest.mark.parametrize("delay", [2.0, 0.5, 0.0, -1.0])
def test_lag_by_hand(delay):
    t = np.arange(30, dtype=float)
    truth = series(3.0 * t, 40 * np.sin(t / 4))
    pred = series(3.0 * (t - delay), 40 * np.sin((t - delay) / 4))  # the truth, `delay` frames late
    assert bench_video.lag_frames(pred, truth, np.ones((30, 1, 1), bool)) == pytest.approx(delay, abs=0.051)


def test_identity_switches_by_hand():
    ids = np.array([[1, 5], [1, 5], [2, 5], [2, -1], [2, 6], [1, 6]])
    assert bench_video.identity_switches(ids) == 3  # person 0: 1 -> 2 -> 1; person 1: 5 -> (gap) -> 6


def test_metrics_of_known_noise():
    """Truth + white noise of sigma s per coordinate: jitter = E|n(t+1) - 2n(t) + n(t-1)| of a 2-D Gaussian with
    sigma s sqrt(6) per axis, i.e. s sqrt(6) sqrt(pi / 2); the error is s sqrt(pi / 2) (Rayleigh means)."""
    rng = np.random.default_rng(0)
    truth = np.cumsum(rng.normal(0, 1, (400, 2, 17, 2)), axis=0)
    valid = np.ones((400, 2, 17), bool)
    pred = truth + rng.normal(0, 2.0, truth.shape)
    assert bench_video.jitter(pred, truth, valid) == pytest.approx(2.0 * np.sqrt(6) * np.sqrt(np.pi / 2), rel=0.03)
    assert bench_video.mean_error(pred, truth, valid) == pytest.approx(2.0 * np.sqrt(np.pi / 2), rel=0.03)
    assert bench_video.lag_frames(pred, truth, valid) == pytest.approx(0.0, abs=0.051)


# ----------------------------------------------------------------------------- the section


def test_measure_video_on_a_tiny_clip(untrained_checkpoint):
    torch.set_num_threads(1)  # tiny batches: one thread is faster on a shared machine (conftest resets it)
    estimator = PoseEstimator.from_checkpoint(untrained_checkpoint, device="cpu", flip=False)
    settings = bench_video.VideoSettings(frames=8, size=(160, 120), people=2, rounds=1)
    variants = {"none": {"smoothing": "none"}, "one-euro": {"smoothing": "one-euro", "min_cutoff": 0.5, "beta": 0.03}}
    result = bench_video.measure_video(estimator, variants, settings)
    rows = {r["variant"]: r for r in result["rows"]}
    assert set(rows) == {"none", "one-euro"} and result["frames"] == 8 and result["people"] == 2
    assert rows["none"]["jitter_px_x"] == 1.0 and rows["none"]["min_cutoff"] is None
    for row in rows.values():
        assert row["ms_per_person"] > 0 and row["id_switches"] >= 0
        assert np.isfinite([row["jitter_px"], row["error_px"], row["lag_frames"]]).all()
    assert len(bench_video.target_lines(result["rows"])) == 1


def test_benchmark_cli_video_section(untrained_checkpoint, tmp_path):
    cli = load_tool("benchmark")
    table = tmp_path / "rows.csv"
    args = cli.get_args_parser().parse_args(
        ["--sections", "video", "--quick", "--threads", "1", "--video-frames", "8", "--video-people", "1",
         "--video-checkpoint", str(untrained_checkpoint), "--video-csv", str(table), "--video-min-cutoff", "0.5", "1",
         "--json", str(tmp_path / "bench.json"), "--overwrite"])  # --overwrite: the second run's --json
    results = cli.main(args)
    assert [r["variant"] for r in results["video"]["rows"]] == ["none", "one-euro 0.5 Hz, beta 0.03",
                                                                "one-euro 1 Hz, beta 0.03"]
    rows = list(csv.DictReader(table.open()))
    assert len(rows) == 3 and rows[0]["smoothing"] == "none" and rows[0]["commit"] and rows[0]["load_average"]
    cli.main(args)  # a second run appends
    assert len(list(csv.DictReader(table.open()))) == 6
    missing = cli.get_args_parser().parse_args(["--sections", "video", "--video-checkpoint", str(tmp_path / "x.pth")])
    with pytest.raises(FileNotFoundError, match="make quickstart"):
        cli.main(missing)
    bad = cli.get_args_parser().parse_args(["--sections", "video", "--video-checkpoint", str(untrained_checkpoint),
                                            "--video-beta", "-1"])
    with pytest.raises(ValueError, match="--video-beta"):
        cli.main(bad)
