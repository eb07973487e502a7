"""tools/train.py user errors through its command line: exit status 2, one line on stderr, nothing written over.

Every case fails before any data is read, so the data root does not even exist; each one starts from a folder
state (an earlier run, a stray file, ...) and checks that the failed call left it exactly as it was.
"""
from __future__ import annotations

import csv
import os
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import ROOT, load_tool
from keypoints.utils.cli import run_cli
from keypoints.outputs import remove_partials
from keypoints.utils.logging import MetricWriter

train = load_tool("train")

EARLIER_RUN = {"last.pth": b"epoch 24 checkpoint", "best.pth": b"AP 0.589 checkpoint",
               "metrics.csv": b"epoch,train_loss\n1,0.1\n", "config.yaml": b"train:\n  epochs: 24\n"}


def _snapshot(folder: Path) -> dict[str, bytes | None]:
    """Every file (bytes) and folder (None) under ``folder``, by relative path."""
    return {str(p.relative_to(folder)): p.read_bytes() if p.is_file() else None for p in sorted(folder.rglob("*"))}


def _write(folder: Path, files: dict[str, bytes]) -> None:
    for name, data in files.items():
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_bytes(data)


# (folder state before, output folder relative to tmp_path, extra arguments, words the message must hold)
CASES = {
    "existing-run": (EARLIER_RUN, "run", [], ["already holds a run", "--resume", "--overwrite"]),
    "resume-without-last": ({"run/config.yaml": b"x"}, "run", ["--resume"], ["--resume", "last.pth not found"]),
    "resume-and-overwrite": (EARLIER_RUN, "run", ["--resume", "--overwrite"], ["exclude each other"]),
    "epochs-0": ({}, "run", ["--epochs", "0"], ["--epochs 0", "at least 1"]),
    "batch-size-0": ({}, "run", ["--batch-size", "0"], ["--batch-size 0", "at least 1"]),
    "config-epochs-0": ({"run/config.yaml": b"x"}, "run", ["--opts", "train.epochs=0"],
                        ["'train.epochs' is 0", "at least 1"]),
    "output-under-file": ({"taken": b"a file"}, "taken/run", [], ["is under the file", "folder path"]),
    "output-is-file": ({"taken": b"a file"}, "taken", [], ["is a file", "folder path"]),
}


def _cli(tmp_path: Path, out: str, extra: list[str], monkeypatch: pytest.MonkeyPatch, capsys) -> tuple[int, str]:
    argv = ["train.py", "--config", str(ROOT / "configs/quickstart.yaml"), "--output-dir", str(tmp_path / out),
            "--data-root", str(tmp_path / "no-data"), "--device", "cpu", "--no-progress", *extra]
    monkeypatch.setattr(sys, "argv", argv)
    with pytest.raises(SystemExit) as stop:
        run_cli(train.main, train.get_args_parser())
    return stop.value.code, capsys.readouterr().err


@pytest.mark.parametrize("case", CASES, ids=list(CASES))
def test_user_error_is_one_line_and_touches_nothing(case: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                    capsys: pytest.CaptureFixture) -> None:
    before, out, extra, words = CASES[case]
    if before is EARLIER_RUN:
        before = {f"run/{k}": v for k, v in EARLIER_RUN.items()}
    _write(tmp_path, before)
    snapshot = _snapshot(tmp_path)
    code, err = _cli(tmp_path, out, extra, monkeypatch, capsys)
    assert code == 2
    assert err.count("\n") == 1 and err.startswith("error: "), err
    for word in words:
        assert word in err, err
    assert "metrics.csv" not in err or case == "existing-run"  # --epochs 0 used to blame metrics.csv
    assert _snapshot(tmp_path) == snapshot


def test_unwritable_output_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    if not hasattr(os, "geteuid") or os.geteuid() == 0:  # root writes anywhere: make the probe file fail instead
        def denied(*args, dir=None, **kwargs):
            raise PermissionError(13, "Permission denied", str(dir))

        monkeypatch.setattr("keypoints.outputs.tempfile.mkstemp", denied)
    try:
        code, err = _cli(tmp_path, "locked", [], monkeypatch, capsys)
    finally:
        locked.chmod(0o700)
    assert code == 2 and err.count("\n") == 1 and "cannot be written (Permission denied)" in err, err
    assert [p.name for p in locked.iterdir()] == []


def test_script_refuses_an_earlier_run_without_traceback(tmp_path: Path) -> None:
    # The same through a fresh interpreter: the script's own entry point, no traceback, the run kept byte for byte.
    _write(tmp_path / "run", EARLIER_RUN)
    snapshot = _snapshot(tmp_path)
    cmd = [sys.executable, str(ROOT / "tools/train.py"), "--config", str(ROOT / "configs/quickstart.yaml"),
           "--output-dir", str(tmp_path / "run"), "--device", "cpu", "--epochs", "1"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300,
                          env={**os.environ, "NO_ALBUMENTATIONS_UPDATE": "1"})
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert proc.stderr.count("\n") == 1 and "--overwrite" in proc.stderr and "Traceback" not in proc.stderr
    assert _snapshot(tmp_path) == snapshot


@pytest.mark.parametrize("resume_epoch, kept", [(0, []), (2, [1, 2])], ids=["new-run", "resume-at-2"])
def test_metric_writer_never_mixes_runs(resume_epoch: int, kept: list[int], tmp_path: Path) -> None:
    # metrics.csv of an earlier run with 3 epochs, and the temporary file of a write killed half-way (the run
    # removes it when it starts: keypoints.outputs.remove_partials).
    (tmp_path / "metrics.csv").write_text("epoch,train_loss\n1,0.3\n2,0.2\n3,0.1\n")
    (tmp_path / "metrics.0a1b2c3d.partial.csv").write_text("epoch,train_lo")
    assert [p.name for p in remove_partials(tmp_path)] == ["metrics.0a1b2c3d.partial.csv"]
    writer = MetricWriter(tmp_path, tensorboard=False, resume_epoch=resume_epoch)
    writer.write(resume_epoch + 1, {"train_loss": 0.05})
    with (tmp_path / "metrics.csv").open() as f:
        rows = list(csv.DictReader(f))
    # A new run starts an empty table; a resumed one keeps its epochs up to the checkpoint (later rows were of
    # epochs that run again) and adds the new one.
    assert [int(r["epoch"]) for r in rows] == kept + [resume_epoch + 1]
    assert rows[-1]["train_loss"] == "0.05" and not list(tmp_path.glob("*.partial*"))


# run_cli itself: what other tools get too.
ERRORS = {
    "value": (ValueError("--epochs 0 is not valid;\n it must be at least 1"), 2, "error: --epochs 0 is not valid"),
    "permission": (PermissionError(13, "Permission denied", "/x/metrics.json"), 2,
                   "error: Permission denied: /x/metrics.json; choose another path"),
    "not-a-directory": (NotADirectoryError(20, "Not a directory", "/x/file/out.json"), 2,
                        "error: Not a directory: /x/file/out.json"),
    "is-a-directory": (IsADirectoryError(21, "Is a directory", "/x"), 2, "error: Is a directory: /x"),
    "missing": (FileNotFoundError(2, "No such file or directory", "/x.json"), 2,
                "error: No such file or directory: /x.json; check the path"),
    "ctrl-c": (KeyboardInterrupt(), 130, "interrupted"),
}


@pytest.mark.parametrize("error", ERRORS, ids=list(ERRORS))
def test_run_cli_one_line(error: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture) -> None:
    exc, code, start = ERRORS[error]

    def main(args):
        raise exc

    monkeypatch.setattr(sys, "argv", ["tool.py"])
    with pytest.raises(SystemExit) as stop:
        run_cli(main, train.argparse.ArgumentParser())
    err = capsys.readouterr().err
    assert stop.value.code == code and err.count("\n") == 1 and err.startswith(start), err


def test_run_cli_keeps_tracebacks_of_bugs(monkeypatch: pytest.MonkeyPatch) -> None:
    def main(args):
        raise KeyError("a bug")

    monkeypatch.setattr(sys, "argv", ["tool.py"])
    with pytest.raises(KeyError):
        run_cli(main, train.argparse.ArgumentParser())
