"""tools/demo.py: a generated video in, a video with the same frame count out; image folders with given boxes;
clear errors; never a window on a headless machine."""
from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from keypoints.data.synthetic import write_synthetic_video
from keypoints.media import count_frames, open_source
from conftest import load_tool

ROOT = Path(__file__).resolve().parents[1]
MMPOSE4 = Path(__file__).resolve().parent / "data" / "coco_mmpose4"

demo = load_tool("demo")


@pytest.fixture(scope="module")
def checkpoint(untrained_checkpoint) -> Path:
    return untrained_checkpoint


@pytest.fixture(scope="module")
def video(tmp_path_factory) -> Path:
    path, boxes = write_synthetic_video(tmp_path_factory.mktemp("video") / "people.mp4", num_frames=8)
    assert 1 <= len(boxes[0]) <= 3
    return path


@pytest.fixture(autouse=True)
def headless(monkeypatch):
    """No display, and any attempt to open a window fails the test (the GUI build would abort the process)."""
    monkeypatch.delenv("DISPLAY", raising=False)
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)

    def no_window(*args, **kwargs):
        raise AssertionError("the demo opened a window on a headless machine")
    for name in ("imshow", "namedWindow", "waitKey"):
        monkeypatch.setattr(cv2, name, no_window)


def run(*argv: str) -> dict:
    return demo.main(demo.get_args_parser().parse_args([str(a) for a in argv]))


def test_video_keeps_frame_count(checkpoint, video, tmp_path, capsys):
    out, js = tmp_path / "out.mp4", tmp_path / "frames.json"
    summary = run("--checkpoint", checkpoint, "--input", video, "--output", out, "--save-json", js, "--show")
    assert "no display" in capsys.readouterr().err
    assert summary["frames"] == 8 and Path(summary["output"]) == out
    assert count_frames(out) == count_frames(video) == 8
    frames = json.loads(js.read_text())["frames"]
    assert [f["index"] for f in frames] == list(range(8))
    assert frames[0]["box_mode"] == "full-frame" and {f["box_mode"] for f in frames} <= {"full-frame", "tracked"}
    for person in (p for f in frames for p in f["people"]):
        assert np.asarray(person["keypoints"]).shape == (17, 3)


def test_output_folder_names_the_video(checkpoint, video, tmp_path):
    summary = run("--checkpoint", checkpoint, "--input", video, "--output", tmp_path / "demo", "--max-frames", 2)
    assert summary["frames"] == 2 and count_frames(tmp_path / "demo" / "people.mp4") == 2


def test_images_with_given_boxes(checkpoint, tmp_path):
    dets = MMPOSE4 / "person_detection_results" / "detections_person.json"
    js = tmp_path / "people.json"
    summary = run("--checkpoint", checkpoint, "--input", MMPOSE4 / "val2017", "--output", tmp_path / "demo",
                  "--max-images", 2, "--boxes-from", dets, "--save-json", js)
    written = sorted(p.name for p in (tmp_path / "demo").iterdir())
    assert written == sorted(p.name for p in (MMPOSE4 / "val2017").iterdir())[:2]
    frames = json.loads(js.read_text())["frames"]
    assert summary["box_modes"] == {"given": 2} and all(f["people"] for f in frames)
    expected = [d for d in json.loads(dets.read_text()) if d["image_id"] == int(Path(frames[0]["name"]).stem)
                and d["score"] >= 0.5]
    assert len(frames[0]["people"]) == len(expected)
    image = cv2.imread(str(tmp_path / "demo" / written[0]))
    assert image.shape == cv2.imread(str(MMPOSE4 / "val2017" / written[0])).shape


def test_single_image_full_frame(checkpoint, tmp_path):
    image = sorted((MMPOSE4 / "val2017").iterdir())[0]
    summary = run("--checkpoint", checkpoint, "--input", image, "--output", tmp_path / "pose.png")
    assert summary["box_modes"] == {"full-frame": 1} and (tmp_path / "pose.png").is_file()


def test_clear_errors(checkpoint, video, tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ValueError, match="no images"):
        run("--checkpoint", checkpoint, "--input", empty)
    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(ValueError, match="unsupported input"):
        run("--checkpoint", checkpoint, "--input", tmp_path / "notes.txt")
    (tmp_path / "broken.jpg").write_bytes(b"not a jpeg")
    with pytest.raises(ValueError, match="cannot read image"):
        run("--checkpoint", checkpoint, "--input", tmp_path / "broken.jpg", "--output", tmp_path / "o")
    (tmp_path / "broken.mp4").write_bytes(b"not a video")
    with pytest.raises(ValueError, match="cannot open video|no frame"):
        run("--checkpoint", checkpoint, "--input", tmp_path / "broken.mp4", "--output", tmp_path / "o")
    with pytest.raises(FileNotFoundError, match="input not found"):
        run("--checkpoint", checkpoint, "--input", tmp_path / "missing.mp4")
    with pytest.raises(ValueError, match="camera 57 is not available"):
        open_source("57")
    bad = tmp_path / "model.pth"
    torch.save({"state_dict": {}}, bad)
    with pytest.raises(ValueError, match="not a pose checkpoint"):
        run("--checkpoint", bad, "--input", MMPOSE4 / "val2017")
    with pytest.raises(ValueError, match="applies to images"):
        run("--checkpoint", checkpoint, "--input", video, "--boxes-from", "x.json")


def test_cli_reports_errors_in_one_line(checkpoint, tmp_path):
    import os
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if k not in ("DISPLAY", "WAYLAND_DISPLAY")}
    result = subprocess.run([sys.executable, str(ROOT / "tools" / "demo.py"), "--checkpoint", str(checkpoint),
                             "--input", str(tmp_path)], capture_output=True, text=True, timeout=120,
                            env={**env, "NO_ALBUMENTATIONS_UPDATE": "1"})
    assert result.returncode == 2 and result.stderr.strip().startswith("error: no images")
