"""The ablation summary's statistics on hand-computed per-run metrics: means, sample standard deviations (ddof 1,
not the population's), the AP difference to the baseline (run minus baseline) and its standard error
sqrt(s1^2/n1 + s2^2/n2), the markdown cells, and missing runs left out."""
from __future__ import annotations

import math
from pathlib import Path

import pytest

from keypoints.ablation import RunResult, RunSpec, Sweep, format_markdown, summarise

# relu: AP 0.30, 0.32, 0.34 -> mean 0.32, sample std sqrt((0.02^2 + 0 + 0.02^2) / 2) = 0.02 (population: 0.0163)
# dyrelu_c: AP 0.35, 0.39 -> mean 0.37, sample std sqrt((0.02^2 + 0.02^2) / 1) = 0.028284 (population: 0.02)
# dAP = 0.37 - 0.32 = +0.05; s.e. = sqrt(0.028284^2 / 2 + 0.02^2 / 3) = sqrt(0.0004 + 0.00013333) = 0.023094
RELU, DYRELU = (0.30, 0.32, 0.34), (0.35, 0.39)


def _results() -> list[RunResult]:
    out = [RunResult("relu", s, Path(f"r{s}"), "done", {"AP": ap, "AP50": 0.7, "AR": ap + 0.04, "epoch": 8},
                     60.0 * (s + 1)) for s, ap in enumerate(RELU)]
    out += [RunResult("dyrelu_c", s, Path(f"d{s}"), "done", {"AP": ap, "AP50": 0.8, "AR": ap + 0.04, "epoch": 8},
                      120.0) for s, ap in enumerate(DYRELU)]
    out.append(RunResult("dyrelu_c", 2, Path("d2"), "missing"))  # not finished: left out, not counted as 0
    return out


@pytest.fixture
def sweep() -> Sweep:
    return Sweep(runs=[RunSpec("relu", Path("relu.yaml")), RunSpec("dyrelu_c", Path("c.yaml"))], seeds=(0, 1, 2),
                 baseline="relu")


def test_means_spreads_and_difference(sweep):
    rows = {r["name"]: r for r in summarise(sweep, _results(), {"relu": (100, 10), "dyrelu_c": (500, 11)})}
    relu, dy = rows["relu"], rows["dyrelu_c"]
    assert relu["n"] == 3 and dy["n"] == 2 and dy["seeds"] == [0, 1]
    assert relu["AP"] == pytest.approx(0.32) and dy["AP"] == pytest.approx(0.37)
    assert relu["AP_std"] == pytest.approx(0.02) and dy["AP_std"] == pytest.approx(math.sqrt(0.0008))
    assert dy["dAP"] == pytest.approx(+0.05)  # the run minus the baseline: positive when the run is better
    assert dy["dAP_se"] == pytest.approx(math.sqrt(0.0008 / 2 + 0.0004 / 3))
    assert relu["dAP"] == 0.0 and relu["dAP_se"] == pytest.approx(math.sqrt(0.0004 / 3 * 2))
    assert relu["train_min"] == pytest.approx(2.0)  # (1 + 2 + 3) minutes / 3


def test_markdown_cells(sweep):
    rows = summarise(sweep, _results(), {"relu": (100_000, 10_000_000), "dyrelu_c": (500_000, 11_000_000)})
    table = format_markdown(sweep, rows)
    assert "| relu | 3 | 0.320 ± 0.020 |" in table
    assert "| dyrelu_c | 2 | 0.370 ± 0.028 |" in table and "| +0.050 ± 0.023 |" in table
    single = Sweep(runs=sweep.runs, seeds=(0,), baseline="relu")
    one_seed = [r for r in _results() if r.seed == 0]
    assert "| relu | 1 | 0.300 |" in format_markdown(single, summarise(single, one_seed,
                                                                       {"relu": (1, 1), "dyrelu_c": (1, 1)}))
