"""tools/ablate.py: a sweep of 2 tiny configs x 2 seeds x 1 epoch, resume/skip logic, table = metrics files."""
import csv
import math
import os
import re
import signal
import subprocess
import sys
import time

import pytest
import yaml

from keypoints import ablation
from keypoints.config import load_config
from keypoints.data.synthetic import make_synthetic_dataset
from conftest import ROOT, load_tool

ablate = load_tool("ablate")

# Tiny runs: a quarter-width quickstart model, 2 iterations, evaluation after the only epoch.
TINY = ["model.width_mult=0.25", "data.batch_size=8", "data.workers=0", "train.max_iters_per_epoch=2",
        "train.warmup_iters=1", "train.log_interval=1", "test.batch_size=16", "aug.photometric=false"]


def _sweep_file(tmp_path, runs=("relu", "dyrelu_c")):
    spec = {"description": "tiny test sweep", "seeds": [0, 1], "epochs": 1, "opts": TINY, "baseline": "relu",
            "groups": {"activation": list(runs)},
            "runs": {name: {"config": str(ROOT / "configs/ablations/synthetic" / f"{name}.yaml")} for name in runs}}
    path = tmp_path / "sweep.yaml"
    path.write_text(yaml.safe_dump(spec))
    return path


def _main(sweep, out, data, *extra):
    argv = ["--sweep", str(sweep), "--output-dir", str(out), "--data-root", str(data), "--device", "cpu",
            "--threads", "1", *extra]
    return ablate.main(ablate.get_args_parser().parse_args(argv))


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory):
    root = tmp_path_factory.mktemp("synthetic")
    make_synthetic_dataset(root, train_images=8, val_images=2, seed=3)
    return root


def _final_row(folder):
    with open(folder / "metrics.csv") as f:
        return list(csv.DictReader(f))[-1]


def test_sweep_trains_skips_and_reports_the_metrics_files(tmp_path, tiny_data):
    sweep, out = _sweep_file(tmp_path), tmp_path / "sweep"
    rows = _main(sweep, out, tiny_data)
    for name in ("relu", "dyrelu_c"):
        for seed in (0, 1):
            folder = out / "runs" / name / f"seed{seed}"
            assert (folder / "last.pth").is_file() and (out / "logs" / f"{name}_seed{seed}.log").is_file()
            assert load_config(folder / "config.yaml").train.seed == seed
    for name in ("summary.md", "summary.png", "results.csv"):
        assert (out / name).is_file(), name

    # the table's numbers are the runs' final-epoch metrics: mean and sample std over the seeds
    table = {line.split("|")[1].strip(): [c.strip() for c in line.split("|")[2:-1]]
             for line in (out / "summary.md").read_text().splitlines() if line.startswith("| ") and "---" not in line}
    for row in rows:
        finals = [_final_row(out / "runs" / row["name"] / f"seed{s}") for s in (0, 1)]
        assert row["n"] == 2
        for i, key in enumerate(ablation.METRICS):
            values = [float(f[key]) for f in finals]
            mean, std = sum(values) / 2, abs(values[0] - values[1]) / math.sqrt(2)
            assert row[key] == pytest.approx(mean) and row[key + "_std"] == pytest.approx(std)
            assert table[row["name"]][1 + i] == f"{mean:.3f} ± {std:.3f}"
        minutes = sum(float(f["epoch_time_s"]) for f in finals) / 2 / 60
        assert table[row["name"]][-1] == f"{minutes:.1f}"
        assert row["params"] == ablation.model_cost(ROOT / "configs/ablations/synthetic" / f"{row['name']}.yaml",
                                                    TINY)[0]
    assert table["relu"][4] == "+0.000 ± " + f"{rows[0]['dAP_se']:.3f}"
    with open(out / "results.csv") as f:
        per_run = list(csv.DictReader(f))
    assert len(per_run) == 4 and {r["status"] for r in per_run} == {"done"}
    for r in per_run:
        assert float(r["AP"]) == float(_final_row(out / "runs" / r["name"] / f"seed{r['seed']}")["AP"])

    # a second call trains nothing: every run is finished
    stamps = {p: p.stat().st_mtime_ns for p in out.glob("runs/*/*/last.pth")}
    assert "finished, skipped" not in (out / "ablate.log").read_text()
    _main(sweep, out, tiny_data)
    assert {p: p.stat().st_mtime_ns for p in out.glob("runs/*/*/last.pth")} == stamps
    assert (out / "ablate.log").read_text().count("finished, skipped") == 4


def test_run_state_resume_and_config_mismatch(tmp_path, tiny_data):
    sweep = ablation.load_sweep(_sweep_file(tmp_path, runs=("relu",)))
    sweep.seeds = (0,)
    run, out = sweep.runs[0], tmp_path / "sweep"
    folder = ablation.run_folder(out, "relu", 0)
    cfg = load_config(run.config, ablation.run_overrides(sweep, run, 0) + [f"data.root={tiny_data}"])
    assert ablation.run_state(folder, cfg) == "new"
    folder.mkdir(parents=True)  # a run that died before its first checkpoint
    assert ablation.run_state(folder, cfg) == "stale"
    how = dict(device="cpu", data_root=str(tiny_data), threads=1)
    outcomes = ablation.run_sweep(sweep, out, **how)
    assert outcomes == {("relu", 0): "trained"} and (folder.parent / "seed0.failed1").is_dir()
    assert ablation.run_state(folder, cfg) == "done"

    # two epochs asked for: the one-epoch run is resumed, not restarted
    sweep.epochs = 2
    cfg2 = load_config(run.config, ablation.run_overrides(sweep, run, 0) + [f"data.root={tiny_data}"])
    assert ablation.run_state(folder, cfg2) == "partial"
    outcomes = ablation.run_sweep(sweep, out, **how)
    assert outcomes == {("relu", 0): "resumed"}
    assert [int(float(r["epoch"])) for r in csv.DictReader(open(folder / "metrics.csv"))] == [1, 2]
    assert "--resume" in (out / "logs" / "relu_seed0.log").read_text()

    # another model in the same folder is refused, never mixed into the table
    other = load_config(run.config, ablation.run_overrides(sweep, run, 0) + [f"data.root={tiny_data}",
                                                                             "model.head_act=dyrelu_c"])
    with pytest.raises(ValueError, match="model.head_act"):
        ablation.run_state(folder, other)


def test_sweep_file_errors(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("runs: {a: {config: missing.yaml}}\n")
    with pytest.raises(FileNotFoundError, match="config of run 'a' not found"):
        ablation.load_sweep(bad)
    bad.write_text("runz: {}\n")
    with pytest.raises(ValueError, match="unknown key 'runz'"):
        ablation.load_sweep(bad)
    sweep = ablation.load_sweep(ROOT / "configs/ablations/sweeps/synthetic_paper.yaml")
    with pytest.raises(ValueError, match="unknown run 'nope'"):
        ablation.select_runs(sweep, ["nope"])


@pytest.mark.parametrize("sweep", ["synthetic_paper.yaml", "coco_paper.yaml"])
def test_shipped_sweeps_resolve_to_the_paper_set(sweep):
    spec = ablation.load_sweep(ROOT / "configs/ablations/sweeps" / sweep)
    assert len(spec.runs) == 8 and spec.baseline == "relu"
    acts = set()
    for run in spec.runs:
        cfg = load_config(run.config, ablation.run_overrides(spec, run, 0))
        acts.add((cfg.model.act, cfg.model.head_act, cfg.model.se))
    assert acts == {("relu", "relu", False), ("original", "original", True), ("dyrelu_a", "dyrelu_a", False),
                    ("dyrelu_b", "dyrelu_b", False), ("dyrelu_c", "dyrelu_c", False), ("dyrelu_c", "relu", False),
                    ("relu", "dyrelu_c", False), ("dyrelu_b", "dyrelu_c", False)}


# ----------------------------------------------------------------------------- the runner's processes (issue 19)


def _tiny_sweep(tmp_path, epochs=1):
    spec = {"seeds": [0], "epochs": epochs, "opts": TINY,
            "runs": {"relu": {"config": str(ROOT / "configs/ablations/synthetic/relu.yaml")}}}
    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump(spec))
    return path


def _alive(pid: int) -> bool:
    """Running (a zombie, ended but not yet collected by its parent, counts as gone)."""
    try:
        with open(f"/proc/{pid}/status") as f:
            return not any(line.startswith("State:") and "Z" in line.split()[1] for line in f)
    except FileNotFoundError:
        return False


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="/proc and PR_SET_PDEATHSIG are Linux's")
@pytest.mark.parametrize("sig, status", [
    (signal.SIGTERM, 128 + signal.SIGTERM),
    pytest.param(signal.SIGINT, 130, marks=pytest.mark.slow),
    pytest.param(signal.SIGKILL, -signal.SIGKILL, marks=pytest.mark.slow)],  # no cleanup at all: the kernel's signal
    ids=["sigterm", "ctrl-c", "kill-9"])
def test_runner_never_leaves_its_trainer_running(sig, status, tmp_path, tiny_data):
    """The real tools/ablate.py with a long tiny run: the runner is stopped while its training child runs; the child
    must be gone a few seconds later (before: it kept training, and a resumed sweep started a second trainer in the
    same folder). SIGTERM / Ctrl-C: the runner stops and collects it (exit 143 / 130, one line on stderr); kill -9:
    the kernel sends it SIGTERM (PR_SET_PDEATHSIG)."""
    out = tmp_path / "sweep"
    cmd = [sys.executable, str(ROOT / "tools" / "ablate.py"), "--sweep", str(_tiny_sweep(tmp_path, epochs=500)),
           "--output-dir", str(out), "--data-root", str(tiny_data), "--device", "cpu", "--threads", "1"]
    with open(tmp_path / "stdout", "w") as stdout, open(tmp_path / "stderr", "w") as stderr:
        runner = subprocess.Popen(cmd, stdout=stdout, stderr=stderr,
                                  env={**os.environ, "NO_ALBUMENTATIONS_UPDATE": "1"})
    try:
        child, deadline = None, time.monotonic() + 120
        while child is None and time.monotonic() < deadline and runner.poll() is None:
            log = (out / "ablate.log").read_text() if (out / "ablate.log").is_file() else ""
            found = re.search(r"\(pid (\d+), log", log)
            child = int(found.group(1)) if found else time.sleep(0.1)
        assert child is not None and _alive(child), (tmp_path / "stderr").read_text()[-2000:]
        time.sleep(1.0)  # the child is importing or training now
        runner.send_signal(sig)
        assert runner.wait(timeout=30) == status
        deadline = time.monotonic() + 5
        while _alive(child) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not _alive(child), f"the training process {child} survived its runner"
    finally:
        if runner.poll() is None:
            runner.kill()
    if sig != signal.SIGKILL:
        err = (tmp_path / "stderr").read_text().strip().splitlines()
        assert len(err) == 1 and err[0] in ("interrupted", "terminated by SIGTERM; the training process was stopped")
        assert not (out / ".ablate.lock").exists()


def test_run_folder_held_by_a_trainer_is_refused_not_trained(tmp_path, tiny_data):
    """A trainer still holding a run folder (its RunLock: one left by a runner killed before this fix, or started by
    hand): the sweep refuses at once with one line, before training anything or moving the folder aside."""
    from keypoints.training import RunLock

    folder = tmp_path / "sweep" / "runs" / "relu" / "seed0"
    folder.mkdir(parents=True)  # no checkpoint yet: would be moved aside as a dead run
    with RunLock(folder):
        with pytest.raises(ValueError, match="is in use by another training process"):
            _main(_tiny_sweep(tmp_path), tmp_path / "sweep", tiny_data)
    assert folder.is_dir() and not (tmp_path / "sweep" / "logs").exists()
    assert not list(folder.parent.glob("seed0.failed*"))


def test_second_runner_on_one_sweep_folder_is_refused(tmp_path, tiny_data):
    out = tmp_path / "sweep"
    with ablation.SweepLock(out):
        with pytest.raises(ValueError, match="in use by another tools/ablate.py"):
            _main(_tiny_sweep(tmp_path), out, tiny_data)
    assert not (out / "runs").exists()


def test_failed_run_reports_the_trainers_error(tmp_path, tiny_data):
    """A run whose trainer refuses (here: an annotation file the data root lacks) is a failure with the trainer's
    own one-line error in the runner's log, not a bare exit status; the summary is still written and the exit
    status is 1."""
    with pytest.raises(SystemExit) as stop:
        _main(_tiny_sweep(tmp_path), tmp_path / "sweep", tiny_data, "--opts", "data.train_ann=annotations/none.json")
    assert stop.value.code == 1 and (tmp_path / "sweep" / "summary.md").is_file()
    assert "relu seed 0 failed (exit 2: error: " in (tmp_path / "sweep" / "ablate.log").read_text()


def test_missing_init_from_is_refused_before_training(tmp_path, tiny_data):
    with pytest.raises(FileNotFoundError, match="train.init_from"):
        _main(_tiny_sweep(tmp_path), tmp_path / "sweep", tiny_data, "--opts", "train.init_from=no_such_model.pth")
    assert not (tmp_path / "sweep").exists()
