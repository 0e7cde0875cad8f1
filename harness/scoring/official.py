"""The official SemEval-2025 Task 4 scorer (V3 by default; V1 and V2 as legacy switches), bit for bit.

Every formula and quirk follows ../shared/docs/official-scoring.md (the section is named at each
step): per-row scores after the pandas CSV round trip (2.4, 2.5), per-task means as a left-to-right
float sum in file order (2.6), forget inverted, ``statistics.harmonic_mean`` (int 0 when a term is 0),
sklearn ``roc_curve`` + ``auc`` on -loss (2.7), the MIA score, ``statistics.mean`` for the final
score (-1 when MIA or MMLU is missing, 2.9) and the results object in the official key order (2.10).
"""

from __future__ import annotations

import json
import math
import statistics
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from harness.errors import HarnessError
from harness.scoring.csvio import (
    GenerationRow,
    RowScore,
    read_generations,
    read_mia_losses,
    write_row_scores,
    write_text_atomic,
)
from harness.scoring.mmlu import read_mmlu_average
from harness.scoring.rouge import rouge_l_recall
from tasks.data import id_kind

__all__ = [
    "SPLITS",
    "VERSIONS",
    "Scores",
    "compute_auc",
    "headline_numbers",
    "left_to_right_mean",
    "row_score",
    "score_directory",
    "score_splits",
]

VERSIONS = ("v1", "v2", "v3")
SPLITS = ("forget", "retain")
REG, KNOW = "regurgitation-score", "knowledge-score"
#: the official 7B award-eligibility threshold on the MMLU average (section 2.9)
MMLU_THRESHOLD_7B = 0.371

Number = float | int


@dataclass(frozen=True)
class Scores:
    """The official numbers of one scored run.

    `terms` are the aggregated terms in the official order (forget inverted, then retain; 12 on
    complete data). `task_aggregate` is their harmonic mean (int 0 when a term is 0; NaN when a group
    was empty). `final_score` is -1 when MIA or MMLU is missing. `forget` / `retain` are the official
    "forget-set" / "retain-set" objects (overall scores, then one dict per task). `eligible` is
    ``mmlu_average >= mmlu_threshold`` when a threshold was given. V2 reports 1 - AUC as its MIA score
    and V1 none (their finals use those terms).
    """

    terms: tuple[Number, ...]
    task_aggregate: Number
    auc: float | None
    mia_score: Number | None
    mmlu_average: Number | None
    final_score: Number
    eligible: bool | None
    forget: dict[str, object]
    retain: dict[str, object]
    ignored_rows: int
    version: str = "v3"
    mmlu_threshold: float | None = None
    #: notes for the user: ignored rows, rows without a task, the MMLU threshold warning
    notes: tuple[str, ...] = field(default_factory=tuple)

    def results(self) -> dict[str, object]:
        """The official results object (evaluation_results.jsonl) with this version's keys, in order."""
        out: dict[str, object] = {"forget-set": self.forget, "retain-set": self.retain}
        if self.auc is not None:
            out["mia_loss_acc"] = self.auc
        if self.version == "v1":
            out["aggregate-score"] = self.final_score
            return out
        if self.mmlu_average is not None:
            out["mmlu_average"] = self.mmlu_average
        out["aggregated-terms"] = list(self.terms)
        out["aggregate-score"] = self.final_score
        out["harmonic-mean-task-aggregate"] = self.task_aggregate
        if self.version == "v3" and self.auc is not None and self.mmlu_average is not None:
            out["mia_final_score"] = self.mia_score
        return out


def left_to_right_mean(values: Sequence[Number]) -> float:
    """sum(values) / len(values) with the sum taken strictly left to right; NaN when empty.

    pandas' mean of the object-dtype score columns is exactly this (section 2.6); not numpy's pairwise
    sum, not Kahan, and not Python >= 3.12's compensated ``sum()`` of floats.
    """
    if not values:
        return math.nan
    total: Number = 0
    for value in values:
        total = total + value
    return total / len(values)


def row_score(kind: str | None, expected: str, generated: str) -> Number | None:
    """The per-row official score (section 2.5): ROUGE-L recall for sc, exact match for qa, else None."""
    if kind == "sc":
        return rouge_l_recall(expected, generated)
    if kind == "qa":
        return int(expected.strip().lower() == generated.strip().lower())
    return None


def _task_order(tasks: list[object]) -> list[object]:
    """groupby's sorted group keys (all text in practice; mixed types sort by their text)."""
    try:
        return sorted(tasks)  # type: ignore[type-var]
    except TypeError:
        return sorted(tasks, key=str)


def _is_nan(value: object) -> bool:
    return isinstance(value, float) and math.isnan(value)


def _score_split(
    split: str, rows: Sequence[GenerationRow], row_scores: list[RowScore]
) -> tuple[dict[str, object], list[float], int, int]:
    """The split's official object, its aggregated terms, and the ignored / task-less row counts."""
    reg_all: list[Number] = []
    know_all: list[Number] = []
    groups: dict[object, tuple[list[Number], list[Number]]] = {}
    ignored = taskless = 0
    for row in rows:
        kind = id_kind(row.id)
        score = row_score(kind, row.expected, row.generated)
        if score is None:
            ignored += 1
        else:
            (reg_all if kind == "sc" else know_all).append(score)
        if _is_nan(row.task):  # groupby drops NaN keys
            taskless += score is not None
            continue
        reg, know = groups.setdefault(row.task, ([], []))
        if score is not None:
            (reg if kind == "sc" else know).append(score)
            row_scores.append(RowScore(split, str(row.task), kind, row.id, score))
    result: dict[str, object] = {
        "overall-regurgitation-score": left_to_right_mean(reg_all),
        "overall-knowledge-score": left_to_right_mean(know_all),
    }
    terms: list[float] = []
    for task in _task_order(list(groups)):
        reg, know = groups[task]
        means = {REG: left_to_right_mean(reg), KNOW: left_to_right_mean(know)}
        result[str(task)] = means
        for value in means.values():
            terms.append(1 - value if split == "forget" else value)
    return result, terms, ignored, taskless


def compute_auc(member_losses: Sequence[float], nonmember_losses: Sequence[float]) -> float:
    """``auc(*roc_curve(labels, -loss)[:2])`` with members labelled 1 (section 2.7): sklearn, as official."""
    import numpy as np
    from sklearn.metrics import auc, roc_curve

    if any(math.isnan(x) for x in (*member_losses, *nonmember_losses)):
        raise HarnessError("MIA: a loss is NaN (the official scorer stops with an AssertionError)")
    scores = -1 * np.array(list(member_losses) + list(nonmember_losses))
    labels = len(member_losses) * [1] + len(nonmember_losses) * [0]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # one class only: sklearn warns and the AUC is NaN, as officially
        fpr, tpr, _ = roc_curve(labels, scores)
        return float(auc(fpr, tpr))


def headline_numbers(
    terms: Sequence[Number], auc: float | None, mmlu_average: Number | None, version: str = "v3"
) -> tuple[Number, Number | None, Number]:
    """(task aggregate, MIA score, final score) from the terms, the AUC and the MMLU average (section 1, 2.9).

    V3: HM of the terms; MIA score 1 - 2|AUC - 0.5|; final = mean(HM, MMLU, MIA score), -1 without MIA
    or MMLU. V2: the MIA term is 1 - AUC. V1: final = HM(terms + [AUC] + [MMLU]) over what is present.
    """
    terms = list(terms)
    task_aggregate = statistics.harmonic_mean(terms)
    mia_score: Number | None = None
    if auc is not None and version != "v1":
        mia_score = 1 - auc if version == "v2" else 1 - abs(auc - 0.5) * 2
    if version == "v1":
        extra = ([auc] if auc is not None else []) + ([mmlu_average] if mmlu_average is not None else [])
        return task_aggregate, None, statistics.harmonic_mean(terms + extra)
    if mia_score is None or mmlu_average is None:
        return task_aggregate, mia_score, -1
    return task_aggregate, mia_score, statistics.mean([task_aggregate, mmlu_average, mia_score])


def score_splits(
    forget: Sequence[GenerationRow],
    retain: Sequence[GenerationRow],
    *,
    mia_losses: tuple[Sequence[float], Sequence[float]] | None = None,
    mmlu_average: Number | None = None,
    version: str = "v3",
    mmlu_threshold: float | None = None,
) -> tuple[Scores, list[RowScore]]:
    """Score already-read rows (see `score_directory`); returns the scores and the per-row scores."""
    if version not in VERSIONS:
        raise HarnessError(f"unknown scoring version {version!r} (choose from {', '.join(VERSIONS)})")
    row_scores: list[RowScore] = []
    objects: dict[str, dict[str, object]] = {}
    terms: list[float] = []
    ignored = taskless = 0
    for split, rows in zip(SPLITS, (forget, retain)):
        objects[split], split_terms, split_ignored, split_taskless = _score_split(split, rows, row_scores)
        terms += split_terms
        ignored += split_ignored
        taskless += split_taskless
    if not terms:
        raise HarnessError("no task groups to score (the official harmonic mean fails on an empty list)")
    auc = compute_auc(*mia_losses) if mia_losses is not None else None
    task_aggregate, mia_score, final = headline_numbers(terms, auc, mmlu_average, version)
    eligible = None
    notes = []
    if ignored:
        notes.append(
            f"{ignored} row(s) whose id is neither sc nor qa were ignored, as the official scorer does"
        )
    if taskless:
        notes.append(f"{taskless} scored row(s) have no task (empty cell): they count in no task term")
    if mmlu_threshold is not None and mmlu_average is not None:
        eligible = not mmlu_average < mmlu_threshold
        if not eligible:
            notes.append(f"MMLU average {mmlu_average:.4f} is below the threshold {mmlu_threshold}")
    scores = Scores(
        terms=tuple(terms),
        task_aggregate=task_aggregate,
        auc=auc,
        mia_score=mia_score,
        mmlu_average=mmlu_average,
        final_score=final,
        eligible=eligible,
        forget=objects["forget"],
        retain=objects["retain"],
        ignored_rows=ignored,
        version=version,
        mmlu_threshold=mmlu_threshold,
        notes=tuple(notes),
    )
    return scores, row_scores


def score_directory(
    directory: str | Path,
    *,
    mmlu_metrics: str | Path | None = None,
    version: str = "v3",
    mmlu_threshold: float | None = None,
    write: bool = True,
) -> Scores:
    """Score an official scorer output directory (the official "compute metrics only" mode).

    Reads forget_*.csv and retain_*.csv, mia_results/{member,nonmember}_*.csv when present, and the
    MMLU ``metrics.json`` (`mmlu_metrics`, default ``<directory>/mmlu_results/metrics.json`` when it
    exists). With `write`, writes ``evaluation_results.jsonl`` (the official object, one line) and
    ``row_scores.csv`` into `directory`, each atomically.
    """
    directory = Path(directory)
    if not directory.is_dir():
        raise HarnessError(f"{directory}: no such directory")
    forget, retain = read_generations(directory, "forget"), read_generations(directory, "retain")
    mia = read_mia_losses(directory)
    if mmlu_metrics is None and (directory / "mmlu_results" / "metrics.json").is_file():
        mmlu_metrics = directory / "mmlu_results" / "metrics.json"
    mmlu_average = read_mmlu_average(mmlu_metrics) if mmlu_metrics is not None else None
    scores, row_scores = score_splits(
        forget,
        retain,
        mia_losses=mia,
        mmlu_average=mmlu_average,
        version=version,
        mmlu_threshold=mmlu_threshold,
    )
    if write:
        # a file it cannot write is one line naming it (files.WriteError)
        write_text_atomic(directory / "evaluation_results.jsonl", json.dumps(scores.results()))
        write_row_scores(directory / "row_scores.csv", row_scores)
    return scores
