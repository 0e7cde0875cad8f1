"""`board compare` verdicts for an interval that reaches 0 only at a bound (issue 17, item 6).

The case of the issue: B's task aggregate is 0 in every resample (a forget question set still fully answered),
A's is about 0.6 but falls to 0 in the resamples that draw only answered rows of A's one weak term. B - A is then
below 0 in most resamples and exactly 0 in the others, and the 95% interval is [-x, 0]: closed, it holds 0, so
the verdict stays "not distinguishable", and the note says why with the shares.
"""

from __future__ import annotations

import csv
import json
import re
import sys
from pathlib import Path

import numpy as np
import pytest

from leaderboard.compare import compare_records, verdict, verdict_note
from leaderboard.render import comparison_to_json, fmt_bound, render_comparison

sys.path.insert(0, str(Path(__file__).parent / "fixtures" / "leaderboard"))
from fabricate import constant_run, make_record  # noqa: E402


def _set_forget_task1_qa(run_dir: Path, scores: list[float]) -> None:
    """Give the forget Task1 knowledge rows of a `constant_run` these scores (1: still answered)."""
    path = run_dir / "row_scores.csv"
    with path.open(newline="") as handle:
        rows = list(csv.reader(handle))
    picked = [r for r in rows[1:] if r[:3] == ["forget", "Task1", "qa"]]
    assert len(picked) == len(scores)
    for row, score in zip(picked, scores):
        row[4] = str(score)
    with path.open("w", newline="") as handle:
        csv.writer(handle).writerows(rows)


def _runs(tmp_path: Path) -> tuple[Path, Path]:
    a, b = tmp_path / "a", tmp_path / "b"
    constant_run(a, term=0.8, mmlu=0.5, rows=5)
    constant_run(b, term=0.8, mmlu=0.5, rows=5)
    _set_forget_task1_qa(a, [1.0, 1.0, 1.0, 0.0, 0.0])  # term 0.4; 0 when a resample draws only 1s: 0.6^5
    _set_forget_task1_qa(b, [1.0] * 5)  # every forget question still answered: term 0, aggregate 0
    return a, b


def _records(a: Path, b: Path) -> tuple:
    # the official numbers of the two runs, computed from their rows as the scorer does
    def record(run_id: str, run_dir: Path, forget_qa: float):
        terms = (0.8, 1 - forget_qa, *([0.8] * 4), *([0.8] * 6))
        aggregate = 0.0 if 0 in terms else len(terms) / sum(1 / t for t in terms)
        return make_record(
            run_id,
            None,
            run_dir,
            terms=terms,
            task_aggregate=aggregate,
            auc=0.5,
            mia_score=1.0,
            mmlu_average=0.5,
            final_score=(aggregate + 1.5) / 3,
        )

    return record("aaaa", a, 0.6), record("bbbb", b, 1.0)


def test_an_interval_touching_zero_at_a_bound_is_not_distinguishable_and_says_why(tmp_path: Path) -> None:
    ra, rb = _records(*_runs(tmp_path))
    comparison = compare_records(ra, rb, n=2000, seed=0)
    line = {line.key: line for line in comparison.lines}["task_aggregate"]
    low, high = line.interval
    assert low < -0.5 and high == 0.0  # B never beats A, and equals it in more than 2.5% of resamples
    below, tie, above = line.shares
    assert above == 0.0 and tie == pytest.approx(0.6**5, abs=0.025) and below == pytest.approx(1 - tie)
    assert line.verdict == "not distinguishable"
    assert (
        line.note
        == f"B = A in {tie:.1%} of resamples, B < A in {below:.1%}; both aggregates 0 there (a term at 0)"
    )
    data = {entry["key"]: entry for entry in json.loads(comparison_to_json(comparison))["lines"]}
    assert data["task_aggregate"]["verdict"] == "not distinguishable"  # scripts keep the three values
    assert data["task_aggregate"]["verdict_note"] == line.note
    assert data["task_aggregate"]["shares"] == {"below_zero": below, "zero": tie, "above_zero": 0.0}
    # the MIA score and MMLU are equal in every resample: [0, 0], noted, not distinguishable
    mia = {line.key: line for line in comparison.lines}["mia_score"]
    assert mia.interval == (0.0, 0.0) and mia.note == "B = A in 100.0% of resamples"


def test_the_table_shows_zero_bounds_exactly_and_the_note(tmp_path: Path) -> None:
    from rich.console import Console

    ra, rb = _records(*_runs(tmp_path))
    console = Console(record=True, width=80, file=open("/dev/null", "w"))  # noqa: SIM115
    render_comparison(compare_records(ra, rb, n=500, seed=0), console)
    text = console.export_text()
    row = next(line for line in text.splitlines() if line.startswith("│ task aggregate"))
    assert re.search(r"\[-0\.\d{3}, 0\]", row) and "not distinguishable: B = A in" in row
    assert "+0.000]" not in text and "[+0.000" not in text and "[0, 0]" in text  # MIA and MMLU: equal


def test_verdict_rule_and_bound_format() -> None:
    assert verdict((0.001, 0.2)) == "better" and verdict((-0.2, -0.001)) == "worse"
    assert verdict((-0.688, 0.0)) == verdict((0.0, 0.3)) == verdict((-0.1, 0.1)) == "not distinguishable"
    assert verdict_note("final_score", (-0.1, 0.1), (0.5, 0.0, 0.5)) == ""  # crosses 0: no note needed
    note = verdict_note("final_score", (0.0, 0.3), (0.0, 0.04, 0.96))
    assert note == "B = A in 4.0% of resamples, B > A in 96.0%"
    assert [fmt_bound(v) for v in (0.0, -0.0, 0.0003, -0.0004, 0.0005, -0.6881)] == [
        "0",
        "0",
        "+3.0e-04",
        "-4.0e-04",
        "+0.001",
        "-0.688",
    ]
    assert np.isclose(float(fmt_bound(0.0003)), 0.0003)
