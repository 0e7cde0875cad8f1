"""Ranking run records like the official SemEval-2025 Task 4 site (spec sections 2.9 and 6).

Rules:

- one row per seed group (records sharing a group id; a record without one is its own one-seed group),
  valued by the mean over its seeds and ranked by the mean final score, highest first. Equal final scores share a rank (competition ranking 1, 1, 3, as the
  site's 0.165 rows); among equal scores the earlier run is listed first (it reached the score first), then
  the run id. Scores that differ only beyond the display precision (0.3082 vs 0.3080) are not equal;
- for a task with an MMLU threshold (records carry eligible True/False), eligible runs are ranked and the
  others go to a separate "below the utility threshold" table (the site's honorary mentions), in score order,
  unranked; eligible None (no threshold) ranks normally;
- by default the best group of each submission + variant (a group below the threshold is shown only when it
  beats that variant's best eligible group); all_runs shows every group. A group is below the threshold when
  any of its seeds is (conservative: the threshold is not known here, only each run's flag);
- reference rows (the untouched target, the retain-only gold model) sit among the ranked rows at their score,
  marked and without a rank: one row per kind, a group over the worlds it was evaluated on (one evaluation
  per world, run seed None: `leaderboard.groups`), valued by the mean over them, its SD the worlds' spread;
- a row is "tied with the leader" when its 95% final-score interval overlaps the leader's: the two-level
  (seeds, then rows) interval of a group, the row interval of a one-seed group;
- failed runs (a status other than OK/SALVAGED, or no final score) are listed with their status, never ranked;
  a group's other seeds still make its row, flagged with how many seeds failed;
- a partial evaluation (a run with a ``limit``: ``--limit N`` scored only the first N rows per split, MIA
  documents per side and MMLU questions per subject) is not comparable with a full one: such groups go to a
  separate "limited" table, in score order, unranked and flagged, never among the ranked rows (nor below the
  threshold). A group is limited when any of its seeds is.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, replace

from leaderboard.groups import SeedGroup, group_records, with_intervals
from leaderboard.record import RunRecord
from leaderboard.status import SCORED, Status

REFERENCE_LABELS = {
    "reference-target": "reference: target (did nothing)",
    "reference-gold": "reference: gold (retain only)",
}


@dataclass(frozen=True)
class BoardRow:
    """One displayed row: a seed group (one run for a one-seed group) with its rank (None when unranked)."""

    group: SeedGroup
    rank: int | None = None
    #: the final-score interval overlaps the leader's (leader included when any other row ties with it)
    tied: bool = False
    flags: tuple[str, ...] = ()
    #: how many groups of the same submission + variant (+ role) this row stands for
    runs: int = 1
    #: every one of those groups is a single run (then "best of N runs", else "best of N seed groups")
    single_runs: bool = True

    @property
    def record(self) -> RunRecord:
        """The group's first run (by seed): its submission, variant, role and status name the row."""
        return self.group.first

    @property
    def reference(self) -> bool:
        return self.record.role != "entry"

    def value(self, key: str) -> float | None:
        """The row's number: the mean over the group's seeds (a one-seed group: the run's own)."""
        return self.record_value(key) if self.group.size == 1 else self.group.mean(key)

    def record_value(self, key: str) -> float | None:
        value = getattr(self.record, key)
        return None if value is None else float(value)

    def interval(self, key: str) -> tuple[float, float] | None:
        return self.group.intervals.get(key)


@dataclass(frozen=True)
class Board:
    """The board of one task: ranked rows (references interleaved), rows below the threshold, failed runs."""

    task: str
    ranked: tuple[BoardRow, ...]
    below_threshold: tuple[BoardRow, ...]
    failed: tuple[BoardRow, ...]
    has_threshold: bool
    all_runs: bool
    #: partial evaluations (runs with a --limit): unranked, apart from every full run
    limited: tuple[BoardRow, ...] = ()


def is_failed(record: RunRecord) -> bool:
    """Not rankable: a failure status, or no finite final score."""
    return record.status not in SCORED or record.final_score is None or not math.isfinite(record.final_score)


def _final(group: SeedGroup) -> float:
    value = group.first.final_score if group.size == 1 else group.mean("final_score")
    return float(value or 0.0)


def _order(group: SeedGroup) -> tuple[float, str, str]:
    return (-_final(group), group.created_at, group.group_id)


def _variant(record: RunRecord) -> tuple[str, str, str]:
    return (record.role, record.submission_name, record.variant)


def _flags(group: SeedGroup) -> list[str]:
    record = group.first
    flags = []
    if record.role in REFERENCE_LABELS:
        flags.append(REFERENCE_LABELS[record.role])
        worlds = [str(r.world_seed) for r in group.records if r.world_seed is not None]
        if len(worlds) > 1:
            flags.append(f"mean over worlds {', '.join(worlds)}")
    salvaged = sum(r.status == Status.SALVAGED for r in group.records)
    if salvaged:
        flags.append("salvaged" if group.size == 1 else f"salvaged ({salvaged} of {group.size} seeds)")
    # the target is unchanged by definition
    if any(r.unchanged for r in group.records) and record.role != "reference-target":
        flags.append("unchanged checkpoint")
    audited = [r.robust_forget for r in group.records if r.robust_forget is not None]
    if audited:
        flags.append(
            f"robust forget {sum(audited) / len(audited):.3f}"
        )  # harness.audit's headline, seed mean
    if any(r.isolation == "none" for r in group.records):
        flags.append("unisolated")  # ran as a plain child: it could have changed its own score
    limits = sorted({r.limit for r in group.records if r.limit is not None})
    if limits:  # scored on the first N rows only: not comparable with a full evaluation
        flags.append(f"limited to {', '.join(map(str, limits))} (partial evaluation, not comparable)")
    if group.failed:
        flags.append(f"{group.failed} of {group.size + group.failed} seeds failed (not averaged in)")
    if group.note and group.size > 1:
        flags.append(group.note)
    return flags


def _limited(group: SeedGroup) -> bool:
    """A partial evaluation (--limit) in the group: it is never ranked against full runs."""
    return any(r.limit is not None for r in group.records)


def _failure(record: RunRecord) -> str:
    return f"failed: {record.status}" if record.status not in SCORED else "failed: not scored"


def _best(groups: Iterable[SeedGroup], all_runs: bool) -> dict[tuple[str, str, str], list[SeedGroup]]:
    """Groups per submission + variant, best first; only the best unless all_runs."""
    out: dict[tuple[str, str, str], list[SeedGroup]] = {}
    for group in groups:
        out.setdefault(_variant(group.first), []).append(group)
    for key, members in out.items():
        members.sort(key=_order)
        out[key] = members if all_runs else members[:1]
    return out


def _latest(records: Iterable[RunRecord], all_runs: bool) -> list[tuple[RunRecord, int]]:
    variants: dict[tuple[str, str, str], list[RunRecord]] = {}
    for record in records:
        variants.setdefault(_variant(record), []).append(record)
    out = []
    for members in variants.values():
        members.sort(key=lambda r: (r.created_at, r.run_id))
        out.extend((r, len(members)) for r in (members if all_runs else members[-1:]))
    return sorted(out, key=lambda item: (item[0].created_at, item[0].run_id))


def _tie_marks(ranked: list[SeedGroup]) -> dict[str, bool]:
    """group id -> tied with the leader (interval overlap); the leader is marked when anyone ties with it."""
    leader = ranked[0] if ranked else None
    lead = leader.intervals.get("final_score") if leader else None

    def tied(group: SeedGroup) -> bool:
        interval = group.intervals.get("final_score")
        if group is leader or lead is None or interval is None:
            return False
        return interval[1] >= lead[0] and interval[0] <= lead[1]

    marks = {g.group_id: tied(g) for g in ranked}
    if leader is not None:
        marks[leader.group_id] = any(marks.values())
    return marks


def rank_board(
    records: Iterable[RunRecord],
    task: str,
    *,
    all_runs: bool = False,
    resamples: int = 1000,
    seed: int = 0,
    intervals: bool = True,
) -> Board:
    """The board of `task` from any records (records of other tasks are ignored). The shown groups of more
    than one seed are bootstrapped from their run directories (`resamples`, `seed`; not when ``intervals``
    is False: then only one-seed rows have their stored intervals, and ties are marked from those)."""
    records = [r for r in records if r.task == task]
    failed = [r for r in records if is_failed(r)]
    failed_per_group: dict[str, int] = {}
    for record in failed:
        failed_per_group[record.group_key] = failed_per_group.get(record.group_key, 0) + 1
    groups = [
        replace(g, failed=failed_per_group.get(g.group_id, 0))
        for g in group_records(r for r in records if not is_failed(r))
    ]
    counts: dict[tuple[str, str, str, bool], list[SeedGroup]] = {}  # a variant's full and limited runs apart
    for group in groups:
        counts.setdefault((*_variant(group.first), _limited(group)), []).append(group)

    def row(group: SeedGroup, rank: int | None = None, tied: bool = False) -> BoardRow:
        same = counts[(*_variant(group.first), _limited(group))]
        return BoardRow(group, rank, tied, tuple(_flags(group)), len(same), all(g.size == 1 for g in same))

    def shown(chosen: dict[tuple[str, str, str], list[SeedGroup]]) -> list[SeedGroup]:
        picked = (g for members in chosen.values() for g in members)
        if not intervals:
            return sorted(picked, key=_order)
        return sorted((with_intervals(g, n=resamples, seed=seed) for g in picked), key=_order)

    limited = _best((g for g in groups if g.first.role == "entry" and _limited(g)), all_runs)
    entries = [g for g in groups if g.first.role == "entry" and not _limited(g)]
    has_threshold = any(g.eligible is not None for g in entries)
    main = _best((g for g in entries if g.eligible is not False), all_runs)
    below = _best((g for g in entries if g.eligible is False), all_runs)
    if not all_runs:
        # a variant's ineligible group is an honorary mention only when it beats the variant's best eligible one
        below = {k: v for k, v in below.items() if k not in main or _final(v[0]) > _final(main[k][0])}

    ranked = shown(main)
    marks = _tie_marks(ranked)
    rows = [row(g, 1 + sum(_final(o) > _final(g) for o in ranked), marks[g.group_id]) for g in ranked]
    rows += [row(g) for g in shown(_best((g for g in groups if g.first.role != "entry"), all_runs))]
    rows.sort(key=lambda r: (_order(r.group), r.reference))
    below_rows = tuple(row(g) for g in shown(below))
    failed_rows = tuple(
        BoardRow(SeedGroup(r.run_id, (r,)), None, False, (*_flags(SeedGroup(r.run_id, (r,))), _failure(r)), n)
        for r, n in _latest(failed, all_runs)
    )
    limited_rows = tuple(row(g) for g in shown(limited))
    return Board(task, tuple(rows), below_rows, failed_rows, has_threshold, all_runs, limited_rows)


def rank_all(
    records: Iterable[RunRecord],
    *,
    task: str | None = None,
    all_runs: bool = False,
    resamples: int = 1000,
    seed: int = 0,
) -> list[Board]:
    """One board per task (sorted by name), or only `task`'s."""
    records = list(records)
    tasks = [task] if task is not None else sorted({r.task for r in records})
    return [rank_board(records, name, all_runs=all_runs, resamples=resamples, seed=seed) for name in tasks]
