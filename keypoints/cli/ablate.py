"""Run an ablation sweep (named configs x seeds, one budget) and summarise it as a table and a bar plot.

    # the DY-ReLU paper's keypoint ablation on the synthetic data, on the CPU (about an hour on 2 cores)
    python tools/make_synthetic.py --out data/synthetic
    python tools/ablate.py --sweep configs/ablations/sweeps/synthetic_paper.yaml \
        --output-dir outputs/ablation_synthetic --data-root data/synthetic --device cpu --threads 1
    # the same ablation on COCO with a GPU (210 epochs per run)
    python tools/ablate.py --sweep configs/ablations/sweeps/coco_paper.yaml --output-dir outputs/ablation_coco \
        --device cuda --data-root data/coco
    # fewer seeds or runs, another budget, extra overrides for every run; print the commands only
    python tools/ablate.py --sweep SWEEP --output-dir OUT --seeds 0 1 --runs relu dyrelu_c --epochs 4 \
        --opts data.batch_size=64 --dry-run
    # the table and plot from whatever has finished, without training
    python tools/ablate.py --sweep SWEEP --output-dir OUT --report-only

Calling it again skips finished runs and resumes interrupted ones (see keypoints/ablation.py). Writes to
OUT: runs/<name>/seed<N>/ (each a tools/train.py output folder), logs/, results.csv (one row per run x seed,
final-epoch metrics), summary.md (mean ± std over seeds of AP, AP50, AR; params; MACs; training minutes per
run) and summary.png (AP bars with std error bars and one dot per seed).

Everything is checked before any work: the sweep file against its schema (keypoints/ablation.py), --seeds, --runs,
--epochs, --threads and --opts, every run's config with its overrides, and the outputs (keypoints/outputs.py): OUT
never is or holds an input (the sweep file, a config, --data-root); summary.md, results.csv and summary.png are
rewritten on every call in a sweep folder (one holding runs/ or ablate.log), elsewhere an existing one only with
--overwrite, and never over a file of another kind. One runner per OUT; Ctrl-C or SIGTERM stops the training child
too (exit status 130 / 143), and on Linux so does a kill -9 of the runner.
"""
from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from keypoints.ablation import (Terminated, check_epochs, check_opts, check_run_name, check_seeds, collect_results,
                                format_markdown, load_sweep, model_cost, plan_sweep, plot_summary, run_overrides,
                                run_sweep, select_runs, summarise, write_results_csv)
from keypoints.outputs import check_output, check_output_dir, write_text
from keypoints.utils.cli import run_cli
from keypoints.utils.logging import setup_logging
from keypoints.utils.runtime import check_threads, check_unique

logger = logging.getLogger("keypoints.ablate")


def get_args_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description="Ablation sweep: configs x seeds under one budget, table and plot")
    p.add_argument("--sweep", required=True, help="sweep YAML (configs/ablations/sweeps/*.yaml)")
    p.add_argument("--output-dir", required=True, help="folder of the sweep (run folders, logs, summary)")
    p.add_argument("--data-root", help="dataset root for every run (sets data.root)")
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"], help="passed to tools/train.py")
    p.add_argument("--threads", type=int, help="CPU threads per run (OMP_NUM_THREADS; 1 on a busy machine)")
    p.add_argument("--seeds", type=int, nargs="+", help="seeds (replace the sweep's)")
    p.add_argument("--epochs", type=int, help="epochs of every run (replaces the sweep's budget)")
    p.add_argument("--runs", nargs="+", metavar="NAME", help="only these runs of the sweep")
    p.add_argument("--opts", nargs="*", default=[], metavar="KEY=VALUE", help="overrides for every run")
    p.add_argument("--dry-run", action="store_true", help="print the training commands, run nothing")
    p.add_argument("--report-only", action="store_true", help="no training: table and plot from finished runs")
    p.add_argument("--overwrite", action="store_true", help="replace summary.md, results.csv and summary.png in a "
                   "folder that is not a sweep folder (a sweep folder's are rewritten on every call)")
    return p


SUMMARY_FILES = (("summary.md", "text"), ("results.csv", "csv"), ("summary.png", "image"))


def check_args(args: argparse.Namespace) -> None:
    """The command line's own values, before the sweep file is read."""
    if args.seeds is not None:
        check_seeds(args.seeds, "--seeds")
    if args.runs:
        check_unique("--runs", args.runs)
        for name in args.runs:
            check_run_name(name, "--runs")
    check_epochs(args.epochs, "--epochs")
    check_threads(args.threads, "--threads")
    check_opts(args.opts, "--opts")
    if args.data_root is not None and not Path(args.data_root).is_dir():
        raise FileNotFoundError(f"dataset root not found: {args.data_root}")
    if args.dry_run and args.report_only:
        raise ValueError("--dry-run and --report-only exclude each other (one prints commands, one writes the summary)")


def check_outputs(args: argparse.Namespace, sweep) -> list[Path]:
    """OUT and the summary files against the output policy; returns the summary paths."""
    out = Path(args.output_dir)
    inputs = [args.sweep, *(r.config for r in sweep.runs), args.data_root]
    owned = (out / "runs").is_dir() or (out / "ablate.log").is_file()  # a sweep folder: its summary is rewritten
    check_output_dir(out, "--output-dir", inputs=inputs)
    return [check_output(out / name, flag="--output-dir", kind=kind, inputs=inputs, overwrite=args.overwrite or owned)
            for name, kind in SUMMARY_FILES]


def main(args: argparse.Namespace) -> list[dict]:
    check_args(args)
    out = Path(args.output_dir)
    sweep = load_sweep(args.sweep)
    if args.runs:
        sweep = select_runs(sweep, args.runs)
    if args.seeds:
        sweep.seeds = tuple(args.seeds)
    if args.epochs is not None:
        sweep.epochs = args.epochs
    if sweep.epochs is not None and any(o.split("=", 1)[0].strip() == "train.epochs" for o in args.opts):
        raise ValueError(f"--opts sets train.epochs, which the sweep's budget ({sweep.epochs} epochs) replaces for "
                         f"every run; pass --epochs instead")
    if not args.report_only:  # every run's config and folder, before anything is written
        plan_sweep(sweep, out, args.data_root, args.opts)
    summary_md, results_csv, summary_png = check_outputs(args, sweep)
    setup_logging(out, filename="ablate.log")
    logger.info("sweep %s: %d runs x %d seeds -> %s", args.sweep, len(sweep.runs), len(sweep.seeds), out)

    failed = []
    if not args.report_only:
        outcomes = run_sweep(sweep, out, device=args.device, data_root=args.data_root, extra_opts=args.opts,
                             threads=args.threads, dry_run=args.dry_run)
        counts = {o: list(outcomes.values()).count(o) for o in sorted(set(outcomes.values()))}
        logger.info("runs: %s", ", ".join(f"{n} {o}" for o, n in counts.items()))
        if args.dry_run:
            return []
        failed = [f"{name}/seed{seed}" for (name, seed), o in outcomes.items() if o == "failed"]

    results = collect_results(sweep, out, extra_opts=args.opts)
    costs = {r.name: model_cost(r.config, run_overrides(sweep, r, sweep.seeds[0], args.opts)) for r in sweep.runs}
    rows = summarise(sweep, results, costs)
    table = format_markdown(sweep, rows)
    write_text(summary_md, table)
    write_results_csv(results, results_csv, costs)
    plot_summary(sweep, rows, results, summary_png)
    print(table)
    missing = [f"{r.name}/seed{r.seed}" for r in results if r.status != "done"]
    if missing:
        logger.warning("%d of %d runs have no final metrics yet: %s", len(missing), len(results), ", ".join(missing))
    logger.info("wrote %s, %s and %s", out / "summary.md", out / "results.csv", out / "summary.png")
    if failed:
        logger.error("failed: %s (see %s)", ", ".join(failed), out / "logs")
        sys.exit(1)
    return rows


def cli() -> None:
    try:
        run_cli(main, get_args_parser())
    except Terminated as stop:  # SIGTERM / SIGHUP: the training child is stopped already
        print(f"{stop}; the training process was stopped", file=sys.stderr)
        sys.exit(128 + stop.signum)


if __name__ == "__main__":
    cli()
