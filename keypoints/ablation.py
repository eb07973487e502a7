"""Ablation sweeps: named configs x seeds under one budget, run through ``tools/train.py``, summarised.

A sweep file (YAML) names the runs and the budget shared by all of them; paths are relative to the file::

    description: DY-ReLU paper ablation on the synthetic data      # first line: the plot title
    seeds: [0, 1, 2]
    epochs: 8                                  # optional; else each config's train.epochs
    opts: [train.milestones=[6,7]]             # applied to every run (the budget)
    baseline: relu                             # optional; the table gives AP differences to it
    groups: {activation: [relu, dyrelu_c], placement: [dyrelu_c]}   # optional; one table per group
    runs:
      relu: {config: ../synthetic/relu.yaml}
      dyrelu_c: {config: ../synthetic/dyrelu_c.yaml, opts: [model.dyrelu.tau=10]}

Each run x seed trains in its own folder ``OUT/runs/<name>/seed<N>`` (a subprocess of ``tools/train.py``, its
console output in ``OUT/logs/<name>_seed<N>.log``). A run is finished when its ``metrics.csv`` has a row for the
final epoch with AP (or its ``last.pth`` says the final epoch is done); an unfinished one is resumed with
``--resume``; a folder without a checkpoint (a run that died in its first epoch) is moved aside to
``<folder>.failed<k>`` and the run starts again. A folder trained with a different config is an error, never mixed
into the table. The summary takes each run's final-epoch metrics from its ``metrics.csv``.
"""
from __future__ import annotations

import csv
import logging
import math
import os
import statistics
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import yaml

from .config import Config, config_from_dict, config_to_dict, load_config

logger = logging.getLogger(__name__)

SWEEP_KEYS = ("description", "seeds", "epochs", "opts", "baseline", "groups", "runs")
METRICS = ("AP", "AP50", "AR")  # the columns of the summary table (all in [0, 1])
TRAIN_MODULE = "keypoints.cli.train"  # each run: python -m keypoints.cli.train (tools/train.py)
PACKAGE_PARENT = str(Path(__file__).resolve().parents[1])  # children import this copy of the package


@dataclass
class RunSpec:
    name: str  # table label and folder name
    config: Path  # YAML config of the run
    opts: tuple[str, ...] = ()  # ``key=value`` overrides of this run only


@dataclass
class Sweep:
    runs: list[RunSpec]  # in table order
    seeds: tuple[int, ...] = (0,)  # each run trains once per seed (``train.seed``)
    epochs: int | None = None  # budget in epochs; None keeps each config's ``train.epochs``
    opts: tuple[str, ...] = ()  # overrides applied to every run (before the run's own)
    baseline: str | None = None  # run whose mean AP the others are compared with
    groups: dict[str, list[str]] = field(default_factory=dict)  # table sections; empty: one table of all runs
    description: str = ""


@dataclass
class RunResult:
    name: str
    seed: int
    folder: Path
    status: str  # done | missing (no final-epoch metrics) | failed (tools/train.py exited with an error)
    metrics: dict[str, float] = field(default_factory=dict)  # final-epoch row of metrics.csv
    train_time_s: float = math.nan  # sum of epoch_time_s over the epochs (training only, no evaluation)


def load_sweep(path: str | Path) -> Sweep:
    """Read and check a sweep file; config paths are resolved relative to it."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"sweep file not found: {path}")
    data = yaml.safe_load(path.read_text()) or {}
    if not isinstance(data, dict):
        raise ValueError(f"sweep '{path}' must be a mapping with keys {', '.join(SWEEP_KEYS)}")
    unknown = [k for k in data if k not in SWEEP_KEYS]
    if unknown:
        raise ValueError(f"unknown key '{unknown[0]}' in sweep '{path}'; valid keys: {', '.join(SWEEP_KEYS)}")
    if not isinstance(data.get("runs"), dict) or not data["runs"]:
        raise ValueError(f"sweep '{path}' needs 'runs': a mapping of name -> {{config: FILE, opts: [...]}}")
    runs = []
    for name, spec in data["runs"].items():
        spec = {"config": spec} if isinstance(spec, str) else spec
        if not isinstance(spec, dict) or "config" not in spec or set(spec) - {"config", "opts"}:
            raise ValueError(f"run '{name}' in sweep '{path}' must be {{config: FILE, opts: [key=value, ...]}}")
        config = (path.parent / spec["config"]).resolve()
        if not config.is_file():
            raise FileNotFoundError(f"config of run '{name}' not found: {config} (sweep '{path}')")
        runs.append(RunSpec(str(name), config, tuple(spec.get("opts") or ())))
    names = [r.name for r in runs]
    groups = {str(g): list(members) for g, members in (data.get("groups") or {}).items()}
    for g, members in groups.items():
        for m in members:
            if m not in names:
                raise ValueError(f"group '{g}' in sweep '{path}' names unknown run '{m}'; runs: {', '.join(names)}")
    baseline = data.get("baseline")
    if baseline is not None and baseline not in names:
        raise ValueError(f"baseline '{baseline}' of sweep '{path}' is not a run; runs: {', '.join(names)}")
    return Sweep(runs=runs, seeds=tuple(int(s) for s in data.get("seeds", [0])), epochs=data.get("epochs"),
                 opts=tuple(data.get("opts") or ()), baseline=baseline, groups=groups,
                 description=str(data.get("description", "")).strip())


def select_runs(sweep: Sweep, names: Sequence[str]) -> Sweep:
    """The sweep restricted to ``names`` (in the sweep's order); unknown names are an error."""
    known = [r.name for r in sweep.runs]
    for n in names:
        if n not in known:
            raise ValueError(f"unknown run '{n}'; the sweep has: {', '.join(known)}")
    groups = {g: [m for m in ms if m in names] for g, ms in sweep.groups.items()}
    return Sweep(runs=[r for r in sweep.runs if r.name in names], seeds=sweep.seeds, epochs=sweep.epochs,
                 opts=sweep.opts, baseline=sweep.baseline if sweep.baseline in names else None,
                 groups={g: ms for g, ms in groups.items() if ms}, description=sweep.description)


def run_overrides(sweep: Sweep, run: RunSpec, seed: int, extra: Sequence[str] = ()) -> list[str]:
    """Overrides of one run, later ones winning: sweep budget, the run's own, ``extra`` (CLI), epochs, seed."""
    out = [*sweep.opts, *run.opts, *extra]
    if sweep.epochs is not None:
        out.append(f"train.epochs={sweep.epochs}")
    return out + [f"train.seed={seed}"]


def run_folder(output_dir: str | Path, name: str, seed: int) -> Path:
    return Path(output_dir) / "runs" / name / f"seed{seed}"


# ----------------------------------------------------------------------------- state of a run folder


def read_metrics(folder: str | Path) -> list[dict[str, float]]:
    """Rows of ``folder/metrics.csv`` as floats (empty cells left out); [] when there is no file."""
    path = Path(folder) / "metrics.csv"
    if not path.is_file():
        return []
    with path.open() as f:
        return [{k: float(v) for k, v in row.items() if v not in (None, "")} for row in csv.DictReader(f)]


def final_metrics(rows: list[dict[str, float]], epochs: int) -> dict[str, float] | None:
    """The row of epoch ``epochs`` if it holds AP (the run evaluates after its last epoch), else None."""
    final = [r for r in rows if int(r.get("epoch", -1)) == epochs and "AP" in r]
    return final[-1] if final else None


def checkpoint_epoch(folder: str | Path) -> int | None:
    """Epochs completed according to ``folder/last.pth``; None without a readable checkpoint."""
    from .modelfile import read_checkpoint

    path = Path(folder) / "last.pth"
    if not path.is_file():
        return None
    try:
        return read_checkpoint(path).epoch
    except (ValueError, FileNotFoundError):  # a truncated or foreign file is "no checkpoint"
        return None


def first_difference(a: Any, b: Any, prefix: str = "") -> str | None:
    """Dotted key of the first difference between two nested config dicts (None if equal)."""
    if isinstance(a, dict) and isinstance(b, dict):
        for k in list(a) + [k for k in b if k not in a]:
            d = first_difference(a.get(k), b.get(k), f"{prefix}{k}.")
            if d is not None:
                return d
        return None
    return None if a == b else f"{prefix.rstrip('.')} ({a!r} vs {b!r})"


def run_state(folder: str | Path, cfg: Config) -> str:
    """``new`` (no folder), ``stale`` (a folder without checkpoint), ``partial`` or ``done``.

    Raises ValueError when the folder holds a run of another config (``train.epochs`` may grow: the run resumes).
    """
    folder = Path(folder)
    if not folder.exists():
        return "new"
    epochs = cfg.train.epochs
    saved = folder / "config.yaml"
    if saved.is_file():
        old = config_to_dict(config_from_dict(yaml.safe_load(saved.read_text()) or {}))
        new = config_to_dict(cfg)
        old_epochs = old["train"].pop("epochs")
        new["train"].pop("epochs")
        diff = first_difference(old, new)
        if diff is not None or old_epochs > epochs:
            diff = diff or f"train.epochs ({old_epochs} vs {epochs})"
            raise ValueError(f"{folder} holds a run of another config (first difference: {diff}); "
                             f"use a new --output-dir or move that folder away")
    if final_metrics(read_metrics(folder), epochs) is not None:
        return "done"
    done = checkpoint_epoch(folder)
    if done is None:
        return "stale"
    return "done" if done >= epochs else "partial"


# ----------------------------------------------------------------------------- running


def train_command(config: Path, folder: Path, overrides: Sequence[str], device: str = "auto",
                  data_root: str | None = None, resume: bool = False) -> list[str]:
    """The ``tools/train.py`` command line of one run (``--opts`` last: it takes every remaining word)."""
    cmd = [sys.executable, "-m", TRAIN_MODULE, "--config", str(config), "--output-dir", str(folder),
           "--device", device, "--no-progress"]
    if data_root is not None:
        cmd += ["--data-root", str(data_root)]
    if resume:  # run_state compared the folder's config with this one: only train.epochs may have grown
        cmd += ["--resume", "--allow-change", "train.epochs"]
    return cmd + ["--opts", *overrides]


def _move_aside(folder: Path) -> Path:
    k = 1
    while folder.with_name(f"{folder.name}.failed{k}").exists():
        k += 1
    target = folder.with_name(f"{folder.name}.failed{k}")
    folder.rename(target)
    return target


def run_sweep(sweep: Sweep, output_dir: str | Path, device: str = "auto", data_root: str | None = None,
              extra_opts: Sequence[str] = (), threads: int | None = None,
              dry_run: bool = False) -> dict[tuple[str, int], str]:
    """Train every run x seed that is not finished; returns ``{(name, seed): outcome}``.

    Outcomes: ``skipped`` (already finished), ``trained``, ``resumed``, ``failed`` (non-zero exit; the sweep goes on,
    see ``OUT/logs``) or, with ``dry_run``, ``would train`` / ``would resume`` (commands are logged, nothing runs).
    ``threads`` sets ``OMP_NUM_THREADS`` of the runs (CPU training on a busy machine: 1 thread avoids OpenMP threads
    waiting for each other, measured 16x faster per step than 2 threads on 2 shared cores).
    """
    output_dir = Path(output_dir)
    outcomes: dict[tuple[str, int], str] = {}
    total = len(sweep.runs) * len(sweep.seeds)
    # train.py imports the package of its own checkout, as the caller does (not another installed copy)
    paths = [PACKAGE_PARENT, os.environ.get("PYTHONPATH", "")]
    env = {**os.environ, "NO_ALBUMENTATIONS_UPDATE": "1", "PYTHONPATH": os.pathsep.join(p for p in paths if p)}
    if threads is not None:
        env.update(OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads))
    for seed in sweep.seeds:  # seed-major: an interrupted sweep has every config at the same number of seeds
        for run in sweep.runs:
            overrides = run_overrides(sweep, run, seed, extra_opts)
            cfg = load_config(run.config, overrides + ([f"data.root={data_root}"] if data_root else []))
            folder = run_folder(output_dir, run.name, seed)
            state = run_state(folder, cfg)
            index = len(outcomes) + 1
            if state == "done":
                outcomes[(run.name, seed)] = "skipped"
                logger.info("[%d/%d] %s seed %d: finished, skipped", index, total, run.name, seed)
                continue
            cmd = train_command(run.config, folder, overrides, device, data_root, state == "partial")
            if dry_run:
                outcomes[(run.name, seed)] = "would resume" if state == "partial" else "would train"
                logger.info("[%d/%d] %s", index, total, " ".join(cmd))
                continue
            if state == "stale":
                logger.warning("%s has no checkpoint (a run that died early): moved to %s", folder,
                               _move_aside(folder))
            log_path = output_dir / "logs" / f"{run.name}_seed{seed}.log"
            log_path.parent.mkdir(parents=True, exist_ok=True)
            logger.info("[%d/%d] %s seed %d: %s (log %s)", index, total, run.name, seed,
                        "resuming" if state == "partial" else "training", log_path)
            with log_path.open("a") as log:
                log.write("$ " + " ".join(cmd) + "\n")
                log.flush()
                rc = subprocess.run(cmd, stdout=log, stderr=subprocess.STDOUT, env=env).returncode
            outcome = "failed" if rc != 0 else "resumed" if state == "partial" else "trained"
            outcomes[(run.name, seed)] = outcome
            if rc != 0:
                logger.error("%s seed %d failed (exit %d); see %s", run.name, seed, rc, log_path)
    return outcomes


def collect_results(sweep: Sweep, output_dir: str | Path, extra_opts: Sequence[str] = ()) -> list[RunResult]:
    """Final-epoch metrics and training time of every run x seed, read from the run folders' ``metrics.csv``."""
    results = []
    for run in sweep.runs:
        for seed in sweep.seeds:
            overrides = run_overrides(sweep, run, seed, extra_opts)
            epochs = load_config(run.config, overrides).train.epochs
            folder = run_folder(output_dir, run.name, seed)
            rows = read_metrics(folder)
            final = final_metrics(rows, epochs)
            if final is None:
                results.append(RunResult(run.name, seed, folder, "missing"))
                continue
            time_s = sum(r.get("epoch_time_s", 0.0) for r in rows if int(r["epoch"]) <= epochs)
            results.append(RunResult(run.name, seed, folder, "done", final, time_s))
    return results


def model_cost(config: Path, overrides: Sequence[str] = ()) -> tuple[int, int]:
    """(parameters, MACs of one forward pass on a single crop at the config's ``data.input_size``)."""
    from .benchmark import count_macs, count_params  # the one implementation of both
    from .models import build_model

    cfg = load_config(config, overrides)
    model = build_model(cfg.model)
    width, height = cfg.data.input_size
    return count_params(model), count_macs(model, (height, width))


# ----------------------------------------------------------------------------- summary


def _mean_std(values: list[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (ddof 1; 0 for a single value); NaN for no values."""
    if not values:
        return math.nan, math.nan
    return statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else 0.0


def summarise(sweep: Sweep, results: list[RunResult], costs: dict[str, tuple[int, int]]) -> list[dict[str, Any]]:
    """One row per run name: seeds done, mean/std of each metric, params, MACs, mean training minutes per run and,
    with a baseline, the AP difference to it with the standard error of that difference (sqrt(s1^2/n1 + s2^2/n2))."""
    rows = []
    for run in sweep.runs:
        done = [r for r in results if r.name == run.name and r.status == "done"]
        row: dict[str, Any] = {"name": run.name, "n": len(done), "seeds": [r.seed for r in done],
                               "params": costs[run.name][0], "macs": costs[run.name][1]}
        for key in METRICS:
            row[key], row[key + "_std"] = _mean_std([r.metrics[key] for r in done if key in r.metrics])
        row["train_min"] = _mean_std([r.train_time_s / 60 for r in done])[0]
        rows.append(row)
    base = next((r for r in rows if r["name"] == sweep.baseline), None)
    for row in rows:
        if base is not None and row["n"] and base["n"]:
            row["dAP"] = row["AP"] - base["AP"]
            row["dAP_se"] = math.sqrt(row["AP_std"] ** 2 / row["n"] + base["AP_std"] ** 2 / base["n"])
    return rows


def _fmt(mean: float, std: float, n: int, spec: str = ".3f") -> str:
    """``mean ± std``; a single seed has no spread to show."""
    return "-" if math.isnan(mean) else f"{mean:{spec}}" if n < 2 else f"{mean:{spec}} ± {std:.3f}"


def format_markdown(sweep: Sweep, rows: list[dict[str, Any]]) -> str:
    """Markdown table(s): one per group (or one of all runs), mean ± std over seeds (sample std)."""
    by_name = {r["name"]: r for r in rows}
    groups = sweep.groups or {"": [r.name for r in sweep.runs]}
    delta = f" | ΔAP vs {sweep.baseline} (± s.e.)" if sweep.baseline else ""
    header = f"| run | seeds | AP | AP50 | AR{delta} | params (M) | MACs (M) | train min/run |"
    align = "|---|---:|---:|---:|---:|" + ("---:|" if delta else "") + "---:|---:|---:|"
    parts = []
    for group, members in groups.items():
        lines = ([f"**{group}**", ""] if group else []) + [header, align]
        for name in members:
            r = by_name[name]
            cells = [name, str(r["n"])] + [_fmt(r[k], r[k + "_std"], r["n"]) for k in METRICS]
            if delta:
                cells.append(_fmt(r["dAP"], r["dAP_se"], r["n"], "+.3f") if "dAP" in r else "-")
            cells += [f"{r['params'] / 1e6:.3f}", f"{r['macs'] / 1e6:.1f}",
                      "-" if math.isnan(r["train_min"]) else f"{r['train_min']:.1f}"]
            lines.append("| " + " | ".join(cells) + " |")
        parts.append("\n".join(lines))
    return "\n\n".join(parts) + "\n"


def write_results_csv(results: list[RunResult], path: str | Path) -> Path:
    """One row per run x seed: name, seed, status, final-epoch metrics, training seconds, folder."""
    keys = sorted({k for r in results for k in r.metrics if k != "epoch"})
    with Path(path).open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["name", "seed", "status", "epoch", *keys, "train_time_s", "folder"])
        for r in results:
            writer.writerow([r.name, r.seed, r.status, int(r.metrics["epoch"]) if r.metrics else "",
                             *(r.metrics.get(k, "") for k in keys), r.train_time_s, r.folder])
    return Path(path)


def plot_summary(sweep: Sweep, rows: list[dict[str, Any]], results: list[RunResult], path: str | Path,
                 title: str = "") -> Path:
    """Bar plot of mean AP per run (error bars: sample std over seeds) with each seed's AP as a dot; runs grouped
    (and coloured) as in the tables. A run in two groups appears in both."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    by_name = {r["name"]: r for r in rows}
    groups = sweep.groups or {"": [r.name for r in sweep.runs]}
    labels, xs, colours, spans, x = [], [], [], [], 0.0
    cmap = plt.get_cmap("tab10")
    for gi, members in enumerate(groups.values()):
        spans.append((x, x + len(members) - 1))
        for name in members:
            labels.append(name)
            xs.append(x)
            colours.append(cmap(gi % 10))
            x += 1.0
        x += 0.6  # gap between groups
    fig, ax = plt.subplots(figsize=(max(5.0, 0.75 * len(labels) + 1.5), 3.8))
    means = [by_name[n]["AP"] for n in labels]
    stds = [by_name[n]["AP_std"] for n in labels]
    ax.bar(xs, means, yerr=stds, color=colours, alpha=0.75, capsize=4, width=0.7)
    for xi, name in zip(xs, labels):
        seeds = [r.metrics["AP"] for r in results if r.name == name and r.status == "done"]
        ax.plot([xi] * len(seeds), seeds, "k.", ms=4)
    top = min(1.0, max((m + s for m, s in zip(means, stds) if not math.isnan(m)), default=0.8))
    top = max(top, 0.05)  # all-zero AP (smoke runs) still gets an axis
    ax.set_ylim(0.0, top * 1.2)  # bars from zero: a cut axis would magnify the gaps
    if sweep.groups:
        for (a, b), group in zip(spans, groups):
            ax.text((a + b) / 2, top * 1.1, group, ha="center", fontsize=8)
    ax.set_xticks(xs, labels, rotation=30, ha="right")
    ax.set_ylabel("AP (mean ± std over seeds)")
    ax.set_title(title or (sweep.description.splitlines()[0] if sweep.description else ""), fontsize=9)
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return Path(path)
