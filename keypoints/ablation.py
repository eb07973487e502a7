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

The file is checked against a schema before any work (:func:`load_sweep`): valid YAML without a key given twice
(PyYAML would keep the last silently), run names that are plain folder names (letters, digits, ``. _ + -``; no
``..`` or separators, unique also ignoring case), seeds a non-empty list of unique integers >= 0, epochs a positive
integer, opts lists of ``key=value`` strings, groups a mapping of names to lists of run names, baseline a run name,
description a string, and config files that exist.

Each run x seed trains in its own folder ``OUT/runs/<name>/seed<N>`` (a subprocess of ``tools/train.py``, its
console output in ``OUT/logs/<name>_seed<N>.log``). A run is finished when its ``metrics.csv`` has a row for the
final epoch with AP (or its ``last.pth`` says the final epoch is done); an unfinished one is resumed with
``--resume``; a folder without a checkpoint (a run that died in its first epoch) is moved aside to
``<folder>.failed<k>`` and the run starts again. A folder trained with a different config is an error, never mixed
into the table. The summary takes each run's final-epoch metrics from its ``metrics.csv``.

Processes: one runner per sweep folder (a lock on ``OUT``), and one trainer per run folder (the trainer's own lock,
:class:`keypoints.training.RunLock`: a folder still held by a trainer is reported as in use, never trained twice).
The runner stops its training child when it ends in any way: on Ctrl-C, SIGTERM or an error it terminates the child
(SIGTERM, SIGKILL after a grace period) and waits for it; on Linux the child also gets SIGTERM from the kernel when
the runner dies without a chance to clean up (``kill -9``: ``PR_SET_PDEATHSIG``).
"""
from __future__ import annotations

import contextlib
import csv
import logging
import math
import os
import re
import signal
import statistics
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

import yaml

from .config import Config, config_from_dict, config_to_dict, load_config
from .outputs import FolderLock, atomic_path, child_path

logger = logging.getLogger(__name__)

SWEEP_KEYS = ("description", "seeds", "epochs", "opts", "baseline", "groups", "runs")
METRICS = ("AP", "AP50", "AR")  # the columns of the summary table (all in [0, 1])
TRAIN_MODULE = "keypoints.cli.train"  # each run: python -m keypoints.cli.train (tools/train.py)
PACKAGE_PARENT = str(Path(__file__).resolve().parents[1])  # children import this copy of the package
RUN_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+-]*")  # a folder name, a table cell and part of a log name
OPT = re.compile(r"[A-Za-z_][A-Za-z0-9_.]*=")  # key=value, as --opts takes it
STOP_GRACE_S = 10.0  # seconds a terminated training child gets before it is killed
LOCK_NAME = ".ablate.lock"


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
    ap_by_epoch: dict[int, float] = field(default_factory=dict)  # AP of every evaluated epoch


class _UniqueKeyLoader(yaml.SafeLoader):
    """PyYAML's safe loader, refusing a key given twice in one mapping (PyYAML keeps the last one silently: a
    duplicate run name would drop a run)."""


def _unique_mapping(loader: _UniqueKeyLoader, node: yaml.MappingNode, deep: bool = False) -> dict:
    seen: dict[Any, int] = {}
    for key_node, _ in node.value:
        if key_node.tag == "tag:yaml.org,2002:merge":
            continue
        key = loader.construct_object(key_node, deep=deep)
        try:
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"key {key!r} is given twice (first on line {seen[key]})",
                    key_node.start_mark)
            seen[key] = key_node.start_mark.line + 1
        except TypeError:  # an unhashable key: construct_mapping says so
            continue
    return loader.construct_mapping(node, deep=deep)


_UniqueKeyLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _unique_mapping)


def read_yaml(path: Path, what: str) -> Any:
    """Parsed YAML of ``path`` (duplicate keys refused); syntax errors as one line with the line number."""
    try:
        return yaml.load(path.read_text(), Loader=_UniqueKeyLoader)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark is not None else ""
        problem = getattr(e, "problem", None) or str(e).splitlines()[0]
        raise ValueError(f"{what} {path} is not valid YAML: {problem}{where}") from None
    except UnicodeDecodeError:
        raise ValueError(f"{what} {path} is not a text file (UTF-8)") from None


def check_run_name(name: object, where: str) -> str:
    """A run name: a string that is one plain folder name (:func:`keypoints.outputs.child_path`) of at most 100
    letters, digits and ``. _ + -`` (it names ``runs/<name>``, a log file and a table row)."""
    if not isinstance(name, str):
        raise ValueError(f"{where}: run name {name!r} is a {type(name).__name__}; quote it to make it a name")
    child_path("runs", name, f"{where}: run name")
    if len(name) > 100:
        raise ValueError(f"{where}: run name {name[:20]!r}... is {len(name)} characters long; at most 100")
    if not RUN_NAME.fullmatch(name):
        raise ValueError(f"{where}: run name {name!r} may hold only letters, digits and . _ + - (it becomes a folder "
                         f"name), starting with a letter or digit")
    return name


def check_seeds(seeds: object, where: str) -> tuple[int, ...]:
    """A non-empty list of unique integers >= 0 (a repeated seed would train once and count twice)."""
    if not isinstance(seeds, (list, tuple)) or not seeds:
        raise ValueError(f"{where}: seeds must be a non-empty list of integers >= 0, e.g. [0, 1, 2], got {seeds!r}")
    for seed in seeds:
        if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
            raise ValueError(f"{where}: seed {seed!r} is not an integer >= 0")
    repeated = sorted({s for s in seeds if list(seeds).count(s) > 1})
    if repeated:
        raise ValueError(f"{where}: seed(s) {', '.join(map(str, repeated))} listed twice; each seed trains once, so "
                         f"give each seed once")
    return tuple(seeds)


def check_opts(opts: object, where: str) -> tuple[str, ...]:
    """A list of ``key=value`` strings (None: none); ``train.seed`` is refused (the sweep's seeds set it, and would
    win silently)."""
    if opts is None:
        return ()
    if not isinstance(opts, (list, tuple)):
        raise ValueError(f"{where}: opts must be a list of key=value strings, got {opts!r}")
    for opt in opts:
        if not isinstance(opt, str) or not OPT.match(opt):
            raise ValueError(f"{where}: override {opt!r} is not key=value (e.g. train.lr=5e-4)")
        if opt.split("=", 1)[0].strip() == "train.seed":
            raise ValueError(f"{where}: override {opt!r} would be replaced by each seed of the sweep; list the seeds "
                             f"in 'seeds' (or --seeds) instead")
    return tuple(opts)


def check_epochs(epochs: object, where: str) -> int | None:
    if epochs is not None and (isinstance(epochs, bool) or not isinstance(epochs, int) or epochs < 1):
        raise ValueError(f"{where}: epochs must be a positive integer, got {epochs!r}")
    return epochs


def load_sweep(path: str | Path) -> Sweep:
    """Read a sweep file and check it against the schema of the module docstring before any work; config paths are
    resolved relative to it. Every problem is a one-line ``ValueError`` / ``FileNotFoundError``."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"sweep file not found: {path}")
    data = read_yaml(path, "sweep")
    where = f"sweep {path}"
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ValueError(f"{where} must be a mapping with keys {', '.join(SWEEP_KEYS)}")
    unknown = [k for k in data if k not in SWEEP_KEYS]
    if unknown:
        raise ValueError(f"unknown key '{unknown[0]}' in sweep '{path}'; valid keys: {', '.join(SWEEP_KEYS)}")
    if not isinstance(data.get("runs"), dict) or not data["runs"]:
        raise ValueError(f"sweep '{path}' needs 'runs': a mapping of name -> {{config: FILE, opts: [...]}}")
    runs, folded = [], {}
    for name, spec in data["runs"].items():
        check_run_name(name, where)
        if name.lower() in folded:  # one folder on case-insensitive file systems (macOS, Windows)
            raise ValueError(f"{where}: run names '{folded[name.lower()]}' and '{name}' differ only in case; they "
                             f"would share a folder on some file systems: rename one")
        folded[name.lower()] = name
        spec = {"config": spec} if isinstance(spec, str) else spec
        if not isinstance(spec, dict) or not isinstance(spec.get("config"), str) or set(spec) - {"config", "opts"}:
            raise ValueError(f"run '{name}' in sweep '{path}' must be {{config: FILE, opts: [key=value, ...]}}")
        config = (path.parent / spec["config"]).resolve()
        if not config.is_file():
            raise FileNotFoundError(f"config of run '{name}' not found: {config} (sweep '{path}')")
        runs.append(RunSpec(name, config, check_opts(spec.get("opts"), f"{where}, run '{name}'")))
    names = [r.name for r in runs]
    raw_groups = data.get("groups")
    if raw_groups is not None and not isinstance(raw_groups, dict):
        raise ValueError(f"{where}: groups must be a mapping of group name -> list of run names, e.g. "
                         f"{{activation: [{', '.join(names[:2])}]}}, got {raw_groups!r}")
    groups = {}
    for g, members in (raw_groups or {}).items():
        if not isinstance(members, list) or not members or not all(isinstance(m, str) for m in members):
            raise ValueError(f"{where}: group '{g}' must be a non-empty list of run names, got {members!r}")
        for m in members:
            if m not in names:
                raise ValueError(f"group '{g}' in sweep '{path}' names unknown run '{m}'; runs: {', '.join(names)}")
        if len(set(members)) != len(members):
            raise ValueError(f"{where}: group '{g}' lists a run twice: {members}")
        groups[str(g)] = list(members)
    baseline = data.get("baseline")
    if baseline is not None and (not isinstance(baseline, str) or baseline not in names):
        raise ValueError(f"baseline '{baseline}' of sweep '{path}' is not a run; runs: {', '.join(names)}")
    description = data.get("description")
    if description is not None and not isinstance(description, str):
        raise ValueError(f"{where}: description must be a string, got {description!r}")
    epochs = check_epochs(data.get("epochs"), where)
    if epochs is not None:
        for opts, owner in [(data.get("opts") or [], "opts"), *((r.opts, f"run '{r.name}'") for r in runs)]:
            if any(o.split("=", 1)[0].strip() == "train.epochs" for o in opts):
                raise ValueError(f"{where}: {owner} sets train.epochs, which 'epochs: {epochs}' replaces for every "
                                 f"run; give the budget once")
    return Sweep(runs=runs, seeds=check_seeds(data.get("seeds", [0]), where),
                 epochs=epochs, opts=check_opts(data.get("opts"), where),
                 baseline=baseline, groups=groups, description=(description or "").strip())


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
    return child_path(Path(output_dir) / "runs", name, "run name") / f"seed{seed}"


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


class Terminated(Exception):
    """The runner got SIGTERM (or SIGHUP); its training child has been stopped. ``signum``: the signal."""

    def __init__(self, signum: int) -> None:
        super().__init__(f"terminated by {signal.Signals(signum).name}")
        self.signum = signum


@contextlib.contextmanager
def _signals_raise() -> Iterator[None]:
    """SIGTERM and SIGHUP raise :class:`Terminated` while the sweep runs, so the ``finally`` that stops the training
    child runs (their default action ends the process at once). Ctrl-C raises KeyboardInterrupt already."""
    def handler(signum: int, frame: Any) -> None:
        raise Terminated(signum)

    previous = {}
    try:
        for sig in (signal.SIGTERM, getattr(signal, "SIGHUP", None)):
            if sig is not None:
                previous[sig] = signal.signal(sig, handler)
    except ValueError:  # not the main thread: signals cannot be caught here
        pass
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


def _die_with_parent() -> Callable[[], None] | None:
    """``preexec_fn`` of the training child on Linux: the kernel sends it SIGTERM when the runner dies, however it
    dies (``kill -9`` included: no ``finally`` runs then). None elsewhere."""
    if not sys.platform.startswith("linux"):
        return None
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)  # loaded here: the child only makes the call
    parent, pr_set_pdeathsig = os.getpid(), 1

    def preexec() -> None:
        libc.prctl(pr_set_pdeathsig, int(signal.SIGTERM))
        if os.getppid() != parent:  # the runner died before the call took effect
            os._exit(1)

    return preexec


def stop_process(proc: subprocess.Popen, grace: float = STOP_GRACE_S) -> int:
    """Stop ``proc``: SIGTERM, SIGKILL after ``grace`` seconds, and wait for it (no zombie, no orphan); its exit
    status."""
    if proc.poll() is None:
        proc.terminate()
        try:
            return proc.wait(grace)
        except subprocess.TimeoutExpired:
            proc.kill()
    return proc.wait()


def run_child(cmd: list[str], log: Any, env: dict[str, str], started: Callable[[int], None] = lambda pid: None,
              grace: float = STOP_GRACE_S) -> int:
    """Run ``cmd`` with its output in the open file ``log``; its exit status. However this returns (an exception,
    Ctrl-C, :class:`Terminated`), the child is not left running."""
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env, preexec_fn=_die_with_parent())
    try:
        started(proc.pid)
        return proc.wait()
    finally:
        if proc.poll() is None:
            logger.warning("stopping the training process %d", proc.pid)
            stop_process(proc, grace)


class SweepLock(FolderLock):
    """One runner per sweep folder (:class:`keypoints.outputs.FolderLock`, released by the operating system when the
    runner ends, however it ends); ``OUT/.ablate.lock`` names the holder for the error of a second runner."""

    def __init__(self, folder: Path) -> None:
        super().__init__(folder, LOCK_NAME, lambda folder, holder: (
            f"sweep folder {folder} is in use by another tools/ablate.py ({holder}); wait for it to end or stop it, "
            f"then run the sweep again"))


def check_not_in_use(folder: Path) -> None:
    """A one-line ValueError when a training process holds ``folder`` (its :class:`keypoints.training.RunLock`): a
    trainer of an earlier runner that is still running. Never waits, never retries."""
    from .training import RunLock

    if not folder.is_dir():
        return
    try:
        RunLock(folder).acquire().release()
    except ValueError:
        holder = (folder / ".train.lock").read_text().strip() if (folder / ".train.lock").is_file() else "unknown"
        raise ValueError(f"run folder {folder} is in use by another training process ({holder}), e.g. one left "
                         f"running by an earlier tools/ablate.py; stop it or wait for it, then run the sweep "
                         f"again") from None


def _last_error(log_path: Path) -> str:
    """The last ``error: ...`` line of a run's log (the trainer's one-line user error), or ''."""
    with contextlib.suppress(OSError):
        with log_path.open("rb") as f:
            f.seek(max(0, log_path.stat().st_size - 8192))
            lines = f.read().decode("utf-8", "replace").splitlines()
        return next((line.strip() for line in reversed(lines) if line.startswith("error:")), "")
    return ""


@dataclass
class PlannedRun:
    run: RunSpec
    seed: int
    overrides: list[str]
    cfg: Config
    folder: Path
    state: str  # new | stale | partial | done (run_state)


def plan_sweep(sweep: Sweep, output_dir: str | Path, data_root: str | None = None,
               extra_opts: Sequence[str] = ()) -> list[PlannedRun]:
    """Every run x seed with its resolved config and folder state, seed-major, before any training: a bad override,
    a config that does not load or a folder of another config fails here, not after the first runs trained."""
    plan = []
    for seed in sweep.seeds:  # seed-major: an interrupted sweep has every config at the same number of seeds
        for run in sweep.runs:
            overrides = run_overrides(sweep, run, seed, extra_opts)
            cfg = load_config(run.config, overrides + ([f"data.root={data_root}"] if data_root else []))
            folder = run_folder(output_dir, run.name, seed)
            state = run_state(folder, cfg)
            if cfg.train.init_from and state in ("new", "stale") and not Path(cfg.train.init_from).is_file():
                raise FileNotFoundError(f"train.init_from of run '{run.name}' not found: {cfg.train.init_from} "
                                        f"(relative paths are taken from the current folder)")
            plan.append(PlannedRun(run, seed, overrides, cfg, folder, state))
    return plan


def run_sweep(sweep: Sweep, output_dir: str | Path, device: str = "auto", data_root: str | None = None,
              extra_opts: Sequence[str] = (), threads: int | None = None,
              dry_run: bool = False) -> dict[tuple[str, int], str]:
    """Train every run x seed that is not finished; returns ``{(name, seed): outcome}``.

    Outcomes: ``skipped`` (already finished), ``trained``, ``resumed``, ``failed`` (non-zero exit; the sweep goes on,
    see ``OUT/logs``) or, with ``dry_run``, ``would train`` / ``would resume`` (commands are logged, nothing runs).
    ``threads`` sets ``OMP_NUM_THREADS`` of the runs (CPU training on a busy machine: 1 thread avoids OpenMP threads
    waiting for each other, measured 16x faster per step than 2 threads on 2 shared cores). A run folder held by
    another training process, or the sweep folder held by another runner, is a one-line ``ValueError`` before any
    training; see the module docstring for how the training child is stopped.
    """
    output_dir = Path(output_dir)
    plan = plan_sweep(sweep, output_dir, data_root, extra_opts)
    if dry_run:
        return _run_plan(plan, output_dir, device, data_root, {}, dry_run=True)
    # train.py imports the package of its own checkout, as the caller does (not another installed copy)
    paths = [PACKAGE_PARENT, os.environ.get("PYTHONPATH", "")]
    env = {**os.environ, "NO_ALBUMENTATIONS_UPDATE": "1", "PYTHONPATH": os.pathsep.join(p for p in paths if p)}
    if threads is not None:
        env.update(OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads))
    with SweepLock(output_dir), _signals_raise():
        for item in plan:
            if item.state != "done":
                check_not_in_use(item.folder)
        return _run_plan(plan, output_dir, device, data_root, env)


def _run_plan(plan: list[PlannedRun], output_dir: Path, device: str, data_root: str | None, env: dict[str, str],
              dry_run: bool = False) -> dict[tuple[str, int], str]:
    outcomes: dict[tuple[str, int], str] = {}
    for index, item in enumerate(plan, 1):
        run, seed, folder, state, key = item.run, item.seed, item.folder, item.state, (item.run.name, item.seed)
        if state == "done":
            outcomes[key] = "skipped"
            logger.info("[%d/%d] %s seed %d: finished, skipped", index, len(plan), run.name, seed)
            continue
        cmd = train_command(run.config, folder, item.overrides, device, data_root, state == "partial")
        if dry_run:
            outcomes[key] = "would resume" if state == "partial" else "would train"
            logger.info("[%d/%d] %s", index, len(plan), " ".join(cmd))
            continue
        if state == "stale":
            check_not_in_use(folder)
            logger.warning("%s has no checkpoint (a run that died early): moved to %s", folder, _move_aside(folder))
        log_path = output_dir / "logs" / f"{run.name}_seed{seed}.log"
        log_path.parent.mkdir(parents=True, exist_ok=True)
        with log_path.open("a") as log:
            log.write("$ " + " ".join(cmd) + "\n")
            log.flush()
            rc = run_child(cmd, log, env, started=lambda pid: logger.info(
                "[%d/%d] %s seed %d: %s (pid %d, log %s)", index, len(plan), run.name, seed,
                "resuming" if state == "partial" else "training", pid, log_path))
        outcome = "failed" if rc != 0 else "resumed" if state == "partial" else "trained"
        outcomes[key] = outcome
        if rc != 0:
            error = _last_error(log_path)
            if "in use by another training process" in error:  # a trainer that started after the check above
                raise ValueError(f"{run.name} seed {seed}: {error[len('error: '):]}")
            logger.error("%s seed %d failed (exit %d%s); see %s", run.name, seed, rc,
                         f": {error}" if error else "", log_path)
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
            history = {int(r["epoch"]): r["AP"] for r in rows if "AP" in r and int(r["epoch"]) <= epochs}
            results.append(RunResult(run.name, seed, folder, "done", final, time_s, history))
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


def write_results_csv(results: list[RunResult], path: str | Path,
                      costs: dict[str, tuple[int, int]] | None = None) -> Path:
    """One row per run x seed (atomic): name, seed, status, final-epoch metrics, training seconds, the AP of every
    evaluated epoch (``epoch:AP`` pairs), params and MACs (``costs``), the run folder, and the provenance columns of
    :func:`keypoints.results.provenance` (the commit of the code that ran: ``KEYPOINTS_COMMIT`` when set). The file
    is the raw data of the summary tables: :func:`read_results_csv` reads it back."""
    from .results import provenance, write_rows

    stamp = provenance()
    keys = sorted({k for r in results for k in r.metrics if k != "epoch"})
    rows = []
    for r in results:
        params, macs = (costs or {}).get(r.name, ("", ""))
        rows.append({"name": r.name, "seed": r.seed, "status": r.status,
                     "epoch": int(r.metrics["epoch"]) if r.metrics else "",
                     **{k: r.metrics.get(k, "") for k in keys}, "train_time_s": r.train_time_s,
                     "AP_by_epoch": " ".join(f"{e}:{ap:.6g}" for e, ap in sorted(r.ap_by_epoch.items())),
                     "params": params, "macs": macs, "folder": r.folder, **stamp})
    return write_rows(path, rows)


def read_results_csv(path: str | Path) -> tuple[list[RunResult], dict[str, tuple[int, int]]]:
    """Inverse of :func:`write_results_csv`: the runs (metrics as floats) and each run's (params, MACs)."""
    from .results import PROVENANCE, read_rows

    rows = read_rows(path)
    if not rows:
        raise FileNotFoundError(f"no ablation results in {path}")
    fixed = {"name", "seed", "status", "epoch", "train_time_s", "AP_by_epoch", "params", "macs", "folder",
             *PROVENANCE}
    results, costs = [], {}
    for row in rows:
        metrics = {k: float(v) for k, v in row.items() if k not in fixed and v not in ("", None)}
        if row["epoch"]:
            metrics["epoch"] = float(row["epoch"])
        history = {int(e): float(ap) for e, ap in (pair.split(":") for pair in row.get("AP_by_epoch", "").split())}
        results.append(RunResult(row["name"], int(row["seed"]), Path(row["folder"]), row["status"], metrics,
                                 float(row["train_time_s"]) if row["train_time_s"] else math.nan, history))
        if row.get("params"):
            costs[row["name"]] = (int(float(row["params"])), int(float(row["macs"])))
    return results, costs


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
    with atomic_path(path) as tmp:  # same suffix: matplotlib picks the format by it
        fig.savefig(tmp, dpi=100)
    plt.close(fig)
    return Path(path)
