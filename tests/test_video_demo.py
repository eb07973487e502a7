"""tools/demo.py with identities and smoothing: track ids in --save-json for a generated video and for images with
given boxes, one-euro by default on videos only, images never smoothed, and the new flags' errors."""
from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from conftest import COCO_MMPOSE4, load_tool
from keypoints.data.synthetic import write_synthetic_video
from keypoints.predictor import PoseEstimator
from keypoints.utils.io import read_image

demo = load_tool("demo")


@pytest.fixture(autouse=True)
def headless(monkeypatch):
    monkeypatch.delenv("DISPLAY", raising=False)
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)


@pytest.fixture(scope="module")
def video(tmp_path_factory) -> Path:
    path, _ = write_synthetic_video(tmp_path_factory.mktemp("video") / "people.mp4", num_frames=5, size=(320, 240))
    return path


def run(*argv) -> dict:
    """The demo with one torch thread (tiny batches; faster on a shared machine; conftest resets it)."""
    return demo.main(demo.get_args_parser().parse_args([str(a) for a in (*argv, "--threads", 1)]))


@pytest.mark.parametrize("smoothing", [None, "none"])
def test_video_people_have_track_ids(untrained_checkpoint, video, tmp_path, smoothing):
    js = tmp_path / "frames.json"
    extra = [] if smoothing is None else ["--smoothing", smoothing]
    summary = run("--checkpoint", untrained_checkpoint, "--input", video, "--output", tmp_path / "out.mp4",
                  "--save-json", js, *extra)
    assert summary["smoothing"] == (smoothing or "one-euro")  # one-euro by default on videos
    people = [p for f in json.loads(js.read_text())["frames"] for p in f["people"]]
    assert people and all(isinstance(p["track_id"], int) and p["track_id"] >= 1 for p in people)


def test_images_get_ids_but_no_smoothing(untrained_checkpoint, tmp_path):
    """Given boxes on images: ids 1..N on each image (each image on its own), keypoints exactly the plain API's."""
    dets = COCO_MMPOSE4 / "person_detection_results" / "detections_person.json"
    js = tmp_path / "people.json"
    summary = run("--checkpoint", untrained_checkpoint, "--input", COCO_MMPOSE4 / "val2017", "--output",
                  tmp_path / "demo", "--max-images", 2, "--boxes-from", dets, "--save-json", js)
    assert summary["smoothing"] == "none"
    frames = json.loads(js.read_text())["frames"]
    plain = PoseEstimator.from_checkpoint(untrained_checkpoint, device="cpu", flip=False)
    detections = json.loads(dets.read_text())
    for f in frames:
        assert [p["track_id"] for p in f["people"]] == list(range(1, len(f["people"]) + 1))
        image = read_image(COCO_MMPOSE4 / "val2017" / f["name"])
        mine = [d for d in detections if d["image_id"] == int(Path(f["name"]).stem) and d["score"] >= 0.5]
        expected = plain(image, boxes=[d["bbox"] for d in mine], box_scores=[d["score"] for d in mine]).keypoints
        np.testing.assert_allclose(np.array([p["keypoints"] for p in f["people"]]), expected, atol=2e-3)
    assert cv2.imread(str(tmp_path / "demo" / frames[0]["name"])) is not None


def test_smoothing_flags_errors(untrained_checkpoint, video, tmp_path):
    with pytest.raises(ValueError, match="applies to videos and cameras"):
        run("--checkpoint", untrained_checkpoint, "--input", COCO_MMPOSE4 / "val2017", "--output", tmp_path / "o",
            "--smoothing", "one-euro")
    with pytest.raises(ValueError, match="--min-cutoff must be a finite, positive"):
        run("--checkpoint", untrained_checkpoint, "--input", video, "--min-cutoff", "0")
    with pytest.raises(ValueError, match="--beta must be a finite number"):
        run("--checkpoint", untrained_checkpoint, "--input", video, "--beta", "nan")
    with pytest.raises(SystemExit):
        demo.get_args_parser().parse_args(["--checkpoint", "x", "--input", "y", "--smoothing", "kalman"])
