"""How stable a task's ranking is: P(rank 1) and the expected rank of each ranked variant under the two-level
resampling, and how much the ranking depends on the scoring formula (V1, V2, and V3 without its MIA term).

The resampling is the board's: every run of every ranked group is resampled with the same rows (all variants
answered the same questions of a world), each group's seeds are resampled (groups run on the same seeds draw
the same seeds: paired by seed, as `board compare` is), and each group's mean final score is recomputed.
All groups x seeds x resamples are one set of numpy arrays (`leaderboard.bootstrap.resample_runs`).

Ties in a resample share the rank (average ranks) and split the credit for rank 1. Kendall's tau (tau-b,
scipy) compares the point rankings: V3 (the board's) against the V1 and V2 formulas applied to the same runs.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from leaderboard.bootstrap import has_row_scores, load_run, over_seeds, resample_runs, seed_weights
from leaderboard.errors import BoardError
from leaderboard.formulas import final_score
from leaderboard.groups import SeedGroup
from leaderboard.ranking import Board


@dataclass(frozen=True)
class StabilityRow:
    """One ranked variant (its best group): board rank and mean, and what the resampling says of it."""

    group_id: str
    submission: str
    variant: str
    seeds: int
    rank: int
    final_score: float
    p_rank1: float
    expected_rank: float
    rank_v1: int | None
    rank_v2: int | None
    rank_without_mia: int | None


@dataclass(frozen=True)
class Stability:
    task: str
    rows: tuple[StabilityRow, ...]
    resamples: int
    seed: int
    tau_v1: float | None
    tau_v2: float | None
    #: how many variants change rank when the MIA term is dropped (final = mean of HM and MMLU)
    changed_without_mia: int | None
    note: str = ""


def _competition_ranks(values: np.ndarray) -> np.ndarray:
    """1 + how many are strictly higher (the board's 1, 1, 3 ranking)."""
    return 1 + (values[None, :] > values[:, None]).sum(axis=1)


def _resampled_finals(groups: list[SeedGroup], n: int, seed: int) -> np.ndarray:
    """(groups, n) mean final score of each group in each two-level resample."""
    records = [r for g in groups for r in g.records]
    for record in records:
        if not has_row_scores(record.run_dir):
            raise BoardError(
                f"run {record.run_id}: its row-level artifacts are not on disk ({record.run_dir or 'no run directory'})"
            )
    resampled = resample_runs(
        [load_run(r.run_dir) for r in records], [r.world_seed for r in records], n=n, seed=seed
    )
    if "final_score" not in resampled.stats:
        raise BoardError("the ranked runs have no resampled final score (MIA or MMLU files are missing)")
    finals = resampled.stats["final_score"]
    streams: dict[tuple, np.ndarray] = {}
    out = np.empty((len(groups), n))
    start = 0
    for index, group in enumerate(groups):
        if group.units not in streams:  # the same seed set: the same seeds drawn (paired by seed)
            streams[group.units] = seed_weights(group.size, n, seed, stream=len(streams))
        out[index] = over_seeds(finals[start : start + group.size], streams[group.units])
        start += group.size
    return out


def _formula_means(groups: list[SeedGroup], version: str, mia: bool = True) -> np.ndarray | None:
    values = []
    for group in groups:
        if any(r.terms is None or r.auc is None or r.mmlu_average is None for r in group.records):
            return None
        finals = [
            final_score(np.array(r.terms), r.auc, r.mmlu_average, version, mia=mia) for r in group.records
        ]
        values.append(float(np.mean(finals)))
    return np.array(values)


def _tau(a: np.ndarray, b: np.ndarray | None) -> float | None:
    from scipy.stats import kendalltau

    if b is None:
        return None
    tau = kendalltau(a, b).statistic
    return None if np.isnan(tau) else float(tau)


def board_stability(board: Board, *, n: int = 1000, seed: int = 0) -> Stability:
    """The stability of `board`'s ranked variants (references and rows below the threshold are not ranked)."""
    if n < 1:
        raise BoardError(f"the number of bootstrap resamples must be at least 1, not {n}")
    rows = [row for row in board.ranked if row.rank is not None]
    if len(rows) < 2:
        raise BoardError(
            f"task {board.task}: stability needs at least two ranked variants, found {len(rows)}"
        )
    groups = [row.group for row in rows]
    samples = _resampled_finals(groups, n, seed)
    from scipy.stats import rankdata

    ranks = rankdata(-samples, axis=0, method="average")  # (groups, n), ties share the average rank
    top = samples == samples.max(axis=0, keepdims=True)
    p_first = (top / top.sum(axis=0, keepdims=True)).mean(axis=1)
    v3 = np.array([row.value("final_score") for row in rows], dtype=np.float64)
    v1, v2 = _formula_means(groups, "v1"), _formula_means(groups, "v2")
    no_mia = _formula_means(groups, "v3", mia=False)
    rank_v1, rank_v2, rank_no_mia = (None if m is None else _competition_ranks(m) for m in (v1, v2, no_mia))
    ranked = []
    for i, row in enumerate(rows):
        ranked.append(
            StabilityRow(
                group_id=row.group.group_id,
                submission=row.record.submission_name,
                variant=row.record.variant,
                seeds=row.group.size,
                rank=int(row.rank or 0),
                final_score=float(v3[i]),
                p_rank1=float(p_first[i]),
                expected_rank=float(ranks[i].mean()),
                rank_v1=None if rank_v1 is None else int(rank_v1[i]),
                rank_v2=None if rank_v2 is None else int(rank_v2[i]),
                rank_without_mia=None if rank_no_mia is None else int(rank_no_mia[i]),
            )
        )
    changed = None if rank_no_mia is None else int((rank_no_mia != _competition_ranks(v3)).sum())
    note = "" if v1 is not None else "V1/V2 need every run's 12 terms, AUC and MMLU average"
    return Stability(board.task, tuple(ranked), n, seed, _tau(v3, v1), _tau(v3, v2), changed, note)
