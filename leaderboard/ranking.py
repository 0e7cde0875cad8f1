"""Ranking run records like the official SemEval-2025 Task 4 site (spec sections 2.9 and 6).

Rules:

- ranked by final score, highest first. Equal final scores share a rank (competition ranking 1, 1, 3, as the
  site's 0.165 rows); among equal scores the earlier run is listed first (it reached the score first), then
  the run id. Scores that differ only beyond the display precision (0.3082 vs 0.3080) are not equal;
- for a task with an MMLU threshold (records carry eligible True/False), eligible runs are ranked and the
  others go to a separate "below the utility threshold" table (the site's honorary mentions), in score order,
  unranked; eligible None (no threshold) ranks normally;
- by default the best run of each submission + variant (a run below the threshold is shown only when it beats
  that variant's best eligible run); all_runs shows every run;
- reference rows (the untouched target, the retain-only gold model) sit among the ranked rows at their score,
  marked and without a rank; the latest of each kind is shown unless all_runs;
- a run is "tied with the leader" when its 95% final-score interval overlaps the leader's;
- failed runs (a status other than OK/SALVAGED, or no final score) are listed with their status, never ranked.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass

from leaderboard.record import RunRecord

SCORED_STATUSES = ("OK", "SALVAGED")
REFERENCE_LABELS = {
    "reference-target": "reference: target (did nothing)",
    "reference-gold": "reference: gold (retain only)",
}


@dataclass(frozen=True)
class BoardRow:
    """One displayed row: a record with its rank (None when unranked) and flags."""

    record: RunRecord
    rank: int | None = None
    #: the final-score interval overlaps the leader's (leader included when any other run ties with it)
    tied: bool = False
    flags: tuple[str, ...] = ()
    #: how many runs of the same submission + variant (+ role) this row stands for
    runs: int = 1

    @property
    def reference(self) -> bool:
        return self.record.role != "entry"


@dataclass(frozen=True)
class Board:
    """The board of one task: ranked rows (references interleaved), rows below the threshold, failed runs."""

    task: str
    ranked: tuple[BoardRow, ...]
    below_threshold: tuple[BoardRow, ...]
    failed: tuple[BoardRow, ...]
    has_threshold: bool
    all_runs: bool


def is_failed(record: RunRecord) -> bool:
    """Not rankable: a failure status, or no finite final score."""
    return (
        record.status not in SCORED_STATUSES
        or record.final_score is None
        or not math.isfinite(record.final_score)
    )


def _order(record: RunRecord) -> tuple[float, str, str]:
    return (-float(record.final_score or 0.0), record.created_at, record.run_id)


def _group(record: RunRecord) -> tuple[str, str, str]:
    return (record.role, record.submission_name, record.variant)


def _flags(record: RunRecord) -> list[str]:
    flags = []
    if record.role in REFERENCE_LABELS:
        flags.append(REFERENCE_LABELS[record.role])
    if record.status == "SALVAGED":
        flags.append("salvaged")
    if record.unchanged and record.role != "reference-target":  # the target is unchanged by definition
        flags.append("unchanged checkpoint")
    return flags


def _failure(record: RunRecord) -> str:
    return f"failed: {record.status}" if record.status not in SCORED_STATUSES else "failed: not scored"


def _best(records: Iterable[RunRecord], all_runs: bool) -> dict[tuple[str, str, str], list[RunRecord]]:
    """Records per group, best first; only the best unless all_runs."""
    groups: dict[tuple[str, str, str], list[RunRecord]] = {}
    for record in records:
        groups.setdefault(_group(record), []).append(record)
    for key, members in groups.items():
        members.sort(key=_order)
        groups[key] = members if all_runs else members[:1]
    return groups


def _latest(records: Iterable[RunRecord], all_runs: bool) -> list[tuple[RunRecord, int]]:
    groups: dict[tuple[str, str, str], list[RunRecord]] = {}
    for record in records:
        groups.setdefault(_group(record), []).append(record)
    out = []
    for members in groups.values():
        members.sort(key=lambda r: (r.created_at, r.run_id))
        out.extend((r, len(members)) for r in (members if all_runs else members[-1:]))
    return sorted(out, key=lambda item: (item[0].created_at, item[0].run_id))


def rank_board(records: Iterable[RunRecord], task: str, *, all_runs: bool = False) -> Board:
    """The board of `task` from any records (records of other tasks are ignored)."""
    records = [r for r in records if r.task == task]
    failed = [r for r in records if is_failed(r)]
    scored = [r for r in records if not is_failed(r)]
    counts: dict[tuple[str, str, str], int] = {}
    for record in scored:
        counts[_group(record)] = counts.get(_group(record), 0) + 1

    references = [r for r in scored if r.role != "entry"]
    entries = [r for r in scored if r.role == "entry"]
    has_threshold = any(r.eligible is not None for r in entries)
    main = _best((r for r in entries if r.eligible is not False), all_runs)
    below = _best((r for r in entries if r.eligible is False), all_runs)
    if not all_runs:
        # a variant's ineligible run is an honorary mention only when it beats the variant's best eligible run
        below = {
            key: runs
            for key, runs in below.items()
            if key not in main or runs[0].final_score > main[key][0].final_score  # type: ignore[operator]
        }

    ranked_records = sorted((r for runs in main.values() for r in runs), key=_order)
    leader = ranked_records[0] if ranked_records else None
    leader_interval = leader.intervals.get("final_score") if leader else None

    def tied(record: RunRecord) -> bool:
        interval = record.intervals.get("final_score")
        if leader is None or record is leader or leader_interval is None or interval is None:
            return False
        return interval[1] >= leader_interval[0] and interval[0] <= leader_interval[1]

    rows: list[BoardRow] = []
    any_tied = any(tied(r) for r in ranked_records)
    for record in ranked_records:
        rank = 1 + sum(1 for other in ranked_records if other.final_score > record.final_score)  # type: ignore[operator]
        is_tied = tied(record) or (record is leader and any_tied)
        rows.append(BoardRow(record, rank, is_tied, tuple(_flags(record)), counts[_group(record)]))
    shown_refs = _best(references, all_runs)
    for record in (r for runs in shown_refs.values() for r in runs):
        rows.append(BoardRow(record, None, False, tuple(_flags(record)), counts[_group(record)]))
    rows.sort(key=lambda row: (_order(row.record), row.reference))

    below_rows = tuple(
        BoardRow(r, None, False, tuple(_flags(r)), counts[_group(r)])
        for r in sorted((r for runs in below.values() for r in runs), key=_order)
    )
    failed_rows = tuple(
        BoardRow(r, None, False, (*_flags(r), _failure(r)), n) for r, n in _latest(failed, all_runs)
    )
    return Board(task, tuple(rows), below_rows, failed_rows, has_threshold, all_runs)


def rank_all(records: Iterable[RunRecord], *, task: str | None = None, all_runs: bool = False) -> list[Board]:
    """One board per task (sorted by name), or only `task`'s."""
    records = list(records)
    tasks = [task] if task is not None else sorted({r.task for r in records})
    return [rank_board(records, name, all_runs=all_runs) for name in tasks]
