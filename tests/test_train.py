"""tools/train.py end to end on CPU: real COCO samples and synthetic data, resume, overwrite, NaN handling, DDP."""
import csv
import os
import shutil
import subprocess
import sys

import pytest
import torch

from keypoints.data.synthetic import make_synthetic_dataset
from conftest import COCO_MINI, ROOT, load_tool
from keypoints import training
from keypoints.modelfile import FORMAT_VERSION

train = load_tool("train")

# Quick runs: the quickstart model, few iterations, no augmentation noise unless a test wants it.
QUICK = ["data.batch_size=8", "data.workers=0", "train.warmup_iters=5", "train.log_interval=1",
         "train.val_interval=100", "test.batch_size=32"]
NO_AUG = ["aug.flip_prob=0", "aug.half_body_prob=0", "aug.rotation_prob=0", "aug.scale_range=[1.0,1.0]",
          "aug.photometric=false"]


def _run(tmp, *opts, epochs=2, resume=None, overwrite=False, data_root=COCO_MINI, config="configs/quickstart.yaml",
         allow=()):
    argv = ["--config", str(ROOT / config), "--output-dir", str(tmp), "--device", "cpu", "--no-progress",
            "--epochs", str(epochs), "--data-root", str(data_root)] + (["--overwrite"] if overwrite else [])
    if resume is not None:
        argv += ["--resume"] + ([resume] if resume != "last" else [])
    if allow:
        argv += ["--allow-change", *allow]
    args = train.get_args_parser().parse_args(argv + ["--opts", *QUICK, *opts])
    return train.main(args)


def _losses(folder):
    with open(folder / "metrics.csv") as f:
        return [float(r["train_loss"]) for r in csv.DictReader(f)]


def test_trains_on_real_coco_and_writes_everything(tmp_path):
    metrics = _run(tmp_path, "train.max_iters_per_epoch=4", "train.val_interval=3", epochs=3)
    losses = _losses(tmp_path)
    assert len(losses) == 3 and all(torch.isfinite(torch.tensor(losses)))
    assert losses[2] < losses[0]
    assert 0.0 <= metrics["AP"] <= 1.0 and "val_loss" in metrics  # evaluated after the last epoch
    for name in ("config.yaml", "last.pth", "best.pth", "metrics.csv", "train.log", "curves.png",
                 "coco_keypoint_results.json"):
        assert (tmp_path / name).is_file(), name
    assert list((tmp_path / "tensorboard").iterdir())
    state = torch.load(tmp_path / "last.pth", weights_only=True)  # a plain torch file, readable without keypoints
    assert set(state) >= {"format", "format_version", "model", "optimizer", "scheduler", "scaler", "epoch",
                          "best_metric", "config", "metadata", "data"}
    assert state["epoch"] == 3 and state["config"]["data"]["root"] == str(COCO_MINI)
    assert state["data"]["train_ann"]["sha1"] and state["format_version"] == FORMAT_VERSION
    assert not list(tmp_path.glob("*.partial*"))  # atomic writes leave no temporary files


def test_trains_on_synthetic_data(tmp_path):
    root = tmp_path / "synthetic"
    make_synthetic_dataset(root, train_images=16, val_images=4, seed=1)
    _run(tmp_path / "run", "train.max_iters_per_epoch=4", "train.val_interval=3", *NO_AUG, data_root=root, epochs=3)
    losses = _losses(tmp_path / "run")
    assert len(losses) == 3 and losses[2] < losses[0]


def test_resume_continues_exactly(tmp_path):
    opts = ("train.max_iters_per_epoch=3",)
    _run(tmp_path / "full", *opts, epochs=2)
    _run(tmp_path / "cut", *opts, epochs=1)
    # What a killed process leaves behind: temporaries of our checkpoints and metrics.csv (removed), and a
    # file of the user's that merely looks alike (kept).
    stale = [tmp_path / "cut" / n for n in ("last.0a1b2c3d.partial.pth", "best.9f8e7d6c.partial.pth",
                                            "metrics.00aa11bb.partial.csv")]
    for p in stale + [tmp_path / "cut" / "notes.partial.txt"]:
        p.write_bytes(b"partial")
    with pytest.raises(ValueError, match=r"differs from the run's \(train.epochs: 1 -> 2\).*--allow-change"):
        _run(tmp_path / "cut", *opts, epochs=2, resume="last")
    _run(tmp_path / "cut", *opts, epochs=2, resume="last", allow=["train.epochs"])
    assert not any(p.exists() for p in stale) and (tmp_path / "cut" / "notes.partial.txt").exists()
    assert _run(tmp_path / "cut", *opts, epochs=2, resume="last") == {}  # finished: nothing to train, nothing lost
    assert "nothing to train" in (tmp_path / "cut" / "train.log").read_text()
    full, cut = _losses(tmp_path / "full"), _losses(tmp_path / "cut")
    assert len(cut) == 2
    assert cut[0] == pytest.approx(full[0], rel=1e-6)
    assert cut[1] == pytest.approx(full[1], rel=1e-5)  # the epoch after the interruption: same samples, same step
    a = torch.load(tmp_path / "full/last.pth", weights_only=True)["model"]
    b = torch.load(tmp_path / "cut/last.pth", weights_only=True)["model"]
    assert all(torch.allclose(a[k].float(), b[k].float(), rtol=1e-4, atol=1e-6) for k in a)


def test_nan_loss_stops_and_keeps_the_last_good_checkpoint(tmp_path, monkeypatch):
    _run(tmp_path, "train.max_iters_per_epoch=2", epochs=1)
    good = torch.load(tmp_path / "last.pth", weights_only=True)

    def nan_loss(self, pred, target, weight=None):
        return pred.float().sum() * float("nan")

    monkeypatch.setattr(training.KeypointMSELoss, "forward", nan_loss)
    with pytest.raises(SystemExit) as stop:
        _run(tmp_path, "train.max_iters_per_epoch=2", epochs=2, resume="last", allow=["train.epochs"])
    assert stop.value.code == 1
    kept = torch.load(tmp_path / "last.pth", weights_only=True)
    assert kept["epoch"] == good["epoch"] == 1
    assert "loss became nan" in (tmp_path / "train.log").read_text()


def test_rerun_refuses_then_overwrite_starts_clean(tmp_path):
    opts = ("train.max_iters_per_epoch=2",)
    _run(tmp_path, *opts, epochs=2)
    best = (tmp_path / "best.pth").read_bytes()
    with pytest.raises(ValueError, match="already holds a run .*--resume.*--overwrite"):
        _run(tmp_path, *opts, epochs=1)
    assert (tmp_path / "best.pth").read_bytes() == best and len(_losses(tmp_path)) == 2
    (tmp_path / "notes.txt").write_text("the user's own file")
    _run(tmp_path, *opts, epochs=1, overwrite=True)
    assert len(_losses(tmp_path)) == 1  # no rows of the earlier run
    assert torch.load(tmp_path / "best.pth", weights_only=True)["epoch"] == 1
    assert "deleted the earlier run's" in (tmp_path / "train.log").read_text()
    assert (tmp_path / "notes.txt").read_text() == "the user's own file"


def test_nan_in_the_first_epoch_names_no_checkpoint(tmp_path, monkeypatch):
    def nan_loss(self, pred, target, weight=None):
        return pred.float().sum() * float("nan")

    monkeypatch.setattr(training.KeypointMSELoss, "forward", nan_loss)
    with pytest.raises(SystemExit) as stop:
        _run(tmp_path, "train.max_iters_per_epoch=1", epochs=1)
    assert stop.value.code == 1 and not (tmp_path / "last.pth").exists()
    log = (tmp_path / "train.log").read_text()
    assert "no checkpoint was written" in log and "last good checkpoint" not in log


def test_bad_config_and_data_fail_clearly(tmp_path):
    with pytest.raises(ValueError, match="unknown config key 'train.lrr'"):
        _run(tmp_path, "train.lrr=1")
    with pytest.raises(FileNotFoundError, match="not found: .*nowhere"):
        _run(tmp_path, data_root=tmp_path / "nowhere")
    metrics = _run(tmp_path / "tiny", "data.batch_size=1000", "train.max_iters_per_epoch=1", epochs=1)
    assert "train_loss" in metrics  # a batch larger than the data is clipped to it (with a warning)
    assert "batch size lowered from 1000 to 53" in (tmp_path / "tiny" / "train.log").read_text()


@pytest.mark.slow
def test_two_process_ddp_on_cpu(tmp_path):
    torchrun = shutil.which("torchrun", path=os.path.dirname(sys.executable))
    cmd = [torchrun, "--nproc_per_node", "2", "--master_port", "29517", str(ROOT / "tools/train.py"),
           "--config", str(ROOT / "configs/quickstart.yaml"), "--output-dir", str(tmp_path), "--device", "cpu",
           "--no-progress", "--epochs", "1", "--data-root", str(COCO_MINI),
           "--opts", *QUICK, "train.max_iters_per_epoch=2", "data.batch_size=4", "train.sync_bn=true"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert sorted(p.name for p in tmp_path.glob("*.pth")) == ["best.pth", "last.pth"]
    state = torch.load(tmp_path / "last.pth", weights_only=True)
    assert state["epoch"] == 1 and not any(k.startswith("module.") for k in state["model"])
    with open(tmp_path / "metrics.csv") as f:
        assert len(list(csv.DictReader(f))) == 1  # rank 0 alone writes logs
