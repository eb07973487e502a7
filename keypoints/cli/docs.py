"""Rebuild the tables and figures of docs/ from the raw results in results/ (``make docs``).

    python tools/docs.py                 # rewrite every generated table in docs/*.md from results/*.csv
    python tools/docs.py --check         # exit 1 (one line per stale table) when docs/ differs from results/
    python tools/docs.py --figures       # also redraw the figures (the ablation bar plot from its CSV; the DY-ReLU
                                         # inspection from the kept seed-0 model on generated images)

A generated table sits between ``<!-- results:NAME -->`` and ``<!-- /results:NAME -->`` in a docs page; NAME is one
of :data:`TABLES`, each a function of CSV files under results/ (which name their commit, date, machine and load).
Nothing here measures anything: the measuring commands (tools/ablate.py, tools/benchmark.py) write the CSVs, and
each docs page names the command that wrote its rows.
"""
from __future__ import annotations

import argparse
import math
import re
import statistics
import sys
import tempfile
from pathlib import Path
from typing import Callable

from keypoints.outputs import write_text
from keypoints.results import read_rows
from keypoints.utils.cli import run_cli

ROOT = Path(__file__).resolve().parents[2]
RESULTS, DOCS = ROOT / "results", ROOT / "docs"
ABLATION_SWEEP = ROOT / "configs" / "ablations" / "sweeps" / "synthetic_paper.yaml"
ABLATION_CSV = RESULTS / "ablation" / "synthetic_paper.csv"
FINETUNE_SWEEP = ROOT / "configs" / "ablations" / "sweeps" / "finetune_birds.yaml"
FINETUNE_CSV = RESULTS / "finetune" / "finetune_birds.csv"
DYRELU_MODEL = RESULTS / "ablation" / "dyrelu_c_seed0.pth"
SLOPE_GAP_CSV = RESULTS / "ablation" / "dyrelu_c_seed0_slope_gap.csv"
VIDEO_CSV = RESULTS / "video" / "video_benchmark.csv"
INFERENCE_CSV = RESULTS / "benchmarks" / "inference.csv"
MARKER = re.compile(r"(<!-- results:(?P<name>[\w-]+) -->\n)(?P<body>.*?)(<!-- /results:(?P=name) -->)", re.S)


def _mean_sd(values: list[float]) -> str:
    if not values:
        return "-"
    if len(values) == 1:
        return f"{values[0]:.3f}"
    return f"{statistics.fmean(values):.3f} ± {statistics.stdev(values):.3f}"


def _provenance(rows: list[dict]) -> str:
    commits = sorted({r.get("commit", "") for r in rows} - {""})
    dates = sorted(r.get("date", "")[:10] for r in rows if r.get("date"))
    machines = sorted({r.get("machine", "") for r in rows} - {""})
    span = dates[0] if dates and dates[0] == dates[-1] else f"{dates[0]} to {dates[-1]}" if dates else "?"
    loads = sorted({r.get("load_average", "") for r in rows} - {""})
    load = f"; load average (1/5/15 min) {', '.join(loads)}" if len(loads) <= 2 else ""
    return f"Rows: {len(rows)}; commit {', '.join(commits) or '?'}; {span}; {'; '.join(machines) or '?'}{load}."


def ablation_table() -> str:
    """The synthetic ablation's tables (mean ± sample std over seeds, difference to the baseline ± its s.e.)."""
    from keypoints.ablation import format_markdown, load_sweep, read_results_csv, summarise

    sweep = load_sweep(ABLATION_SWEEP)
    results, costs = read_results_csv(ABLATION_CSV)
    sweep.seeds = tuple(sorted({r.seed for r in results}))
    rows = summarise(sweep, results, costs)
    per_seed = []
    for run in sweep.runs:
        aps = [f"{r.metrics['AP']:.3f}" for r in sorted(results, key=lambda r: r.seed)
               if r.name == run.name and r.status == "done"]
        per_seed.append(f"`{run.name}` {' '.join(aps)}")
    return (format_markdown(sweep, rows) + "\nAP per seed (" + ", ".join(str(s) for s in sweep.seeds) + "): "
            + "; ".join(per_seed) + ".\n\n" + _provenance(read_rows(ABLATION_CSV)) + "\n")


def finetune_table() -> str:
    """Fine-tuning vs scratch: AP after each epoch, mean ± sample std over seeds."""
    from keypoints.ablation import load_sweep, read_results_csv

    sweep = load_sweep(FINETUNE_SWEEP)
    results, costs = read_results_csv(FINETUNE_CSV)
    epochs = sorted({e for r in results for e in r.ap_by_epoch})
    lines = ["| run | seeds | " + " | ".join(f"AP after epoch {e}" for e in epochs) + " | train min/run |",
             "|---|---:|" + "---:|" * len(epochs) + "---:|"]
    for run in sweep.runs:
        done = [r for r in results if r.name == run.name and r.status == "done"]
        cells = [_mean_sd([r.ap_by_epoch[e] for r in done if e in r.ap_by_epoch]) for e in epochs]
        minutes = statistics.fmean(r.train_time_s / 60 for r in done) if done else math.nan
        lines.append(f"| {run.name} | {len(done)} | " + " | ".join(cells) + f" | {minutes:.1f} |")
    return "\n".join(lines) + "\n\n" + _provenance(read_rows(FINETUNE_CSV)) + "\n"


def video_table() -> str:
    """Smoothing off vs the default One-Euro setting: the newest measurement of seed 0's clip."""
    rows = [r for r in read_rows(VIDEO_CSV) if r.get("seed") == "0"]
    if not rows:
        raise FileNotFoundError(f"no seed-0 rows in {VIDEO_CSV}")
    newest = max(r["date"] for r in rows)
    rows = [r for r in rows if r["date"] == newest]
    base = next(r for r in rows if r["smoothing"] == "none")
    lines = ["| smoothing | jitter px | error px | lag frames | id switches | ms / person / frame |",
             "|---|---:|---:|---:|---:|---:|"]
    for r in rows:
        name = "none" if r["smoothing"] == "none" else f"one-euro {float(r['min_cutoff']):g} Hz, beta " \
                                                       f"{float(r['beta']):g}"
        jit, err = float(r["jitter_px"]), float(r["error_px"])
        lines.append(f"| {name} | {jit:.3f} ({jit / float(base['jitter_px']):.2f}x) | {err:.3f} "
                     f"({err / float(base['error_px']):.2f}x) | {float(r['lag_frames']):.2f} | {r['id_switches']} | "
                     f"{float(r['ms_per_person']):.3f} |")
    return "\n".join(lines) + "\n\n" + _provenance(rows) + "\n"


def inference_table(path: Path = INFERENCE_CSV) -> str:
    """DY-ReLU models vs their ReLU twins per runtime: the newest run of tools/benchmark.py --sections inference."""
    rows = read_rows(path)
    if not rows:
        raise FileNotFoundError(f"no rows in {path}")
    newest = max(r["date"] for r in rows)
    rows = [r for r in rows if r["date"] == newest]
    batches = sorted({int(r["batch"]) for r in rows})
    lines = ["| runtime | model | " + " | ".join(f"batch {b}: ms/crop (x ReLU twin)" for b in batches) + " |",
             "|---|---|" + "---:|" * len(batches)]
    for key in dict.fromkeys((r["runtime"], r["model"]) for r in rows):
        cells = []
        for b in batches:
            r = next((r for r in rows if (r["runtime"], r["model"]) == key and int(r["batch"]) == b), None)
            ok = r is not None and r.get("ms_per_crop") and r.get("twin_ms_per_crop")
            cells.append(f"{float(r['ms_per_crop']):.2f} vs {float(r['twin_ms_per_crop']):.2f} "
                         f"({float(r['ms_per_crop']) / float(r['twin_ms_per_crop']):.2f}x)" if ok else "-")
        lines.append(f"| {key[0]} | {key[1]} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n\n" + _provenance(rows) + "\n"


def demo_table() -> str:
    """Demo frames per second (read, predict, draw, write) per runtime and box mode: the newest benchmark run."""
    rows = read_rows(INFERENCE_CSV.with_name("demo.csv"))
    if not rows:
        raise FileNotFoundError(f"no rows in {INFERENCE_CSV.with_name('demo.csv')}")
    newest = max(r["date"] for r in rows)
    rows = [r for r in rows if r["date"] == newest]
    models = list(dict.fromkeys(r["model"] for r in rows))
    lines = ["| runtime | boxes | " + " | ".join(f"{m} FPS" for m in models) + " |",
             "|---|---|" + "---:|" * len(models)]
    for runtime, mode in dict.fromkeys((r["runtime"], r["mode"]) for r in rows):
        fps = {r["model"]: float(r["fps"]) for r in rows if (r["runtime"], r["mode"]) == (runtime, mode)}
        lines.append(f"| {runtime} | {mode} | " + " | ".join(f"{fps[m]:.1f}" if m in fps else "-" for m in models)
                     + " |")
    return "\n".join(lines) + "\n\n" + _provenance(rows) + "\n"


def slope_gap_table() -> str:
    """The slope gap |a1 - a2| of the kept DY-ReLU-C model per layer: mean and spread over the images."""
    rows = read_rows(SLOPE_GAP_CSV)
    if not rows:
        raise FileNotFoundError(f"no rows in {SLOPE_GAP_CSV} (python tools/docs.py --figures writes it)")
    keys = [k for k in rows[0] if k not in ("layer", "variant")]
    lines = ["| layer | " + " | ".join(k.replace("_", " ") for k in keys) + " |", "|---|" + "---:|" * len(keys)]
    for r in rows:
        cells = [r[k] if r[k].isdigit() else f"{float(r[k]):.3f}" if r[k] else "-" for k in keys]
        lines.append(f"| {r['layer']} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


TABLES: dict[str, Callable[[], str]] = {"ablation-synthetic": ablation_table, "finetune-birds": finetune_table,
                                        "video": video_table, "inference": inference_table,
                                        "slope-gap": slope_gap_table, "demo": demo_table,
                                        "inference-variants": lambda: inference_table(INFERENCE_CSV.with_name(
                                            "inference_variants.csv"))}


def rebuild(text: str, source: Path) -> str:
    """``text`` with every marked table regenerated; unknown names are an error."""
    def replace(match: re.Match) -> str:
        name = match["name"]
        if name not in TABLES:
            raise ValueError(f"{source}: unknown generated table {name!r}; known: {', '.join(TABLES)}")
        return match.group(1) + TABLES[name]() + match.group(4)
    return MARKER.sub(replace, text)


def draw_figures() -> list[Path]:
    """The ablation bar plot (from its CSV) and the DY-ReLU inspection of the kept seed-0 model."""
    from keypoints.ablation import load_sweep, plot_summary, read_results_csv, summarise
    from keypoints.cli import analyze_dyrelu
    from keypoints.data.synthetic import make_synthetic_dataset

    sweep = load_sweep(ABLATION_SWEEP)
    results, costs = read_results_csv(ABLATION_CSV)
    sweep.seeds = tuple(sorted({r.seed for r in results}))
    figures = [plot_summary(sweep, summarise(sweep, results, costs), results, DOCS / "ablation" /
                            "synthetic_ablation.png")]
    with tempfile.TemporaryDirectory() as tmp:
        make_synthetic_dataset(Path(tmp) / "data", train_images=1, val_images=16, seed=0)
        args = analyze_dyrelu.get_args_parser().parse_args([
            "--checkpoint", str(DYRELU_MODEL), "--images", str(Path(tmp) / "data" / "val2017"),
            "--output-dir", str(Path(tmp) / "out"), "--max-images", "16"])
        analyze_dyrelu.main(args)
        for name in ("scatter", "slope_gap"):
            target = DOCS / "ablation" / f"dyrelu_c_{name}.png"
            target.write_bytes((Path(tmp) / "out" / f"{name}.png").read_bytes())
            figures.append(target)
        SLOPE_GAP_CSV.write_bytes((Path(tmp) / "out" / "slope_gap.csv").read_bytes())  # the numbers behind it
        figures.append(SLOPE_GAP_CSV)
    return figures


def get_args_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--check", action="store_true", help="only compare: exit 1 when a generated table is stale")
    p.add_argument("--figures", action="store_true", help="also redraw the figures")
    return p


def main(args: argparse.Namespace) -> list[str]:
    stale = []
    for page in sorted(DOCS.glob("*.md")) + [ROOT / "README.md"]:
        text = page.read_text()
        new = rebuild(text, page)
        if new != text:
            stale.append(str(page.relative_to(ROOT)))
            if not args.check:
                write_text(page, new)
    if args.check:
        for page in stale:
            print(f"stale: {page} (run python tools/docs.py)", file=sys.stderr)
        if stale:
            sys.exit(1)
        print("docs up to date with results/")
        return stale
    print(f"rebuilt {', '.join(stale) or 'nothing (up to date)'}")
    if args.figures:
        print("drew " + ", ".join(str(p.relative_to(ROOT)) for p in draw_figures()))
    return stale


def cli() -> None:
    run_cli(main, get_args_parser())


if __name__ == "__main__":
    cli()
