"""Bootstrap confidence for a run's headline numbers, from the row-level artifacts of its run directory.

What is resampled (with replacement, same size, fixed seed):

- the forget and retain rows within each (split, task, kind) group of ``row_scores.csv`` -> the 12 terms
  (forget inverted) and their harmonic mean with the official rule that any zero term gives 0;
- the member and the non-member documents of ``mia_results/{member,nonmember}_*.csv`` -> the loss-attack AUC
  (P(member loss < non-member loss), ties 1/2, as sklearn's ROC AUC) and MIA score = 1 - 2|AUC - 0.5|;
- the MMLU questions of ``mmlu_results/<subject>.csv`` ('correct' column) -> the micro average;
- final score = mean of the three, per resample (only when both MIA and MMLU are present, as officially).

Everything is vectorised over resamples (chunks of resamples bound the memory). The paired version
(`bootstrap_pair`) draws the same row indices for two runs, rows matched by id, and gives intervals of the
difference B - A. Intervals are 95% percentile intervals.
"""

from __future__ import annotations

import csv
import json
import math
import re
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from leaderboard.errors import BoardError
from leaderboard.record import HEADLINES

Interval = tuple[float, float]

_SPLITS = ("forget", "retain")
_KINDS = ("sc", "qa")
_KIND_NAMES = {"sc": "regurgitation", "qa": "knowledge"}
#: at most this many gathered values per chunk of resamples (keeps a LUME-sized MMLU bootstrap small in memory)
_CHUNK_CELLS = 2_000_000


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


# -- reading the run directory ------------------------------------------------------------------------------
def _read_csv(path: Path) -> list[dict[str, str]]:
    try:
        with path.open(newline="", encoding="utf-8") as handle:
            return list(csv.DictReader(handle))
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise BoardError(f"{path}: cannot read: {exc}") from None


def _need(path: Path, rows: list[dict[str, str]], columns: tuple[str, ...]) -> None:
    if rows and not set(columns) <= set(rows[0]):
        missing = ", ".join(c for c in columns if c not in rows[0])
        raise BoardError(f"{path}: missing column(s) {missing}")


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
    rows = _read_csv(path)
    _need(path, rows, ("split", "task", "kind", "id", "score"))
    by_group: dict[tuple[str, str, str], list[tuple[str, float]]] = {}
    tasks: dict[str, set[str]] = {split: set() for split in _SPLITS}
    for line, row in enumerate(rows, start=2):
        split, kind = row["split"], row["kind"]
        if split not in _SPLITS:
            raise BoardError(f"{path}:{line}: unknown split {split!r} (expected forget or retain)")
        if kind not in _KINDS:
            continue  # ids with neither sc nor qa are ignored by the official scorer (spec 2.5)
        score = _number(path, line, row["score"], "score")
        tasks[split].add(row["task"])
        by_group.setdefault((split, row["task"], kind), []).append((row["id"], score))
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
        rows = _read_csv(path)
        _need(path, rows, ("id", "nll"))
        for line, row in enumerate(rows, start=2):
            value = _number(path, line, row["nll"], "nll")
            if math.isnan(value):
                raise BoardError(f"{path}:{line}: nll is NaN (the official scorer refuses NaN losses)")
            ids.append(row["id"])
            values.append(value)
    return dict(zip(_keyed(ids), values))


_TRUE = {"true": 1.0, "1": 1.0, "1.0": 1.0, "false": 0.0, "0": 0.0, "0.0": 0.0}


def _read_mmlu(folder: Path) -> tuple[dict[tuple[str, int], float] | None, float | None]:
    files = sorted(p for p in folder.glob("*.csv"))
    if files:
        correct: dict[tuple[str, int], float] = {}
        for path in files:
            rows = _read_csv(path)
            _need(path, rows, ("correct",))
            for index, row in enumerate(rows):
                value = _TRUE.get(str(row["correct"]).strip().lower())
                if value is None:
                    raise BoardError(f"{path}:{index + 2}: 'correct' is not a boolean: {row['correct']!r}")
                correct[(path.stem, index)] = value
        return correct, None
    metrics = folder / "metrics.json"
    if metrics.is_file():
        try:
            return None, float(json.loads(metrics.read_text(encoding="utf-8"))["average_acc"])
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise BoardError(f"{metrics}: no readable average_acc: {exc}") from None
    return None, None


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
    """values: (runs, rows) -> (runs, n) means over rows resampled with replacement (same rows for every run)."""
    rows = values.shape[1]
    if rows == 0:
        return np.full((values.shape[0], n), np.nan)  # an empty group has a NaN mean, as officially
    out = np.empty((values.shape[0], n))
    chunk = max(1, _CHUNK_CELLS // rows)
    for start in range(0, n, chunk):
        stop = min(n, start + chunk)
        idx = rng.integers(0, rows, size=(stop - start, rows), dtype=np.int64)
        for run in range(values.shape[0]):  # one or two runs; a 1-D gather is much faster than a 2-D one
            out[run, start:stop] = values[run][idx].mean(axis=-1)
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
        out[r] = np.einsum("bi,ij,bj->b", counts_m, wins, counts_n) / (m * k)
    return out


def _harmonic_mean(terms: np.ndarray) -> np.ndarray:
    """terms (..., T) -> HM over the last axis; 0 where any term is 0 (stdlib statistics rule, spec 2.6)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        hm = terms.shape[-1] / np.sum(1.0 / terms, axis=-1)
    return np.where(np.any(terms == 0, axis=-1), 0.0, hm)


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
        out["task_aggregate"] = _harmonic_mean(np.stack(terms, axis=-1))
    if member is not None and nonmember is not None:
        out["auc"] = _resampled_auc(rng, member, nonmember, n)
        out["mia_score"] = 1.0 - np.abs(out["auc"] - 0.5) * 2.0
    if mmlu is not None:
        out["mmlu_average"] = _resampled_means(rng, mmlu, n)
    elif mmlu_fixed is not None:
        out["mmlu_average"] = np.broadcast_to(mmlu_fixed[:, None], (mmlu_fixed.shape[0], n))
    if {"task_aggregate", "mia_score", "mmlu_average"} <= set(out):
        out["final_score"] = (out["task_aggregate"] + out["mmlu_average"] + out["mia_score"]) / 3.0
    return out


def _interval(samples: np.ndarray) -> Interval:
    low, high = np.percentile(samples, [2.5, 97.5])
    return (float(low), float(high))


def bootstrap_run(run_dir: Path | str, n: int = 1000, seed: int = 0) -> dict[str, Interval]:
    """95% intervals of final_score, task_aggregate, mia_score and mmlu_average (those the run has)."""
    if n < 1:
        raise BoardError(f"the number of bootstrap resamples must be at least 1, not {n}")
    run = load_run(run_dir)
    rng = np.random.default_rng(seed)
    groups = [(g.label, g.split, g.scores[None, :]) for g in run.groups]
    member = None if run.member is None else np.array(list(run.member.values()))[None, :]
    nonmember = None if run.nonmember is None else np.array(list(run.nonmember.values()))[None, :]
    mmlu = None if run.mmlu is None else np.array(list(run.mmlu.values()))[None, :]
    fixed = None if run.mmlu_fixed is None else np.array([run.mmlu_fixed])
    stats = _statistics(rng, groups, member, nonmember, mmlu, fixed, n)
    return {key: _interval(stats[key][0]) for key in HEADLINES if key in stats}


def _align(a: dict[tuple[str, int], float], b: dict[tuple[str, int], float]) -> tuple[np.ndarray, int]:
    common = [key for key in a if key in b]
    values = np.array([[a[key] for key in common], [b[key] for key in common]], dtype=np.float64).reshape(
        2, -1
    )
    return values, len(a) + len(b) - 2 * len(common)


def bootstrap_pair(
    run_dir_a: Path | str, run_dir_b: Path | str, n: int = 1000, seed: int = 0
) -> PairedBootstrap:
    """Intervals of B - A where both runs are resampled with the same row indices (rows matched by id)."""
    if n < 1:
        raise BoardError(f"the number of bootstrap resamples must be at least 1, not {n}")
    run_a, run_b = load_run(run_dir_a), load_run(run_dir_b)
    if run_a.term_labels != run_b.term_labels:
        raise BoardError(
            f"{run_a.run_dir} and {run_b.run_dir} were scored on different task groups "
            f"({', '.join(run_a.term_labels)} vs {', '.join(run_b.term_labels)})"
        )
    unmatched = 0
    matched: dict[str, int] = {}
    groups = []
    for ga, gb in zip(run_a.groups, run_b.groups):
        values, missing = _align(dict(zip(ga.keys, ga.scores)), dict(zip(gb.keys, gb.scores)))
        if missing and values.shape[1] == 0:
            raise BoardError(f"{run_a.run_dir} and {run_b.run_dir} share no rows in {ga.label}")
        unmatched += missing
        groups.append((ga.label, ga.split, values))
    matched["rows"] = sum(v.shape[1] for _, _, v in groups)

    def pair(a: dict | None, b: dict | None, what: str) -> np.ndarray | None:
        nonlocal unmatched
        if a is None or b is None:
            return None
        values, missing = _align(a, b)
        if values.shape[1] == 0:
            raise BoardError(f"{run_a.run_dir} and {run_b.run_dir} share no {what}")
        unmatched += missing
        matched[what] = values.shape[1]
        return values

    member = pair(run_a.member, run_b.member, "member documents")
    nonmember = pair(run_a.nonmember, run_b.nonmember, "non-member documents")
    if member is None or nonmember is None:
        member = nonmember = None
    mmlu = pair(run_a.mmlu, run_b.mmlu, "MMLU questions")
    fixed = None
    if mmlu is None and run_a.mmlu_fixed is not None and run_b.mmlu_fixed is not None:
        fixed = np.array([run_a.mmlu_fixed, run_b.mmlu_fixed])
    stats = _statistics(np.random.default_rng(seed), groups, member, nonmember, mmlu, fixed, n)
    diffs = {key: _interval(value[1] - value[0]) for key, value in stats.items()}
    return PairedBootstrap(diffs, tuple(run_a.term_labels), matched, unmatched)
