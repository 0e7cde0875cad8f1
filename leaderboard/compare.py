"""Comparing two runs or two seed groups: per-term and headline differences (B - A) with paired bootstrap
intervals and verdicts.

Two runs are paired by row. Two seed groups (or a group and a run) are paired by seed and by row: they must
have been run on the same (world seed, seed) units; each resample draws the same seeds for both, then the same
rows, and the difference is that of the two means over seeds (two-level, as the board's group intervals).
A reference row (run seed None: one evaluation per world) pairs by world instead: its run of world w stands
for every seed of the other side on world w.

The verdict of a headline number is "better" when the whole 95% interval of B - A is above 0, "worse" when it
is below 0, and "not distinguishable" otherwise (all four headline numbers are higher-is-better). The interval
is closed: one that reaches 0 only at a bound, e.g. [-0.688, 0], has B - A exactly 0 in at least 2.5% of the
resamples (typically the harmonic mean's zero floor: a resample where a term of A falls to 0 makes both task
aggregates 0), so B is not distinguishable from A at 95%; the line's note says so with the shares.
"""

from __future__ import annotations

from dataclasses import dataclass

from leaderboard.bootstrap import (
    Interval,
    PairedBootstrap,
    Shares,
    bootstrap_group_pair,
    bootstrap_pair,
    has_row_scores,
)
from leaderboard.errors import BoardError
from leaderboard.groups import SeedGroup, Unit, group_records
from leaderboard.ranking import is_failed
from leaderboard.record import HEADLINES, TERM_LABELS, RunRecord

HEADLINE_LABELS = {
    "final_score": "final score",
    "task_aggregate": "task aggregate",
    "mia_score": "MIA score",
    "mmlu_average": "MMLU average",
    "auc": "MIA AUC",
}
#: the official term order (spec 2.6) for the three LUME tasks, used when a run's rows are not on disk
OFFICIAL_TERM_LABELS = TERM_LABELS


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
    #: why a "not distinguishable" interval touches 0 at a bound (see `verdict_note`); "" otherwise
    note: str = ""
    #: shares of resamples with B - A below 0, exactly 0, above 0 (None without intervals)
    shares: Shares | None = None

    @property
    def verdict_text(self) -> str:
        """The verdict with its note, as the table shows it."""
        if not self.verdict:
            return ""
        return f"{self.verdict}: {self.note}" if self.note else self.verdict


@dataclass(frozen=True)
class Comparison:
    """B compared with A; each side a run or a seed group (A and B: their first runs, by seed)."""

    a: RunRecord
    b: RunRecord
    lines: tuple[CompareLine, ...]
    resamples: int
    seed: int
    #: resampled units matched between the runs, and rows present in only one of them
    matched: dict[str, int]
    unmatched: int
    note: str = ""
    a_group: SeedGroup | None = None
    b_group: SeedGroup | None = None
    #: the (world seed, seed) units the groups were paired on; empty for two runs
    units: tuple[Unit, ...] = ()

    @property
    def a_id(self) -> str:
        return self.a_group.group_id if self.units else self.a.run_id

    @property
    def b_id(self) -> str:
        return self.b_group.group_id if self.units else self.b.run_id


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


def verdict_note(key: str, interval: Interval | None, shares: Shares | None, both_zero: float = 0.0) -> str:
    """Why an interval with 0 as a bound is "not distinguishable": the share of resamples where B - A is
    exactly 0, i.e. B = A (at least the 2.5% a 95% interval leaves out on that side); "" for any other."""
    if interval is None or shares is None or 0.0 not in interval:
        return ""
    below, tie, above = shares
    text = f"B = A in {tie:.1%} of resamples"
    if interval != (0.0, 0.0):
        other, sign = (below, "<") if interval[1] == 0.0 else (above, ">")
        text += f", B {sign} A in {other:.1%}"
    if key == "task_aggregate" and tie > 0 and both_zero >= tie:
        text += "; both aggregates 0 there (a term at 0)"
    return text


def _check_scored(records: list[RunRecord]) -> None:
    for record in records:
        if is_failed(record):
            raise BoardError(f"run {record.run_id} has no scores to compare (status {record.status})")


def _show_units(units: list[Unit]) -> str:
    def one(unit: Unit) -> str:
        world, seed = unit
        text = "?" if seed is None else str(seed)
        return text if world is None else f"{text}@world{world}"

    return "{" + ", ".join(one(u) for u in sorted(units, key=lambda u: (str(u[0]), str(u[1])))) + "}"


def _reference(group: SeedGroup) -> bool:
    """A task's reference rows: one evaluation per world, no run seed."""
    return group.first.role != "entry" and all(seed is None for _, seed in group.units)


def _pair_units(a: SeedGroup, b: SeedGroup) -> tuple[SeedGroup, SeedGroup, tuple[Unit, ...], str]:
    """A's and B's runs in pairing order, the units and a note; one clear error when the seed sets differ
    or a seed repeats. A side without run seeds (a reference row: one evaluation per world) pairs by world
    with the other side's runs (`_by_world`)."""
    for group in (a, b):
        if len(set(group.units)) != group.size:
            raise BoardError(
                f"group {group.group_id} has a seed more than once ({_show_units(list(group.units))}): "
                "pairing by seed is ambiguous"
            )
    if set(a.units) != set(b.units):
        seedless = [_reference(g) for g in (a, b)]
        if seedless[0] != seedless[1]:
            return _by_world(a, b, reference_is_a=seedless[0])
        raise BoardError(
            f"{a.group_id} and {b.group_id} were run on different seed sets "
            f"({_show_units(list(a.units))} vs {_show_units(list(b.units))}): compare groups run on the same seeds"
        )
    by_unit = {r.unit: r for r in b.records}
    return a, SeedGroup(b.group_id, tuple(by_unit[u] for u in a.units)), a.units, ""


def _by_world(
    a: SeedGroup, b: SeedGroup, *, reference_is_a: bool
) -> tuple[SeedGroup, SeedGroup, tuple[Unit, ...], str]:
    """Pair a group with a side that has no run seeds (a reference row per world): each of the group's runs
    with that side's run of the same world, which stands for every seed of it (the reference checkpoint
    does not depend on a run seed); the reference's other worlds are left out. The units are the group's."""
    reference, group = (a, b) if reference_is_a else (b, a)
    per_world = {world: r for r, (world, _) in zip(reference.records, reference.units)}
    if lacking := sorted({w for w, _ in group.units if w not in per_world}, key=str):
        raise BoardError(
            f"{reference.group_id} has no run on world {', '.join(map(str, lacking))} of {group.group_id} "
            f"({_show_units(list(reference.units))} vs {_show_units(list(group.units))}): record it with "
            "`unlearn-harness run` on that world"
        )
    paired = SeedGroup(reference.group_id, tuple(per_world[w] for w, _ in group.units))
    left_out = sorted({w for w in per_world if w not in {w for w, _ in group.units}}, key=str)
    note = f"{reference.group_id}'s run of each world is paired with every seed of that world"
    if left_out:
        note += f"; its world {', '.join(map(str, left_out))} (not in {group.group_id}) is left out"
    sides = (paired, group) if reference_is_a else (group, paired)
    return sides[0], sides[1], group.units, note


def compare_records(a: RunRecord, b: RunRecord, *, n: int = 1000, seed: int = 0) -> Comparison:
    """Compare run B with run A (both scored, same task); intervals need both run directories on disk."""
    return compare_groups(SeedGroup(a.run_id, (a,)), SeedGroup(b.run_id, (b,)), n=n, seed=seed, by_seed=False)


def compare_selected(
    a: tuple[str, list[RunRecord]], b: tuple[str, list[RunRecord]], *, n: int = 1000, seed: int = 0
) -> Comparison:
    """Compare what `Store.select` found: two runs by row, otherwise by seed and by row."""
    sides = []
    for kind, records in (a, b):
        _check_scored(records if kind == "run" else [r for r in records if not is_failed(r)] or records)
        (group,) = group_records(r for r in records if not is_failed(r))
        sides.append(group if kind == "group" else SeedGroup(records[0].run_id, (records[0],)))
    by_seed = a[0] == "group" or b[0] == "group"
    return compare_groups(sides[0], sides[1], n=n, seed=seed, by_seed=by_seed)


def compare_groups(
    a: SeedGroup, b: SeedGroup, *, n: int = 1000, seed: int = 0, by_seed: bool = True
) -> Comparison:
    """Compare B with A: means over seeds, paired by seed (when ``by_seed``) and by row."""
    _check_scored([*a.records, *b.records])
    if a.first.task != b.first.task:
        raise BoardError(
            f"{a.group_id} ({a.first.task}) and {b.group_id} ({b.first.task}) are on different tasks"
        )
    units: tuple[Unit, ...] = ()
    pairing = ""
    if by_seed:
        a, b, units, pairing = _pair_units(a, b)
    paired: PairedBootstrap | None = None
    note = ""
    everyone = [*a.records, *b.records]
    missing = [r.run_id for r in everyone if not has_row_scores(r.run_dir)]
    if missing:
        note = f"no intervals: the row-level artifacts of run {', '.join(dict.fromkeys(missing))} are not on disk"
    elif by_seed:
        worlds = [r.world_seed for r in a.records]
        dirs_a, dirs_b = [r.run_dir for r in a.records], [r.run_dir for r in b.records]
        paired = bootstrap_group_pair(dirs_a, dirs_b, worlds, n=n, seed=seed)
    else:
        paired = bootstrap_pair(a.first.run_dir, b.first.run_dir, n=n, seed=seed)
    if paired is not None and paired.unmatched:
        note = f"{paired.unmatched} rows are in only one of the runs and were left out of the intervals"
    note = "; ".join(part for part in (pairing, note) if part)
    lines = _lines(a, b, paired)
    matched = dict(paired.matched) if paired else {}
    unmatched = paired.unmatched if paired else 0
    return Comparison(a.first, b.first, lines, n, seed, matched, unmatched, note, a, b, units)


def _lines(a: SeedGroup, b: SeedGroup, paired: PairedBootstrap | None) -> tuple[CompareLine, ...]:
    diffs = paired.diffs if paired else {}
    shares = paired.shares if paired else {}
    both_zero = paired.both_zero if paired else {}

    def line(key: str, label: str, va: float | None, vb: float | None, judged: bool) -> CompareLine:
        diff = None if va is None or vb is None else float(vb) - float(va)
        interval, share = diffs.get(key), shares.get(key)
        if not judged:
            return CompareLine(key, label, va, vb, diff, interval, None, shares=share)
        note = verdict_note(key, interval, share, both_zero.get(key, 0.0))
        return CompareLine(key, label, va, vb, diff, interval, verdict(interval), note, share)

    lines = [line(key, HEADLINE_LABELS[key], a.mean(key), b.mean(key), True) for key in HEADLINES]
    lines.append(line("auc", HEADLINE_LABELS["auc"], a.mean("auc"), b.mean("auc"), False))
    terms_a, terms_b = a.terms() or (), b.terms() or ()
    labels = list(paired.term_labels) if paired else list(OFFICIAL_TERM_LABELS)
    if len(labels) != max(len(terms_a), len(terms_b)):
        labels = [f"term {i + 1}" for i in range(max(len(terms_a), len(terms_b)))]
    for i, label in enumerate(labels):
        va = terms_a[i] if i < len(terms_a) else None
        vb = terms_b[i] if i < len(terms_b) else None
        lines.append(line(label, label, va, vb, False))
    return tuple(lines)
