"""docs/ is generated from results/: every marked table equals what tools/docs.py builds from the committed CSVs."""
from __future__ import annotations

import argparse
import csv
from pathlib import Path

import pytest

from conftest import ROOT, load_tool

docs = load_tool("docs")


def test_committed_docs_match_their_results(capsys: pytest.CaptureFixture) -> None:
    # The README and docs/ of this commit hold exactly the tables the committed CSVs give (make docs was run).
    pages = sorted((ROOT / "docs").glob("*.md")) + [ROOT / "README.md"]
    stale = [page.name for page in pages if docs.rebuild(page.read_text(), page) != page.read_text()]
    assert stale == [], f"stale generated tables in {stale}: run python tools/docs.py"
    assert docs.main(argparse.Namespace(check=True, figures=False)) == []  # the --check command line agrees
    assert "docs up to date" in capsys.readouterr().out


def test_every_table_is_used_and_every_marker_known() -> None:
    pages = [p.read_text() for p in sorted((ROOT / "docs").glob("*.md"))] + [(ROOT / "README.md").read_text()]
    used = {m["name"] for text in pages for m in docs.MARKER.finditer(text)}
    assert used == set(docs.TABLES)


def test_a_changed_result_makes_the_page_stale(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # One fine-tuning AP changed in a copy of the CSV: the rebuilt table shows the new mean, the old page is stale.
    rows = list(csv.DictReader((ROOT / "results/finetune/finetune_birds.csv").open()))
    page = (ROOT / "docs/finetuning.md").read_text()
    assert docs.rebuild(page, Path("finetuning.md")) == page
    changed = tmp_path / "finetune.csv"
    rows[0]["AP"] = "0.999"
    *earlier, last = rows[0]["AP_by_epoch"].split()
    rows[0]["AP_by_epoch"] = " ".join([*earlier, last.split(":")[0] + ":0.999"])
    with changed.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    monkeypatch.setattr(docs, "FINETUNE_CSV", changed)
    rebuilt = docs.rebuild(page, Path("finetuning.md"))
    assert rebuilt != page
    run = rows[0]["name"]
    same = [r for r in rows if r["name"] == run and r.get("status", "done") == "done"]
    mean = sum(float(r["AP_by_epoch"].split()[-1].split(":")[1]) for r in same) / len(same)
    assert f"{mean:.3f}" in rebuilt


def test_unknown_table_name_is_an_error() -> None:
    with pytest.raises(ValueError, match="unknown generated table 'nope'"):
        docs.rebuild("<!-- results:nope -->\nx\n<!-- /results:nope -->\n", Path("page.md"))
