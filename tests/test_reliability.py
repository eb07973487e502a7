"""User errors and faults outside training (tools/test.py, tools/demo.py, tools/export.py, the Python API): one
line on stderr, exit status 2, no traceback, nothing written, and no silently wrong or shortened result.

One representative case per class of docs/reliability.md; tools/train.py's cases (lost runs, stale temporary files)
are in tests/test_reliability_train.py, the output policy and every argument in tests/test_output_policy.py.
"""
from __future__ import annotations

import json
import shutil
import tracemalloc
from pathlib import Path

import cv2
import numpy as np
import pytest

from conftest import COCO_MINI, COCO_MMPOSE4, run_tool
from keypoints.data.synthetic import synthetic_video_frames
from keypoints.predictor import Prediction

DETECTIONS = COCO_MMPOSE4 / "person_detection_results" / "detections_person.json"


def _snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def _cli(tool: str, argv: list, monkeypatch, capsys) -> tuple[int, str, str]:
    return run_tool(tool, argv, monkeypatch, capsys)


@pytest.fixture
def nan_detections(tmp_path) -> Path:
    dets = json.loads(DETECTIONS.read_text())
    dets[3]["bbox"] = [float("nan")] * 4
    path = tmp_path / "nan_dets.json"
    path.write_text(json.dumps(dets))  # json writes NaN, as numpy-made files do
    return path


@pytest.fixture(autouse=True)
def headless(monkeypatch):
    monkeypatch.delenv("DISPLAY", raising=False)
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)


def _case_argv(case: str, tmp: Path, checkpoint: Path, nan_detections: Path) -> tuple[str, list, str]:
    """(tool, arguments, words the one-line message must hold) of each case."""
    (tmp / "a_file").write_text("a file")
    mmpose = ["--data-root", COCO_MMPOSE4, "--device", "cpu", "--opts", "data.workers=0"]
    return {
        # silent wrong results
        "test-nan-boxes": ("test", ["--checkpoint", checkpoint, "--boxes", nan_detections, *mmpose],
                           "entry 3 has bbox"),
        "demo-nan-boxes": ("demo", ["--checkpoint", checkpoint, "--input", COCO_MMPOSE4 / "val2017", "--output",
                                    tmp / "demo", "--boxes-from", nan_detections], "expected 4 finite numbers"),
        "demo-empty-boxes": ("demo", ["--checkpoint", checkpoint, "--input", COCO_MMPOSE4 / "val2017", "--output",
                                      tmp / "demo", "--boxes-from", tmp / "empty.json"], "holds no person boxes"),
        "demo-unknown-images": ("demo", ["--checkpoint", checkpoint, "--input", COCO_MMPOSE4 / "val2017", "--output",
                                         tmp / "demo", "--boxes-from", tmp / "elsewhere.json", "--ann-file",
                                         COCO_MMPOSE4 / "annotations" / "person_keypoints_val2017.json"],
                                "image ids not in"),
        # tracebacks for user errors (checked before the work)
        "test-out-under-file": ("test", ["--checkpoint", checkpoint, "--out", tmp / "a_file" / "r.json", *mmpose],
                                "is under the file"),
        "demo-threads": ("demo", ["--checkpoint", checkpoint, "--input", COCO_MMPOSE4 / "val2017", "--threads", "-1"],
                         "--threads must be at least 1"),
        "demo-ann-without-images": ("demo", ["--checkpoint", checkpoint, "--input", COCO_MMPOSE4 / "val2017",
                                             "--output", tmp / "demo", "--boxes-from", DETECTIONS, "--ann-file",
                                             tmp / "no_images.json"], "lacks the list(s) images"),
        "export-output-under-file": ("export", ["--checkpoint", checkpoint, "--output", tmp / "a_file" / "m.onnx"],
                                     "is under the file"),
        # misleading messages
        "demo-output-under-file": ("demo", ["--checkpoint", checkpoint, "--input", COCO_MMPOSE4 / "val2017",
                                            "--output", tmp / "a_file" / "demo"], "is under the file"),
        "demo-max-frames": ("demo", ["--checkpoint", checkpoint, "--input", COCO_MMPOSE4 / "val2017",
                                     "--max-frames", "-1"], "--max-frames must be 0"),
    }[case]


CASES = ("test-nan-boxes", "demo-nan-boxes", "demo-empty-boxes", "demo-unknown-images", "test-out-under-file",
         "demo-threads", "demo-ann-without-images", "export-output-under-file", "demo-output-under-file",
         "demo-max-frames")


@pytest.mark.parametrize("case", CASES)
def test_user_error_is_one_line_and_writes_nothing(case, tmp_path, untrained_checkpoint, nan_detections,
                                                   monkeypatch, capsys):
    (tmp_path / "empty.json").write_text("[]")
    (tmp_path / "elsewhere.json").write_text(json.dumps([{"image_id": 4242, "category_id": 1,
                                                          "bbox": [1, 2, 30, 40], "score": 0.9}]))
    (tmp_path / "no_images.json").write_text(json.dumps({"annotations": []}))
    tool, argv, words = _case_argv(case, tmp_path, untrained_checkpoint, nan_detections)
    before = _snapshot(tmp_path)
    code, _, err = _cli(tool, argv, monkeypatch, capsys)
    assert code == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and words in lines[0], err
    assert "Traceback" not in err
    assert _snapshot(tmp_path) == before


def test_skipped_images_are_counted_and_stated_with_the_ap(tmp_path, untrained_checkpoint, monkeypatch, capsys):
    """A truncated JPEG is skipped (not decoded into a grey picture); tools/test.py says how many instances got no
    prediction and that their people count as missed; with data.bad_images=error it stops with one line."""
    root = tmp_path / "coco"
    shutil.copytree(COCO_MINI, root)
    victim = sorted((root / "val2017").iterdir())[0]
    victim.write_bytes(victim.read_bytes()[: victim.stat().st_size // 2])
    common = ["--checkpoint", untrained_checkpoint, "--data-root", root, "--device", "cpu", "--no-flip"]
    code, out, _ = _cli("test", [*common, "--opts", "data.workers=0", "test.batch_size=64"], monkeypatch, capsys)
    assert code == 0
    image_id = int(victim.stem)
    gt = json.loads((root / "annotations" / "person_keypoints_val2017.json").read_text())["annotations"]
    expected = sum(a["image_id"] == image_id and a["num_keypoints"] > 0 and not a["iscrowd"] for a in gt)
    assert expected > 0 and f"note: {expected} instances were on unreadable images" in out
    code, _, err = _cli("test", [*common, "--opts", "data.workers=0", "data.bad_images=error"], monkeypatch, capsys)
    errors = [line for line in err.replace("\r", "\n").splitlines() if line.startswith("error:")]
    assert code == 2 and len(errors) == 1 and "truncated JPEG" in errors[0] and "Traceback" not in err


def test_video_cut_short_is_reported(tmp_path, untrained_checkpoint, monkeypatch, capsys):
    """A video that stops decoding before the frame count of its container: the output is shorter, and says so."""
    frames, _ = synthetic_video_frames(num_frames=24, size=(160, 120), max_people=1)
    path = tmp_path / "clip.avi"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 10, (160, 120))
    for frame in frames:
        writer.write(frame)
    writer.release()
    data = path.read_bytes()
    header = cv2.VideoCapture(str(path)).get(cv2.CAP_PROP_FRAME_COUNT)
    path.write_bytes(data[: len(data) // 2] + data[-4096:])  # frames lost in the middle, the index kept
    assert header == 24
    code, _, err = _cli("demo", ["--checkpoint", untrained_checkpoint, "--input", path, "--output",
                                 tmp_path / "out.avi"], monkeypatch, capsys)
    assert code == 0 and "stopped decoding after" in err and "of the 24 frames" in err


def test_demo_memory_does_not_grow_with_frames(tmp_path, untrained_checkpoint, monkeypatch, capsys):
    """Without --save-json the demo keeps no per-frame results: a long video costs what a short one does."""
    calls = []
    original = Prediction.to_dict
    monkeypatch.setattr(Prediction, "to_dict", lambda self: calls.append(1) or original(self))
    peaks = {}
    for frames in (10, 60):
        video = tmp_path / f"v{frames}.avi"
        writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"MJPG"), 30, (128, 96))
        pictures, _ = synthetic_video_frames(num_frames=frames, size=(128, 96), max_people=1)
        for frame in pictures:
            writer.write(frame)
        writer.release()
        tracemalloc.start()
        code, _, _ = _cli("demo", ["--checkpoint", untrained_checkpoint, "--input", video, "--output",
                                   tmp_path / f"o{frames}.avi", "--threads", "1"], monkeypatch, capsys)
        peaks[frames] = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        assert code == 0
    assert calls == []  # nothing is formatted, let alone kept, per frame
    assert peaks[60] < peaks[10] + 2 * 2 ** 20, peaks  # 50 more frames: no more than a couple of MiB more (Python)


def test_api_errors_are_one_line(untrained_checkpoint):
    from keypoints import PoseEstimator

    estimator = PoseEstimator.from_checkpoint(untrained_checkpoint, device="cpu")
    for image, boxes in ((np.zeros((48, 64, 3), np.float64), None), (np.zeros((48, 64, 3), np.uint8), [[1, 2, 3]])):
        with pytest.raises(ValueError) as info:
            estimator(image, boxes=boxes)
        assert "\n" not in str(info.value)
