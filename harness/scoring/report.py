"""Showing scores: the rich table of the 12 terms and the headline numbers, and the official JSON object."""

from __future__ import annotations

import math

from rich.console import Console
from rich.table import Table

from harness.scoring.official import KNOW, REG, SPLITS, Scores
from leaderboard.compare import HEADLINE_LABELS

__all__ = ["render_scores"]


def _fmt(value: object) -> str:
    if value is None:
        return "-"
    if isinstance(value, float) and math.isnan(value):
        return "NaN"
    if isinstance(value, int | float) and not isinstance(value, bool):
        return f"{value:.4f}" if isinstance(value, float) else str(value)
    return str(value)


def _term_rows(scores: Scores) -> list[tuple[str, str, str, object, object]]:
    """(split, task, kind, raw mean, term) for each aggregated term, in the official order."""
    rows = []
    terms = iter(scores.terms)
    for split, obj in zip(SPLITS, (scores.forget, scores.retain)):
        for task, means in obj.items():
            if not isinstance(means, dict):
                continue  # the overall-* entries
            for key, kind in (
                (REG, "regurgitation (sc, ROUGE-L recall)"),
                (KNOW, "knowledge (qa, exact match)"),
            ):
                rows.append((split, task, kind, means[key], next(terms, None)))
    return rows


def render_scores(scores: Scores, console: Console) -> None:
    """Print the 12 terms (raw mean and the term that enters the harmonic mean) and the headline numbers."""
    terms = Table(
        title=f"Aggregated terms (official {scores.version.upper()} order; forget terms are 1 - mean)"
    )
    for name, justify in (
        ("split", "left"),
        ("task", "left"),
        ("score", "left"),
        ("mean", "right"),
        ("term", "right"),
    ):
        terms.add_column(name, justify=justify)  # type: ignore[arg-type]
    for split, task, kind, mean, term in _term_rows(scores):
        terms.add_row(split, task, kind, _fmt(mean), _fmt(term))
    console.print(terms)

    head = Table(title="Headline numbers", show_header=True)
    head.add_column("number")
    head.add_column("value", justify="right")
    head.add_column("best", justify="left")
    label = HEADLINE_LABELS  # the board's names of the headline numbers, with how each is computed
    head.add_row(f"{label['task_aggregate']} (harmonic mean of the terms)", _fmt(scores.task_aggregate), "1")
    head.add_row(f"{label['auc']} (members vs non-members, loss attack)", _fmt(scores.auc), "0.5")
    if scores.version == "v3":
        head.add_row(f"{label['mia_score']} (1 - 2|AUC - 0.5|)", _fmt(scores.mia_score), "1")
    elif scores.version == "v2":
        head.add_row("MIA term (1 - AUC, V2)", _fmt(scores.mia_score), "1")
    head.add_row(label["mmlu_average"], _fmt(scores.mmlu_average), "1")
    final = "-1 (needs MIA and MMLU)" if scores.final_score == -1 else _fmt(scores.final_score)
    head.add_row(f"{label['final_score']} ({scores.version.upper()})", final, "1")
    if scores.eligible is not None:
        verdict = "yes" if scores.eligible else "no"
        head.add_row(f"eligible (MMLU >= {scores.mmlu_threshold})", verdict, "")
    console.print(head)
    for note in scores.notes:
        console.print(f"note: {note}")
