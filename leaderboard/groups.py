"""Seed groups: the records sharing a group id, and their aggregates computed when the board is read.

A run is one record; a seed group is the set of records with the same ``group_id`` (a record without one is a
group of its own, as are all records stored before seed groups existed). Nothing here is stored: the mean
over seeds, the seed standard deviation and the two-level interval are computed from the member records
and their run directories each time a board is read.

A group's unit is (world seed, run seed): two groups are paired unit by unit, and the two-level bootstrap
resamples units, then the rows of each unit's run (rows shared by the runs of one world).

A task's reference rows of one role (the untouched target, the gold model: one evaluation per world, run
seed None) are one group too, spanning the worlds (`leaderboard.record.reference_group_id`; rows of an older
board without a group id join it). It holds one row per world: the latest, should a world have been
recorded twice, and a row of no known world (recorded before world seeds were) only while no row names one.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Iterable
from dataclasses import dataclass, field, replace

from leaderboard.bootstrap import Interval, bootstrap_group, has_row_scores
from leaderboard.errors import BoardError
from leaderboard.record import HEADLINES, RunRecord

Unit = tuple[int | None, int | None]


@dataclass(frozen=True)
class SeedGroup:
    """The scored runs of one group (seed order) and, when computed, their intervals of the mean."""

    group_id: str
    records: tuple[RunRecord, ...]
    #: how many runs of the group are not scored (failed): they are listed apart, never averaged in
    failed: int = 0
    #: two-level (seeds, then rows) 95% intervals of the mean; a one-seed group's are its stored row intervals
    intervals: dict[str, Interval] = field(default_factory=dict)
    #: rows-only intervals of the mean (every seed kept once)
    row_intervals: dict[str, Interval] = field(default_factory=dict)
    #: why intervals are missing, when they are
    note: str = ""

    @property
    def first(self) -> RunRecord:
        """The member that names the row: submission, variant, role, task (the same for every member)."""
        return self.records[0]

    @property
    def size(self) -> int:
        return len(self.records)

    @property
    def units(self) -> tuple[Unit, ...]:
        return tuple(r.unit for r in self.records)

    @property
    def created_at(self) -> str:
        return min(r.created_at for r in self.records)

    def values(self, key: str) -> list[float] | None:
        """Each seed's official value of a headline number (or "auc"); None when a member lacks it."""
        found = [getattr(r, key) for r in self.records]
        return None if any(v is None for v in found) else [float(v) for v in found]

    def mean(self, key: str) -> float | None:
        found = self.values(key)
        return None if found is None else math.fsum(found) / len(found)

    def sd(self, key: str) -> float | None:
        """The seed standard deviation (n - 1); None for a one-seed group."""
        found = self.values(key)
        return None if found is None or len(found) < 2 else statistics.stdev(found)

    def terms(self) -> tuple[float, ...] | None:
        """The mean of each official term over the seeds."""
        if any(r.terms is None for r in self.records) or len({len(r.terms or ()) for r in self.records}) != 1:
            return None
        return tuple(math.fsum(t) / self.size for t in zip(*(r.terms or () for r in self.records)))

    @property
    def eligible(self) -> bool | None:
        """MMLU eligibility: None without a threshold, False when any seed is below it (conservative)."""
        flags = [r.eligible for r in self.records]
        if all(f is None for f in flags):
            return None
        return all(f is not False for f in flags)


def _unit_order(record: RunRecord) -> tuple:
    world, seed = record.unit
    return (world is None, world or 0, seed is None, seed or 0, record.created_at, record.run_id)


def unit_label(record: RunRecord) -> str:
    """How a run is named within its group: "seed 1", "seed 1, world 2", "world 2" (a reference row)."""
    world, seed = record.unit
    parts = ([] if seed is None else [f"seed {seed}"]) + ([] if world is None else [f"world {world}"])
    return ", ".join(parts) or "one run"


def _one_per_world(records: list[RunRecord]) -> list[RunRecord]:
    """A reference group's rows: the latest of each unit, without the rows of no known world when others
    name one (those were the default world, recorded again since with its seed)."""
    latest: dict[Unit, RunRecord] = {}
    for record in sorted(records, key=lambda r: (r.created_at, r.run_id)):
        latest[record.unit] = record
    if any(world is not None for world, _ in latest):
        latest = {unit: r for unit, r in latest.items() if unit[0] is not None}
    return list(latest.values())


def group_records(records: Iterable[RunRecord]) -> list[SeedGroup]:
    """The scored records as seed groups (by group id; seed order inside), without intervals yet."""
    members: dict[str, list[RunRecord]] = {}
    for record in records:
        members.setdefault(record.group_key, []).append(record)
    groups = []
    for key, runs in members.items():
        if runs and runs[0].role != "entry":
            runs = _one_per_world(runs)
        if runs:
            groups.append(SeedGroup(key, tuple(sorted(runs, key=_unit_order))))
    return groups


def with_intervals(group: SeedGroup, *, n: int = 1000, seed: int = 0) -> SeedGroup:
    """The group with its intervals: a one-seed group keeps its stored ones (computed when it was recorded);
    a larger group is bootstrapped from its run directories (missing ones leave it without, and a note)."""
    if group.size == 1:
        stored = dict(group.first.intervals)
        return replace(group, intervals=stored, row_intervals=stored)
    missing = [r.run_id for r in group.records if not has_row_scores(r.run_dir)]
    if missing:
        return replace(
            group, note=f"no intervals: the row-level artifacts of run {', '.join(missing)} are not on disk"
        )
    try:
        result = bootstrap_group(
            [r.run_dir for r in group.records], [r.world_seed for r in group.records], n=n, seed=seed
        )
    except BoardError as exc:
        return replace(group, note=f"no intervals: {exc}")
    return replace(group, intervals=result.intervals, row_intervals=result.row_intervals)


def headline_means(group: SeedGroup) -> dict[str, float | None]:
    return {key: group.mean(key) for key in HEADLINES}
