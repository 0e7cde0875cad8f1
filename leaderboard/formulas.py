"""The official headline formulas in array form: the one home of the leaderboard's harmonic mean, MIA score
and final score (V1, V2, V3), used by the bootstrap, the seed-group aggregates and `board stability`.

A leaf module (numpy only), so both layers can use it: the leaderboard may not import harness (DESIGN.md).
harness.scoring stays the bit-exact reference for one run's numbers: it uses stdlib ``statistics``
(exactly rounded sums, int 0 for a zero term) as the official scorer does, which cannot be vectorised over
thousands of resamples. These functions take arrays of any shape (resamples x terms, seeds x resamples) and
agree with harness.scoring.official.headline_numbers to 1e-12 for every version, zero terms included
(tests/test_leaderboard_scoring_contract.py ties the two together). Spec: ../shared/docs/official-scoring.md
sections 1 (versions), 2.6 (harmonic mean), 2.7 (MIA score) and 2.9 (final score).
"""

from __future__ import annotations

import numpy as np

VERSIONS = ("v1", "v2", "v3")


def harmonic_mean(terms: np.ndarray) -> np.ndarray:
    """HM over the last axis; 0 where any term is 0 (the stdlib rule the official scorer inherits, 2.6)."""
    terms = np.asarray(terms, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        hm = terms.shape[-1] / np.sum(1.0 / terms, axis=-1)
    return np.where(np.any(terms == 0, axis=-1), 0.0, hm)


def mia_score(auc: np.ndarray | float, version: str = "v3") -> np.ndarray | float:
    """V3: 1 - 2|AUC - 0.5| (2.7); V2: 1 - AUC. Works on floats as on arrays (same operations)."""
    if version == "v2":
        return 1 - auc
    if version == "v3":
        return 1 - abs(auc - 0.5) * 2
    raise ValueError(f"version {version!r} has no MIA score (V1 uses the AUC itself)")


def final_score(
    terms: np.ndarray, auc: np.ndarray, mmlu: np.ndarray, version: str = "v3", *, mia: bool = True
) -> np.ndarray:
    """The final score from terms (..., 12), AUC (...) and MMLU average (...) (section 2.9).

    V3 / V2: mean of (HM, MMLU, MIA score of that version); V1: HM of the terms, the AUC and the MMLU
    average together. ``mia=False`` drops the MIA term (the mean of HM and MMLU; V1: HM of terms and MMLU),
    which `board stability` uses to show how much of a ranking the MIA term decides.
    """
    terms = np.asarray(terms, dtype=np.float64)
    auc, mmlu = np.asarray(auc, dtype=np.float64), np.asarray(mmlu, dtype=np.float64)
    if version == "v1":
        extra = [auc[..., None]] if mia else []
        return harmonic_mean(np.concatenate([terms, *extra, mmlu[..., None]], axis=-1))
    if version not in VERSIONS:
        raise ValueError(f"unknown scoring version {version!r} (choose from {', '.join(VERSIONS)})")
    hm = harmonic_mean(terms)
    if not mia:
        return (hm + mmlu) / 2.0
    return final_from_parts(hm, mmlu, mia_score(auc, version))


def final_from_parts(task_aggregate: np.ndarray, mmlu: np.ndarray, mia: np.ndarray) -> np.ndarray:
    """V2 / V3 final score: the mean of the task aggregate, the MMLU average and the MIA score (2.9)."""
    return (task_aggregate + mmlu + mia) / 3.0
