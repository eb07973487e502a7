"""Issue 19: nothing a user gave is ever overwritten, and every argument is checked (keypoints/outputs.py).

One parametrised test per class of the reliability table (docs/reliability.md): data loss, escape, silent wrong
results, tracebacks; each case runs a real tool's command line in this process (``run_cli``, as the console
scripts do) and must end with exit status 2, exactly one line on stderr (``error: ...`` naming the problem), no
traceback, and every file and folder of the workspace (the inputs and any earlier outputs) byte-identical
afterwards. Processes (Ctrl-C in the demo) are at the end; the ablation runner's child process is tested with a
real subprocess in tests/test_ablate.py.
"""
from __future__ import annotations

import json
import math
import os
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest
import yaml

from conftest import COCO_MMPOSE4, ROOT, run_tool
from keypoints import media
from keypoints.data.synthetic import synthetic_video_frames
from keypoints.outputs import (atomic_path, check_output, child_path, distinct_outputs, remove_partials,
                               write_json)

RELU = ROOT / "configs" / "ablations" / "synthetic" / "relu.yaml"


def _snapshot(folder: Path) -> dict[str, bytes | None]:
    """Every file (its bytes) and folder (None) under ``folder``; symbolic links by their target."""
    def content(p: Path) -> bytes | None:
        return f"-> {os.readlink(p)}".encode() if p.is_symlink() else p.read_bytes() if p.is_file() else None

    return {str(p.relative_to(folder)): content(p) for p in sorted(folder.rglob("*"))}


def _cli(tool: str, argv: list, monkeypatch, capsys) -> tuple[int, str, str]:
    return run_tool(tool, argv, monkeypatch, capsys)


def _video(path: Path, frames: int = 6, fourcc: str = "MJPG") -> Path:
    pictures, _ = synthetic_video_frames(num_frames=frames, size=(128, 96), max_people=1)
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*fourcc), 10, (128, 96))
    for frame in pictures:
        writer.write(frame)
    writer.release()
    return path


def _sweep(path: Path, text: str) -> Path:
    path.write_text(text.replace("RELU", str(RELU)))
    return path


@pytest.fixture
def ws(tmp_path: Path, untrained_checkpoint: Path, monkeypatch) -> Path:
    """A user's folder: a checkpoint, photos, a video, a COCO root, earlier results, a sweep file, a symlink and a
    hard link to the checkpoint. The working directory is this folder (relative spellings of the same files)."""
    shutil.copy(untrained_checkpoint, tmp_path / "v.pth")
    shutil.copytree(COCO_MMPOSE4, tmp_path / "coco")
    (tmp_path / "photos").mkdir()
    for image in sorted((COCO_MMPOSE4 / "val2017").iterdir())[:2]:
        shutil.copy(image, tmp_path / "photos" / image.name)
    _video(tmp_path / "clip.avi")
    _video(tmp_path / "clip.mp4", fourcc="mp4v")
    (tmp_path / "results.json").write_text('[{"image_id": 1, "category_id": 1, "keypoints": [], "score": 1}]')
    (tmp_path / "notes.yaml").write_text("my notes: keep\n")
    (tmp_path / "link.json").symlink_to("v.pth")
    (tmp_path / "gone").symlink_to("no_such_folder")
    (tmp_path / "dangling.json").symlink_to("no_such_file.json")
    os.link(tmp_path / "v.pth", tmp_path / "hard.json")
    os.link(tmp_path / "v.pth", tmp_path / "hard.onnx")
    (tmp_path / "models").mkdir()
    shutil.copy(tmp_path / "v.pth", tmp_path / "models" / "v2.pth")
    (tmp_path / "annotated").mkdir()  # an earlier demo output: one picture of the same name as an input
    shutil.copy(next((tmp_path / "photos").iterdir()), tmp_path / "annotated")
    (tmp_path / "report").mkdir()  # a folder of the user's that is not a sweep folder
    (tmp_path / "report" / "summary.md").write_text("my own summary\n")
    _sweep(tmp_path / "sweep.yaml", "seeds: [0]\nruns: {relu: {config: RELU}}\n")
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("DISPLAY", raising=False)
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    return tmp_path


ANN = "coco/annotations/person_keypoints_val2017.json"
TEST = ["--checkpoint", "v.pth", "--data-root", "coco", "--device", "cpu", "--opts", "data.workers=0"]
DEMO = ["--checkpoint", "v.pth", "--device", "cpu"]
BENCH = ["--sections", "postprocess", "--post-configs", "configs/quickstart.yaml"]
ABLATE = ["--sweep", "sweep.yaml", "--device", "cpu"]

# class -> case -> (tool, arguments, words of the one-line message); "sweep:TEXT" arguments write sweep.yaml first
CASES: dict[str, dict[str, tuple[str, list, str]]] = {
    "data-loss": {
        "export-onto-its-checkpoint": ("export", ["--checkpoint", "v.pth", "--output", "v.pth"], "--output v.pth"),
        "export-onto-checkpoint-by-hard-link": ("export", ["--checkpoint", "v.pth", "--output", "hard.onnx"],
                                                "is an input of this command"),
        "test-out-onto-checkpoint": ("test", [*TEST, "--out", "v.pth", "--overwrite"], "is an input"),
        "test-out-onto-annotation-file": ("test", [*TEST, "--out", ANN, "--overwrite"], "is an input"),
        "test-out-symlink-to-checkpoint": ("test", [*TEST, "--out", "link.json", "--overwrite"], "is an input"),
        "test-out-hard-link-to-checkpoint": ("test", [*TEST, "--out", "hard.json", "--overwrite"], "is an input"),
        "test-out-absolute-spelling": ("test", [*TEST, "--out", "ABS/v.pth", "--overwrite"], "is an input"),
        "test-out-equals-metrics-json": ("test", [*TEST, "--out", "r.json", "--metrics-json", "ABS/r.json"],
                                         "are the same file"),
        "test-out-exists": ("test", [*TEST, "--out", "results.json"], "pass --overwrite"),
        "test-metrics-onto-another-kind": ("test", [*TEST, "--metrics-json", "notes.yaml", "--overwrite"],
                                           "never replaces a file of another kind"),
        "test-metrics-onto-results-in": ("test", ["--results-in", "results.json", "--ann-file", ANN,
                                                  "--metrics-json", "results.json", "--overwrite"], "is an input"),
        "test-metrics-onto-a-dangling-link": ("test", [*TEST, "--metrics-json", "dangling.json", "--overwrite"],
                                              "is a symbolic link"),
        "test-metrics-onto-device": ("test", [*TEST, "--metrics-json", "/dev/null", "--overwrite"],
                                     "not a regular file"),
        "demo-photos-onto-photos": ("demo", [*DEMO, "--input", "photos", "--output", "photos"], "is an input"),
        "demo-output-holds-the-input": ("demo", [*DEMO, "--input", "photos", "--output", "."], "holds the input"),
        "demo-output-holds-the-checkpoint": ("demo", ["--checkpoint", "models/v2.pth", "--input", "photos",
                                                      "--output", "models"], "holds the input models/v2.pth"),
        "demo-image-of-that-name-exists": ("demo", [*DEMO, "--input", "photos", "--output", "annotated"],
                                           "pass --overwrite"),
        "demo-video-onto-itself": ("demo", [*DEMO, "--input", "clip.avi", "--output", "clip.avi"], "is an input"),
        "demo-video-into-its-folder": ("demo", [*DEMO, "--input", "clip.mp4", "--output", "."], "is an input"),
        "demo-save-json-onto-checkpoint": ("demo", [*DEMO, "--input", "photos", "--output", "out",
                                                    "--save-json", "v.pth", "--overwrite"], "is an input"),
        "demo-save-json-equals-output": ("demo", [*DEMO, "--input", "photos/000000000785.jpg", "--output", "a.jpg",
                                                  "--save-json", "a.jpg"], "are the same file"),
        "benchmark-json-onto-config": ("benchmark", ["--sections", "postprocess", "--post-configs", "ABS/quick.yaml",
                                                     "--json", "ABS/quick.yaml", "--overwrite"], "is an input"),
        "ablate-output-holds-the-sweep": ("ablate", [*ABLATE, "--output-dir", "."], "holds the input"),
        "ablate-summary-in-a-user-folder": ("ablate", [*ABLATE, "--output-dir", "report", "--report-only"],
                                            "pass --overwrite"),
        "analyze-output-is-the-images": ("analyze_dyrelu", ["--checkpoint", "v.pth", "--images", "photos",
                                                            "--output-dir", "photos"], "is an input"),
        "synthetic-into-another-kind": ("make_synthetic", ["--out", ".", "--train-images", "1", "--val-images", "0",
                                                           "--overwrite"], "never replaces a file of another kind"),
    },
    "escape": {
        "sweep-run-name-dotdot": ("ablate", [*ABLATE, "--output-dir", "out", "sweep:runs: {'../../../x': "
                                             "{config: RELU}}"], "not a plain file or folder name"),
        "sweep-run-name-absolute": ("ablate", [*ABLATE, "--output-dir", "out", "sweep:runs: {/tmp/x: "
                                               "{config: RELU}}"], "not a plain file or folder name"),
        "sweep-run-name-dot": ("ablate", [*ABLATE, "--output-dir", "out", "sweep:runs: {'.': {config: RELU}}"],
                               "not a plain file or folder name"),
        "ablate-runs-flag-dotdot": ("ablate", [*ABLATE, "--output-dir", "out", "--runs", "../x"],
                                    "not a plain file or folder name"),
    },
    "silent-wrong": {
        "sweep-duplicate-run-name": ("ablate", [*ABLATE, "--output-dir", "out", "sweep:runs:\n  relu: {config: "
                                                "RELU}\n  relu: {config: RELU, opts: [train.lr=1]}\n"],
                                     "key 'relu' is given twice"),
        "sweep-duplicate-run-on-one-line": ("ablate", [*ABLATE, "--output-dir", "out", "sweep:runs: {relu: {config: "
                                                       "RELU}, relu: {config: RELU}}"], "given twice"),
        "sweep-duplicate-seeds": ("ablate", [*ABLATE, "--output-dir", "out", "sweep:seeds: [0, 0]\nruns: {relu: "
                                             "{config: RELU}}"], "listed twice"),
        "sweep-names-differ-in-case": ("ablate", [*ABLATE, "--output-dir", "out", "sweep:runs: {relu: {config: "
                                                  "RELU}, ReLU: {config: RELU}}"], "differ only in case"),
        "sweep-duplicate-top-level-key": ("ablate", [*ABLATE, "--output-dir", "out", "sweep:seeds: [0]\nruns: "
                                                     "{relu: {config: RELU}}\nseeds: [1]\n"], "given twice"),
        "ablate-seeds-flag-repeated": ("ablate", [*ABLATE, "--output-dir", "out", "--seeds", "1", "1"],
                                       "listed twice"),
        "ablate-runs-flag-repeated": ("ablate", [*ABLATE, "--output-dir", "out", "--runs", "relu", "relu"],
                                      "more than once"),
        "benchmark-batch-size-0": ("benchmark", ["--sections", "models", "--batch-size", "0"], "--batch-size"),
        "benchmark-repeats-0": ("benchmark", [*BENCH, "--repeats", "0"], "--repeats"),
        "benchmark-instances-0": ("benchmark", [*BENCH, "--instances", "0"], "--instances"),
        "benchmark-batches-repeated": ("benchmark", ["--sections", "inference", "--inference-batches", "1", "1"],
                                       "more than once"),
        "demo-kpt-thr-nan": ("demo", [*DEMO, "--input", "photos", "--kpt-thr", "nan"], "--kpt-thr"),
        "demo-det-score-thr-above-1": ("demo", [*DEMO, "--input", "photos", "--det-score-thr", "2"],
                                       "--det-score-thr"),
        "demo-video-name-for-images": ("demo", [*DEMO, "--input", "photos", "--output", "a.mp4"], "names a video"),
        "demo-one-image-name-for-many": ("demo", [*DEMO, "--input", "photos", "--output", "a.jpg"],
                                         "names one image"),
        "test-checkpoint-and-results-in": ("test", [*TEST, "--results-in", "results.json", "--ann-file", ANN],
                                           "not both"),
        "test-out-with-results-in": ("test", ["--results-in", "results.json", "--ann-file", ANN, "--out", "x.json"],
                                     "there are none to write"),
        "test-results-named-like-a-checkpoint": ("test", [*TEST, "--out", "best.pth"],
                                                 "has the suffix of a PyTorch"),
        "sweep-opts-set-the-seed": ("ablate", [*ABLATE, "--output-dir", "out", "sweep:seeds: [0, 1]\nopts: "
                                               "[train.seed=5]\nruns: {relu: {config: RELU}}"], "each seed"),
        "sweep-run-opts-set-the-epochs": ("ablate", [*ABLATE, "--output-dir", "out", "sweep:epochs: 2\nruns: {relu: "
                                                     "{config: RELU, opts: [train.epochs=9]}}"],
                                          "give the budget once"),
        "ablate-opts-set-the-epochs": ("ablate", [*ABLATE, "--output-dir", "out", "--epochs", "2", "--opts",
                                                  "train.epochs=9"], "pass --epochs instead"),
        "analyze-checkpoint-and-config": ("analyze_dyrelu", ["--checkpoint", "v.pth", "--config", RELU,
                                                             "--images", "photos", "--output-dir", "f"],
                                          "not both"),
    },
    "traceback": {
        "sweep-yaml-syntax": ("ablate", [*ABLATE, "--output-dir", "out", "sweep:runs: {relu: {config: RELU}\n"],
                              "is not valid YAML"),
        "sweep-seeds-scalar": ("ablate", [*ABLATE, "--output-dir", "out", "sweep:seeds: 0\nruns: {relu: "
                                          "{config: RELU}}"], "seeds must be a non-empty list"),
        "sweep-groups-list": ("ablate", [*ABLATE, "--output-dir", "out", "sweep:groups: [a, b]\nruns: {relu: "
                                         "{config: RELU}}"], "groups must be a mapping"),
        "sweep-opts-string": ("ablate", [*ABLATE, "--output-dir", "out", "sweep:opts: train.lr=1\nruns: {relu: "
                                         "{config: RELU}}"], "opts must be a list"),
        "sweep-epochs-float": ("ablate", [*ABLATE, "--output-dir", "out", "sweep:epochs: 1.5\nruns: {relu: "
                                          "{config: RELU}}"], "epochs must be a positive integer"),
        "sweep-run-name-number": ("ablate", [*ABLATE, "--output-dir", "out", "sweep:runs: {8: {config: RELU}}"],
                                  "quote it"),
        "sweep-baseline-list": ("ablate", [*ABLATE, "--output-dir", "out", "sweep:baseline: [relu]\nruns: {relu: "
                                           "{config: RELU}}"], "is not a run"),
        "sweep-bad-override": ("ablate", [*ABLATE, "--output-dir", "out", "sweep:runs: {relu: {config: RELU, "
                                          "opts: [train.nope=1]}}"], "unknown config key"),
        "ablate-threads-0": ("ablate", [*ABLATE, "--output-dir", "out", "--threads", "0"], "--threads"),
        "benchmark-threads-0": ("benchmark", [*BENCH, "--threads", "0"], "--threads"),
        "benchmark-samples-below-2-batches": ("benchmark", ["--sections", "loader", "--samples", "3"],
                                              "2 batches"),
        "export-opset-5": ("export", ["--checkpoint", "v.pth", "--output", "m.onnx", "--opset", "5"],
                           "--opset 5 is not supported"),
        "test-out-trailing-separator": ("test", [*TEST, "--out", "results/"], "ends with a separator"),
        "test-out-name-too-long": ("test", [*TEST, "--out", "a" * 250 + ".json"], "too long"),
        "test-threads-0": ("test", [*TEST, "--threads", "0"], "--threads"),
        "test-boxes-missing": ("test", [*TEST, "--boxes", "no_such_detections.json"], "--boxes file not found"),
        "test-metrics-in-proc": ("test", [*TEST, "--metrics-json", "/proc/metrics.json"], "cannot be written"),
        "test-out-under-a-broken-link": ("test", [*TEST, "--out", "gone/r.json"], "broken link"),
        "sweep-run-name-too-long": ("ablate", [*ABLATE, "--output-dir", "out", "sweep:runs: {" + "r" * 240 +
                                               ": {config: RELU}}"], "at most 100"),
        "analyze-points-0": ("analyze_dyrelu", ["--checkpoint", "v.pth", "--images", "photos", "--output-dir", "f",
                                                "--points", "0"], "--points"),
        "synthetic-size-too-small": ("make_synthetic", ["--out", "syn", "--size", "8", "8"], "--size"),
    },
}


def _argv(args: list, ws: Path) -> list:
    out = []
    for a in args:
        a = str(a)
        if a.startswith("sweep:"):
            _sweep(ws / "sweep.yaml", a[len("sweep:"):])
            continue
        out.append(str(ws) + a[3:] if a.startswith("ABS/") else a)
    return out


@pytest.mark.parametrize("kind, case", [(k, c) for k, cases in CASES.items() for c in cases])
def test_bad_input_is_one_line_and_nothing_changes(kind: str, case: str, ws: Path, monkeypatch, capsys) -> None:
    tool, args, words = CASES[kind][case]
    argv = _argv(args, ws)
    if tool == "benchmark":
        monkeypatch.chdir(ROOT)  # its default configs and data are relative to the checkout
    if case == "benchmark-json-onto-config":
        shutil.copy(ROOT / "configs" / "quickstart.yaml", ws / "quick.yaml")
    if case == "synthetic-into-another-kind":
        (ws / "train2017").mkdir()
        (ws / "train2017" / "000000000001.jpg").write_text("not a picture: the user's notes")
    before = _snapshot(ws)
    code, _, err = _cli(tool, argv, monkeypatch, capsys)
    assert code == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and words in lines[0], err
    assert "Traceback" not in err
    assert _snapshot(ws) == before


# ----------------------------------------------------------------------------- the API


@pytest.fixture(scope="module")
def estimator(tmp_path_factory):
    from keypoints import PoseEstimator
    from keypoints.config import config_to_dict, load_config
    from keypoints.models import build_model

    import torch

    cfg = load_config(ROOT / "configs" / "quickstart.yaml")
    path = tmp_path_factory.mktemp("api") / "quick.pth"
    torch.save({"model": build_model(cfg.model).state_dict(), "config": config_to_dict(cfg), "epoch": 0}, path)
    return PoseEstimator.from_checkpoint(path, device="cpu"), path


IMAGE = np.zeros((48, 64, 3), np.uint8)  # 64 wide, 48 high
API_CASES = {  # silent wrong results before: a person of score 0 from nowhere, a negative pose score
    "box-right-of-image": (dict(boxes=[[64, 0, 10, 10]]), "box 0 is [64.0, 0.0, 10.0, 10.0]: it lies wholly outside "
                                                          "the 64x48 image"),
    "box-above-image": (dict(boxes=[[0, 0, 5, 5], [0, -20, 5, 20]]), "box 1 is"),
    "negative-box-score": (dict(boxes=[[0, 0, 10, 10]], box_scores=[-0.5]), "box score 0 is -0.5"),
    "nan-box-score": (dict(boxes=[[0, 0, 10, 10]], box_scores=[math.nan]), "box score 0 is nan"),
}


@pytest.mark.parametrize("case", API_CASES)
def test_api_refuses_boxes_that_cannot_be_right(case: str, estimator) -> None:
    kwargs, words = API_CASES[case]
    for call in (lambda: estimator[0](IMAGE, **kwargs),
                 lambda: estimator[0].predict_boxes(IMAGE, kwargs["boxes"], kwargs.get("box_scores"))):
        with pytest.raises(ValueError) as info:
            call()
        assert words in str(info.value) and "\n" not in str(info.value)
    partly_outside = estimator[0](IMAGE, boxes=[[-5, -5, 10, 10]])  # overlapping the image: fine
    assert len(partly_outside.people) == 1


@pytest.mark.parametrize("threads", [0, -1, 1.5, True])
def test_api_threads_are_positive_integers(threads, estimator) -> None:
    from keypoints import PoseEstimator
    from keypoints.backends.compiled import CompiledBackend
    from keypoints.backends.onnx import OnnxBackend

    path = estimator[1]
    calls = [lambda: PoseEstimator.from_checkpoint(path, device="cpu", threads=threads),
             lambda: OnnxBackend(path, threads=threads),  # refused before the file is read as ONNX
             lambda: CompiledBackend(estimator[0].backend.model, estimator[0].backend.info, threads=threads)]
    for call in calls:
        with pytest.raises(ValueError, match="threads must be a positive integer"):
            call()


# ----------------------------------------------------------------------------- the policy itself


def test_atomic_write_keeps_the_previous_file_on_error(tmp_path: Path) -> None:
    target = tmp_path / "metrics.json"
    write_json(target, {"AP": 0.5})
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            tmp.write_text('{"AP": 0.')  # half a file, then a failure
            raise RuntimeError("disk full")
    assert json.loads(target.read_text()) == {"AP": 0.5} and [p.name for p in tmp_path.iterdir()] == ["metrics.json"]
    with pytest.raises(KeyboardInterrupt):  # Ctrl-C keeps the previous file too, unless asked otherwise
        with atomic_path(target) as tmp:
            tmp.write_text("{}")
            raise KeyboardInterrupt
    assert json.loads(target.read_text()) == {"AP": 0.5}
    with pytest.raises(KeyboardInterrupt):
        with atomic_path(target, keep_on_interrupt=True) as tmp:
            tmp.write_text('{"frames": 3}')
            raise KeyboardInterrupt
    assert json.loads(target.read_text()) == {"frames": 3} and not remove_partials(tmp_path)


def test_writer_that_changes_the_suffix(tmp_path: Path) -> None:
    """A writer that falls back to another container (OpenCV's MJPG .avi) replaces the target with that suffix."""
    with atomic_path(tmp_path / "clip.mp4") as tmp:
        tmp.with_suffix(".avi").write_bytes(b"RIFF....AVI ")
    assert [p.name for p in tmp_path.iterdir()] == ["clip.avi"]


@pytest.mark.parametrize("name", ["..", ".", "../x.jpg", "a/b.jpg", "/abs.jpg", "", "a\\b.jpg"])
def test_names_from_data_stay_inside(name: str, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="not a plain file or folder name"):
        child_path(tmp_path, name, "image name")
    assert child_path(tmp_path, "000000000785.jpg") == tmp_path / "000000000785.jpg"


def test_output_rules(tmp_path: Path) -> None:
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "a.jpg").write_bytes(b"\xff\xd8\xff" + b"0" * 20)
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    with pytest.raises(ValueError, match="not a regular file"):  # reading its kind would block
        check_output(fifo, flag="--out", kind="json", overwrite=True)
    with pytest.raises(ValueError, match="holds the input"):
        check_output(tmp_path, flag="--output", kind="folder", inputs=[tmp_path / "in" / "a.jpg"], folder=True)
    with pytest.raises(ValueError, match="never replaces a file of another kind"):
        check_output(tmp_path / "in" / "a.jpg", flag="--out", kind="json", overwrite=True)
    check_output(tmp_path / "in" / "a.jpg", flag="--output", kind="image", overwrite=True)  # same kind, asked
    check_output(tmp_path / "in" / "out", flag="--output", kind="folder", inputs=[tmp_path / "in"], folder=True)
    with pytest.raises(ValueError, match="same file"):
        distinct_outputs({"--out": "x.json", "--metrics-json": tmp_path.cwd() / "x.json"})
    distinct_outputs({"--out": "x.json", "--metrics-json": None, "--save-json": "y.json"})


# ----------------------------------------------------------------------------- processes: Ctrl-C in the demo


def _interrupt_after(monkeypatch, frames: int) -> None:
    """The frame source raises KeyboardInterrupt (as Ctrl-C does) after ``frames`` frames."""
    original = media.FrameSource.__iter__

    def limited(self):
        for i, frame in enumerate(original(self)):
            if i == frames:
                raise KeyboardInterrupt
            yield frame

    monkeypatch.setattr(media.FrameSource, "__iter__", limited)


@pytest.mark.parametrize("source", ["video", "images"])
def test_ctrl_c_in_the_demo_delivers_what_is_done(source: str, ws: Path, monkeypatch, capsys) -> None:
    """Ctrl-C after 3 frames: exit status 130 and one line ("interrupted"); the video holds the 3 frames and is a
    complete file under --output (no temporary file left); --save-json lists them and says it was interrupted; the
    inputs are unchanged. Images: the pictures done are there, each whole."""
    if source == "images":
        for i in range(3):  # 5 images in all
            shutil.copy(next((ws / "photos").iterdir()), ws / "photos" / f"{i:012d}.jpg")
    before = _snapshot(ws)
    _interrupt_after(monkeypatch, 3)
    out = ws / ("out.mp4" if source == "video" else "out")
    code, _, err = _cli("demo", [*DEMO, "--input", "clip.avi" if source == "video" else "photos", "--output", out,
                                 "--save-json", "out.json", "--threads", "1"], monkeypatch, capsys)
    assert code == 130 and err.strip().splitlines() == ["interrupted"], err
    saved = json.loads((ws / "out.json").read_text())
    assert saved["interrupted"] is True and [f["index"] for f in saved["frames"]] == [0, 1, 2]
    if source == "video":
        assert media.count_frames(out) == 3
    else:
        written = sorted(p.name for p in out.iterdir())
        assert written == [f["name"] for f in saved["frames"]]
        assert all(cv2.imread(str(out / name)) is not None for name in written)
    assert not [p for p in ws.rglob("*.partial*")]
    after = _snapshot(ws)
    assert {k: v for k, v in after.items() if not k.startswith(("out", "out.json"))} == before


def test_demo_error_keeps_the_previous_video(ws: Path, monkeypatch, capsys) -> None:
    """A failure half-way (here: the frame source breaks) leaves the earlier --output as it was, even with
    --overwrite: the new video is written under a temporary name and renamed only when complete."""
    earlier = _video(ws / "earlier.mp4", frames=4, fourcc="mp4v").read_bytes()
    original = media.FrameSource.__iter__

    def broken(self):
        for i, frame in enumerate(original(self)):
            if i == 2:
                raise ValueError("cannot decode frame 2 (test)")
            yield frame

    monkeypatch.setattr(media.FrameSource, "__iter__", broken)
    code, _, err = _cli("demo", [*DEMO, "--input", "clip.avi", "--output", "earlier.mp4", "--overwrite",
                                 "--threads", "1"], monkeypatch, capsys)
    assert code == 2 and "cannot decode frame 2" in err
    assert (ws / "earlier.mp4").read_bytes() == earlier and not list(ws.glob("*.partial*"))


def test_overwrite_replaces_only_what_was_asked(ws: Path, monkeypatch, capsys) -> None:
    """With --overwrite the demo replaces the earlier picture of the same name in its output folder (same kind)
    and leaves every other file there alone."""
    (ws / "annotated" / "keep.txt").write_text("the user's file")
    code, _, err = _cli("demo", [*DEMO, "--input", "photos", "--output", "annotated", "--overwrite",
                                 "--threads", "1"], monkeypatch, capsys)
    assert code == 0, err
    assert (ws / "annotated" / "keep.txt").read_text() == "the user's file"
    assert sorted(p.name for p in (ws / "annotated").iterdir()) == sorted(
        [p.name for p in (ws / "photos").iterdir()] + ["keep.txt"])
    assert yaml.safe_load((ws / "notes.yaml").read_text()) == {"my notes": "keep"}
