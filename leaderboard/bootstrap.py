"""Bootstrap confidence for a run's headline numbers, from the row-level artifacts of its run directory.

What is resampled (with replacement, same size, fixed seed):

- the forget and retain rows within each (split, task, kind) group of ``row_scores.csv`` -> the 12 terms
  (forget inverted) and their harmonic mean with the official rule that any zero term gives 0;
- the member and the non-member documents of ``mia_results/{member,nonmember}_*.csv`` -> the loss-attack AUC
  (P(member loss < non-member loss), ties 1/2, as sklearn's ROC AUC) and MIA score = 1 - 2|AUC - 0.5|;
- the MMLU questions of ``mmlu_results/<subject>.csv`` ('correct' column) -> the micro average;
- final score = mean of the three, per resample (only when both MIA and MMLU are present, as officially).

Everything is vectorised over resamples and runs (`resample_runs`: the runs of one world draw the same row
indices, rows matched by id; chunks of resamples bound the memory). The paired version (`bootstrap_pair`)
gives intervals of the difference B - A of two runs. A seed group's two-level bootstrap (`bootstrap_group`,
`bootstrap_group_pair`) also resamples the seeds, from a random stream of their own (`seed_weights`), and
averages the drawn runs' statistics. The formulas (harmonic mean, MIA score, final score) are
`leaderboard.formulas`'. Intervals are 95% percentile intervals.
"""

from __future__ import annotations

import csv
import json
import math
import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from leaderboard.errors import BoardError
from leaderboard.formulas import final_from_parts, harmonic_mean, mia_score
from leaderboard.record import HEADLINES

Interval = tuple[float, float]
#: shares of resamples with a difference below 0, exactly 0 and above 0
Shares = tuple[float, float, float]

_SPLITS = ("forget", "retain")
_KINDS = ("sc", "qa")
_KIND_NAMES = {"sc": "regurgitation", "qa": "knowledge"}
#: at most this many gathered values per chunk of resamples (keeps a LUME-sized MMLU bootstrap small in memory)
_CHUNK_CELLS = 2_000_000
#: the second entropy word of the seeds' random stream (the rows' stream is the bare seed)
_SEED_STREAM = 0x5EED


@dataclass(frozen=True)
class _Group:
    """One term's rows: a (split, task, kind) group, keyed for pairing by (id, occurrence)."""

    label: str
    split: str
    keys: tuple[tuple[str, int], ...]
    scores: np.ndarray


@dataclass(frozen=True)
class RunArtifacts:
    """The row-level numbers of one run directory, in the official term order."""

    run_dir: Path
    groups: tuple[_Group, ...]
    member: dict[tuple[str, int], float] | None
    nonmember: dict[tuple[str, int], float] | None
    mmlu: dict[tuple[str, int], float] | None
    #: average_acc of metrics.json when no per-subject CSVs exist (then MMLU is held fixed)
    mmlu_fixed: float | None

    @property
    def term_labels(self) -> list[str]:
        return [g.label for g in self.groups]


@dataclass(frozen=True)
class PairedBootstrap:
    """Intervals of B - A for the headline numbers, the AUC and each term, over the same resampled rows."""

    diffs: dict[str, Interval]
    term_labels: tuple[str, ...]
    matched: dict[str, int]
    unmatched: int
    #: per number, the shares of resamples with B - A below 0, exactly 0 and above 0 (they sum to 1)
    shares: dict[str, Shares] = field(default_factory=dict)
    #: per number, the share of resamples in which both A and B are exactly 0 (e.g. a zeroed harmonic mean)
    both_zero: dict[str, float] = field(default_factory=dict)


# -- reading the run directory ------------------------------------------------------------------------------
def _read_columns(path: Path, columns: tuple[str, ...]) -> list[tuple[str | None, ...]]:
    """The named columns of a CSV's rows (blank lines skipped, short rows padded with None, as DictReader)."""
    try:
        with path.open(newline="", encoding="utf-8") as handle:
            reader = csv.reader(handle)
            header = next(reader, None)
            rows = [row for row in reader if row]
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise BoardError(f"{path}: cannot read: {exc}") from None
    if header is None or not rows:
        return []
    if not set(columns) <= set(header):
        missing = ", ".join(c for c in columns if c not in header)
        raise BoardError(f"{path}: missing column(s) {missing}")
    index = [header.index(c) for c in columns]
    return [tuple(row[i] if i < len(row) else None for i in index) for row in rows]


def _number(path: Path, line: int, text: str | None, what: str) -> float:
    try:
        value = float(text)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise BoardError(f"{path}:{line}: {what} is not a number: {text!r}") from None
    return value


def _keyed(ids: list[str]) -> list[tuple[str, int]]:
    """(id, occurrence) keys: duplicated rows (the multi-process padding quirk) stay distinct and pairable."""
    seen: Counter[str] = Counter()
    keys = []
    for row_id in ids:
        keys.append((row_id, seen[row_id]))
        seen[row_id] += 1
    return keys


def _read_groups(path: Path) -> tuple[_Group, ...]:
    rows = _read_columns(path, ("split", "task", "kind", "id", "score"))
    by_group: dict[tuple[str, str, str], list[tuple[str, float]]] = {}
    tasks: dict[str, set[str]] = {split: set() for split in _SPLITS}
    for line, (split, task, kind, row_id, text) in enumerate(rows, start=2):
        if split not in _SPLITS:
            raise BoardError(f"{path}:{line}: unknown split {split!r} (expected forget or retain)")
        if kind not in _KINDS:
            continue  # ids with neither sc nor qa are ignored by the official scorer (spec 2.5)
        score = _number(path, line, text, "score")
        tasks[split].add(task)  # type: ignore[arg-type]
        by_group.setdefault((split, task, kind), []).append((row_id, score))  # type: ignore[arg-type]
    groups = []
    for split in _SPLITS:  # official term order: forget then retain, tasks sorted, sc then qa (spec 2.6)
        for task in sorted(tasks[split]):
            for kind in _KINDS:
                items = by_group.get((split, task, kind), [])
                label = f"{split} {task} {_KIND_NAMES[kind]}"
                scores = np.array([s for _, s in items], dtype=np.float64)
                groups.append(_Group(label, split, tuple(_keyed([i for i, _ in items])), scores))
    return tuple(groups)


def _read_nll(folder: Path, prefix: str) -> dict[tuple[str, int], float] | None:
    def shard(path: Path) -> int:
        match = re.search(r"_(\d+)$", path.stem)
        return int(match.group(1)) if match else -1

    files = sorted(folder.glob(f"{prefix}_*.csv"), key=shard)
    if not files:
        return None
    ids, values = [], []
    for path in files:
        for line, (row_id, text) in enumerate(_read_columns(path, ("id", "nll")), start=2):
            value = _number(path, line, text, "nll")
            if math.isnan(value):
                raise BoardError(f"{path}:{line}: nll is NaN (the official scorer refuses NaN losses)")
            ids.append(row_id)
            values.append(value)
    return dict(zip(_keyed(ids), values))


_TRUE = {"true": 1.0, "1": 1.0, "1.0": 1.0, "false": 0.0, "0": 0.0, "0.0": 0.0}


def _read_mmlu(folder: Path) -> tuple[dict[tuple[str, int], float] | None, float | None]:
    files = sorted(p for p in folder.glob("*.csv"))
    if files:
        correct: dict[tuple[str, int], float] = {}
        for path in files:
            subject = path.stem
            for index, (text,) in enumerate(_read_columns(path, ("correct",))):
                value = _TRUE.get(str(text).strip().lower())
                if value is None:
                    raise BoardError(f"{path}:{index + 2}: 'correct' is not a boolean: {text!r}")
                correct[(subject, index)] = value
        return correct, None
    metrics = folder / "metrics.json"
    if metrics.is_file():
        try:
            return None, float(json.loads(metrics.read_text(encoding="utf-8"))["average_acc"])
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise BoardError(f"{metrics}: no readable average_acc: {exc}") from None
    return None, None


def has_row_scores(run_dir: Path | str | None) -> bool:
    """Whether `run_dir` is set and holds the row_scores.csv that `load_run` needs."""
    return bool(run_dir) and (Path(run_dir) / "row_scores.csv").is_file()


def load_run(run_dir: Path | str) -> RunArtifacts:
    """Read the row-level artifacts of a scored run directory (row_scores.csv is required)."""
    run_dir = Path(run_dir)
    row_scores = run_dir / "row_scores.csv"
    if not row_scores.is_file():
        raise BoardError(f"{row_scores}: not found (the run directory has no per-row scores to resample)")
    mia = run_dir / "mia_results"
    member, nonmember = _read_nll(mia, "member"), _read_nll(mia, "nonmember")
    if (member is None) != (nonmember is None):
        raise BoardError(f"{mia}: needs both member_*.csv and nonmember_*.csv")
    mmlu, fixed = _read_mmlu(run_dir / "mmlu_results")
    return RunArtifacts(run_dir, _read_groups(row_scores), member, nonmember, mmlu, fixed)


# -- vectorised resampling -----------------------------------------------------------------------------------
def _resampled_means(rng: np.random.Generator, values: np.ndarray, n: int) -> np.ndarray:
    """values: (runs, rows) -> (runs, n) means over rows resampled with replacement (same rows for every run).

    Each chunk of resamples draws row indices, counts them (bincount) and takes one matrix product with
    every run's values, so tens of runs (a seed group, a whole board) cost about what one does.
    """
    rows = values.shape[1]
    if rows == 0:
        return np.full((values.shape[0], n), np.nan)  # an empty group has a NaN mean, as officially
    out = np.empty((values.shape[0], n))
    chunk = max(1, _CHUNK_CELLS // rows)
    for start in range(0, n, chunk):
        stop = min(n, start + chunk)
        idx = rng.integers(0, rows, size=(stop - start, rows), dtype=np.int64)
        idx += np.arange(stop - start, dtype=np.int64)[:, None] * rows
        counts = np.bincount(idx.ravel(), minlength=(stop - start) * rows).reshape(stop - start, rows)
        out[:, start:stop] = (counts.astype(np.float64) @ values.T).T / rows
    return out


def _resampled_auc(rng: np.random.Generator, member: np.ndarray, nonmember: np.ndarray, n: int) -> np.ndarray:
    """member (runs, m), nonmember (runs, k) NLLs -> (runs, n) AUCs of resampled document sets.

    AUC = P(member loss < non-member loss) with ties counted 1/2 (= sklearn roc_auc on -nll). With resample
    counts c (of members) and d (of non-members), AUC = c @ K @ d / (m k), K the pairwise win matrix.
    """
    m, k = member.shape[1], nonmember.shape[1]
    counts_m = rng.multinomial(m, np.full(m, 1.0 / m), size=n).astype(np.float64)
    counts_n = rng.multinomial(k, np.full(k, 1.0 / k), size=n).astype(np.float64)
    out = np.empty((member.shape[0], n))
    for r in range(member.shape[0]):
        diff = member[r][:, None] - nonmember[r][None, :]
        wins = (diff < 0) + 0.5 * (diff == 0)
        out[r] = ((counts_m @ wins) * counts_n).sum(axis=1) / (m * k)
    return out


def _statistics(
    rng: np.random.Generator,
    groups: list[tuple[str, str, np.ndarray]],
    member: np.ndarray | None,
    nonmember: np.ndarray | None,
    mmlu: np.ndarray | None,
    mmlu_fixed: np.ndarray | None,
    n: int,
) -> dict[str, np.ndarray]:
    """Resampled statistics, each (runs, n): term labels, the headline numbers and the AUC."""
    out: dict[str, np.ndarray] = {}
    terms = []
    for label, split, values in groups:
        mean = _resampled_means(rng, values, n)
        term = 1.0 - mean if split == "forget" else mean
        out[label] = term
        terms.append(term)
    if terms:
        out["task_aggregate"] = harmonic_mean(np.stack(terms, axis=-1))
    if member is not None and nonmember is not None:
        out["auc"] = _resampled_auc(rng, member, nonmember, n)
        out["mia_score"] = mia_score(out["auc"])
    if mmlu is not None:
        out["mmlu_average"] = _resampled_means(rng, mmlu, n)
    elif mmlu_fixed is not None:
        out["mmlu_average"] = np.broadcast_to(mmlu_fixed[:, None], (mmlu_fixed.shape[0], n))
    if {"task_aggregate", "mia_score", "mmlu_average"} <= set(out):
        out["final_score"] = final_from_parts(out["task_aggregate"], out["mmlu_average"], out["mia_score"])
    return out


def _interval(samples: np.ndarray) -> Interval:
    low, high = np.percentile(samples, [2.5, 97.5])
    return (float(low), float(high))


def _paired(a: np.ndarray, b: np.ndarray, labels: tuple[str, ...], resampled: Resampled) -> PairedBootstrap:
    """The paired result from per-key (n,) resampled values of A and of B (same resamples)."""
    diffs, shares, both_zero = {}, {}, {}
    for key in a:
        diff = b[key] - a[key]
        diffs[key] = _interval(diff)
        shares[key] = (float(np.mean(diff < 0)), float(np.mean(diff == 0)), float(np.mean(diff > 0)))
        both_zero[key] = float(np.mean((a[key] == 0) & (b[key] == 0)))
    return PairedBootstrap(
        diffs, labels, resampled.matched, resampled.unmatched, shares=shares, both_zero=both_zero
    )


@dataclass(frozen=True)
class Resampled:
    """Resampled statistics of several runs, each (runs, n), rows shared by the runs of one world."""

    stats: dict[str, np.ndarray]
    term_labels: tuple[str, ...]
    #: resampled units common to the runs (of the first world), and values present in only some runs
    matched: dict[str, int]
    unmatched: int


def _align(dicts: list[dict[tuple[str, int], float]]) -> tuple[np.ndarray, int]:
    """(runs, common keys) values in the first run's order, and how many values were not in every run."""
    first = list(dicts[0])
    if all(list(other) == first for other in dicts[1:]):  # the usual case: the same rows in the same order
        return np.array([list(d.values()) for d in dicts], dtype=np.float64).reshape(len(dicts), -1), 0
    common = [key for key in first if all(key in other for other in dicts[1:])]
    values = np.array([[d[key] for key in common] for d in dicts], dtype=np.float64).reshape(len(dicts), -1)
    return values, sum(len(d) for d in dicts) - len(dicts) * len(common)


def _names(runs: list[RunArtifacts]) -> str:
    shown = ", ".join(str(r.run_dir) for r in runs[:3])
    return shown + (f" and {len(runs) - 3} more" if len(runs) > 3 else "")


def _world_statistics(
    runs: list[RunArtifacts], rng: np.random.Generator, n: int
) -> tuple[dict[str, np.ndarray], dict[str, int], int]:
    """One world's runs resampled with the same row indices (rows matched by id)."""
    unmatched = 0
    matched: dict[str, int] = {}
    groups = []
    for parts in zip(*(run.groups for run in runs)):
        values, missing = _align([dict(zip(g.keys, g.scores)) for g in parts])
        if missing and values.shape[1] == 0:
            raise BoardError(f"{_names(runs)} share no rows in {parts[0].label}")
        unmatched += missing
        groups.append((parts[0].label, parts[0].split, values))
    matched["rows"] = sum(v.shape[1] for _, _, v in groups)

    def shared(what: str, attribute: str) -> np.ndarray | None:
        nonlocal unmatched
        found = [getattr(run, attribute) for run in runs]
        if any(value is None for value in found):
            return None
        values, missing = _align(found)
        if values.shape[1] == 0:
            raise BoardError(f"{_names(runs)} share no {what}")
        unmatched += missing
        matched[what] = values.shape[1]
        return values

    member = shared("member documents", "member")
    nonmember = shared("non-member documents", "nonmember")
    if member is None or nonmember is None:
        member = nonmember = None
    mmlu = shared("MMLU questions", "mmlu")
    fixed = None
    if mmlu is None and all(run.mmlu_fixed is not None for run in runs):
        fixed = np.array([run.mmlu_fixed for run in runs])
    return _statistics(rng, groups, member, nonmember, mmlu, fixed, n), matched, unmatched


def resample_runs(
    runs: list[RunArtifacts], worlds: list[object] | None = None, *, n: int = 1000, seed: int = 0
) -> Resampled:
    """Resample the rows of several runs: runs of the same world (``worlds[i]``; default: one world) draw the
    same row indices, as the same questions were asked of each; different worlds (other data) draw their own.

    The first world's rows come from ``default_rng(seed)``, so one run alone resamples exactly as
    `bootstrap_run` does, and two runs exactly as `bootstrap_pair` does.
    """
    if n < 1:
        raise BoardError(f"the number of bootstrap resamples must be at least 1, not {n}")
    worlds = list(worlds) if worlds is not None else [None] * len(runs)
    labels = runs[0].term_labels
    for run in runs[1:]:
        if run.term_labels != labels:
            raise BoardError(
                f"{runs[0].run_dir} and {run.run_dir} were scored on different task groups "
                f"({', '.join(labels)} vs {', '.join(run.term_labels)})"
            )
    order = list(dict.fromkeys(worlds))
    stats: dict[str, np.ndarray] = {}
    matched: dict[str, int] = {}
    unmatched = 0
    for index, world in enumerate(order):
        members = [i for i, w in enumerate(worlds) if w == world]
        rng = np.random.default_rng(seed if index == 0 else [seed, index])
        part, found, missing = _world_statistics([runs[i] for i in members], rng, n)
        unmatched += missing
        matched = matched or found
        if index == 0:
            stats = {key: np.empty((len(runs), n)) for key in part}
        for key in list(stats):
            if key not in part:  # e.g. one world's runs have no MIA files: no such statistic for the set
                del stats[key]
                continue
            stats[key][members] = part[key]
    return Resampled(stats, tuple(labels), matched, unmatched)


def bootstrap_run(run_dir: Path | str, n: int = 1000, seed: int = 0) -> dict[str, Interval]:
    """95% intervals of final_score, task_aggregate, mia_score and mmlu_average (those the run has)."""
    if n < 1:
        raise BoardError(f"the number of bootstrap resamples must be at least 1, not {n}")
    stats = resample_runs([load_run(run_dir)], n=n, seed=seed).stats
    return {key: _interval(stats[key][0]) for key in HEADLINES if key in stats}


def bootstrap_pair(
    run_dir_a: Path | str, run_dir_b: Path | str, n: int = 1000, seed: int = 0
) -> PairedBootstrap:
    """Intervals of B - A where both runs are resampled with the same row indices (rows matched by id)."""
    if n < 1:
        raise BoardError(f"the number of bootstrap resamples must be at least 1, not {n}")
    both = resample_runs([load_run(run_dir_a), load_run(run_dir_b)], n=n, seed=seed)
    a = {key: value[0] for key, value in both.stats.items()}
    b = {key: value[1] for key, value in both.stats.items()}
    return _paired(a, b, both.term_labels, both)


# -- seed groups: the second level ---------------------------------------------------------------------------
def seed_weights(units: int, n: int, seed: int = 0, stream: int | None = None) -> np.ndarray:
    """(n, units) multiplicities of the units (seeds) drawn with replacement in each of n resamples.

    Its own random stream, independent of the rows' draws, so a one-seed group's two-level interval is its
    row interval exactly; ``stream`` gives further independent streams (groups on other seed sets).
    """
    rng = np.random.default_rng([seed, _SEED_STREAM] + ([] if stream is None else [stream]))
    return rng.multinomial(units, np.full(units, 1.0 / units), size=n).astype(np.float64)


def over_seeds(samples: np.ndarray, weights: np.ndarray | None) -> np.ndarray:
    """(units, n) per-run resampled statistics -> (n,) the group mean in each resample; ``weights`` (n, units)
    from `seed_weights` resamples the seeds too (two-level), None holds them fixed (rows only)."""
    if weights is None:
        return samples.mean(axis=0)
    return np.einsum("bu,ub->b", weights, samples) / samples.shape[0]


@dataclass(frozen=True)
class GroupBootstrap:
    """A seed group's 95% intervals of the mean over its seeds: two-level (seeds, then rows) and rows only."""

    intervals: dict[str, Interval]
    row_intervals: dict[str, Interval]
    units: int


def bootstrap_group(
    run_dirs: list[Path | str], worlds: list[object] | None = None, *, n: int = 1000, seed: int = 0
) -> GroupBootstrap:
    """Two-level bootstrap of a seed group's mean: resample the seeds (runs), then the rows, shared by the
    runs of a world (the same questions); the rows-only interval keeps every seed once."""
    resampled = resample_runs([load_run(d) for d in run_dirs], worlds, n=n, seed=seed)
    weights = seed_weights(len(run_dirs), n, seed)
    keys = [key for key in HEADLINES if key in resampled.stats]
    return GroupBootstrap(
        {key: _interval(over_seeds(resampled.stats[key], weights)) for key in keys},
        {key: _interval(over_seeds(resampled.stats[key], None)) for key in keys},
        len(run_dirs),
    )


def bootstrap_group_pair(
    dirs_a: list[Path | str],
    dirs_b: list[Path | str],
    worlds: list[object] | None = None,
    *,
    n: int = 1000,
    seed: int = 0,
) -> PairedBootstrap:
    """Intervals of mean(B) - mean(A) for two groups paired by seed (``dirs_a[i]`` and ``dirs_b[i]`` share a
    seed and ``worlds[i]``) and by row: the same seeds are drawn for both, then the same rows."""
    if len(dirs_a) != len(dirs_b) or not dirs_a:
        raise BoardError("paired groups need the same, non-zero number of seeds")
    units = len(dirs_a)
    worlds = list(worlds) if worlds is not None else [None] * units
    resampled = resample_runs([load_run(d) for d in [*dirs_a, *dirs_b]], worlds * 2, n=n, seed=seed)
    weights = seed_weights(units, n, seed) if units > 1 else None
    # mean(B) - mean(A) per resample = the mean over the drawn seeds of the per-seed differences (linear)
    a = {key: over_seeds(value[:units], weights) for key, value in resampled.stats.items()}
    b = {key: over_seeds(value[units:], weights) for key, value in resampled.stats.items()}
    return _paired(a, b, resampled.term_labels, resampled)
