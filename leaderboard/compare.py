"""Comparing two runs: per-term and headline differences (B - A) with paired bootstrap intervals and verdicts.

The verdict of a headline number is "better" when the whole 95% interval of B - A is above 0, "worse" when it
is below 0, and "not distinguishable" otherwise (all four headline numbers are higher-is-better).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from leaderboard.bootstrap import Interval, PairedBootstrap, bootstrap_pair
from leaderboard.errors import BoardError
from leaderboard.ranking import is_failed
from leaderboard.record import HEADLINES, RunRecord

HEADLINE_LABELS = {
    "final_score": "final score",
    "task_aggregate": "task aggregate",
    "mia_score": "MIA score",
    "mmlu_average": "MMLU average",
    "auc": "MIA AUC",
}
#: the official term order (spec 2.6) for the three LUME tasks, used when a run's rows are not on disk
OFFICIAL_TERM_LABELS = tuple(
    f"{split} Task{task} {kind}"
    for split in ("forget", "retain")
    for task in (1, 2, 3)
    for kind in ("regurgitation", "knowledge")
)


@dataclass(frozen=True)
class CompareLine:
    """One compared number: A, B, the official point difference B - A, its paired interval and a verdict."""

    key: str
    label: str
    a: float | None
    b: float | None
    diff: float | None
    interval: Interval | None
    #: better / worse / not distinguishable for headline numbers, None otherwise (or without an interval)
    verdict: str | None


@dataclass(frozen=True)
class Comparison:
    a: RunRecord
    b: RunRecord
    lines: tuple[CompareLine, ...]
    resamples: int
    seed: int
    #: resampled units matched between the runs, and rows present in only one of them
    matched: dict[str, int]
    unmatched: int
    note: str = ""


def verdict(interval: Interval | None) -> str | None:
    """better / worse / not distinguishable from the interval of B - A."""
    if interval is None:
        return None
    low, high = interval
    if low > 0:
        return "better"
    if high < 0:
        return "worse"
    return "not distinguishable"


def compare_records(a: RunRecord, b: RunRecord, *, n: int = 1000, seed: int = 0) -> Comparison:
    """Compare run B with run A (both scored, same task); intervals need both run directories on disk."""
    for record in (a, b):
        if is_failed(record):
            raise BoardError(f"run {record.run_id} has no scores to compare (status {record.status})")
    if a.task != b.task:
        raise BoardError(f"runs {a.run_id} ({a.task}) and {b.run_id} ({b.task}) are on different tasks")
    paired: PairedBootstrap | None = None
    note = ""
    missing = [
        r.run_id for r in (a, b) if not r.run_dir or not (Path(r.run_dir) / "row_scores.csv").is_file()
    ]
    if missing:
        note = f"no intervals: the row-level artifacts of run {', '.join(missing)} are not on disk"
    else:
        paired = bootstrap_pair(a.run_dir, b.run_dir, n=n, seed=seed)
        if paired.unmatched:
            note = f"{paired.unmatched} rows are in only one of the runs and were left out of the intervals"
    diffs = paired.diffs if paired else {}

    def line(key: str, label: str, va: float | None, vb: float | None, judged: bool) -> CompareLine:
        diff = None if va is None or vb is None else float(vb) - float(va)
        interval = diffs.get(key)
        return CompareLine(key, label, va, vb, diff, interval, verdict(interval) if judged else None)

    lines = [line(key, HEADLINE_LABELS[key], getattr(a, key), getattr(b, key), True) for key in HEADLINES]
    lines.append(line("auc", HEADLINE_LABELS["auc"], a.auc, b.auc, False))
    terms_a, terms_b = a.terms or (), b.terms or ()
    labels = list(paired.term_labels) if paired else list(OFFICIAL_TERM_LABELS)
    if len(labels) != max(len(terms_a), len(terms_b)):
        labels = [f"term {i + 1}" for i in range(max(len(terms_a), len(terms_b)))]
    for i, label in enumerate(labels):
        va = terms_a[i] if i < len(terms_a) else None
        vb = terms_b[i] if i < len(terms_b) else None
        lines.append(line(label, label, va, vb, False))
    return Comparison(
        a,
        b,
        tuple(lines),
        n,
        seed,
        dict(paired.matched) if paired else {},
        paired.unmatched if paired else 0,
        note,
    )
