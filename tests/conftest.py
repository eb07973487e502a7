"""Shared test setup: CPU only, quiet albumentations, deterministic seeds, paths to the real COCO samples."""
import os
from pathlib import Path

os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")

import pytest  # noqa: E402
import torch  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
DATA = Path(__file__).resolve().parent / "data"
COCO_MINI = DATA / "coco_mini"
COCO_MMPOSE4 = DATA / "coco_mmpose4"
# The quickstart model overfit on the 40 coco_mini val instances (AP 0.756 there by tools/test.py; see
# tests/data/README.md): a real, non-zero AP for parity checks of exports and runtimes.
TRAINED_CHECKPOINT = DATA / "checkpoints" / "quickstart_coco_mini_val.pth"


@pytest.fixture(autouse=True)
def _seed_and_threads():
    torch.manual_seed(0)
    torch.set_num_threads(2)
    yield


@pytest.fixture
def coco_mini() -> Path:
    return COCO_MINI


@pytest.fixture
def coco_mmpose4() -> Path:
    return COCO_MMPOSE4


def load_tool(name: str):
    """The module of the command-line tool ``name`` (``keypoints.cli.<name>``; tools/<name>.py runs it)."""
    import importlib

    return importlib.import_module(f"keypoints.cli.{name}")


def run_tool(name: str, argv: list, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
             ) -> tuple[int, str, str]:
    """Tool ``name``'s command line in this process, as its console script runs it (``run_cli``): (exit status,
    stdout, stderr)."""
    import sys

    from keypoints.utils.cli import run_cli

    tool = load_tool(name)
    monkeypatch.setattr(sys, "argv", [f"{name}.py", *[str(a) for a in argv]])
    code = 0
    try:
        run_cli(tool.main, tool.get_args_parser())
    except SystemExit as stop:
        code = stop.code
    out = capsys.readouterr()
    return code, out.out, out.err


@pytest.fixture(scope="session")
def untrained_checkpoint(tmp_path_factory) -> Path:
    """A pose checkpoint (quickstart config, untrained weights) as tools/train.py writes it."""
    from keypoints.config import config_to_dict, load_config
    from keypoints.models import build_model

    cfg = load_config(ROOT / "configs" / "quickstart.yaml")
    path = tmp_path_factory.mktemp("ckpt") / "quick.pth"
    torch.save({"model": build_model(cfg.model).state_dict(), "config": config_to_dict(cfg), "epoch": 0}, path)
    return path
