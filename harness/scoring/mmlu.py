"""The MMLU term: open-instruct's metrics.json aggregation and reading ``average_acc`` back.

open-instruct (official-scoring.md section 4) concatenates the per-question correctness arrays and
takes numpy means: ``average_acc`` over every question (a micro average), ``subcat_acc`` per
subcategory in order of first appearance walking the subject mapping, ``cat_acc`` per category. A
mean of booleans is count / n correctly rounded, which Python's int division gives exactly.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path

from harness.errors import HarnessError
from tasks.data import MMLU_CATEGORIES

__all__ = ["aggregate_mmlu", "read_mmlu_average"]


def _accuracy(arrays: Sequence[Sequence[bool]]) -> float:
    total = sum(len(a) for a in arrays)
    return sum(int(bool(x)) for a in arrays for x in a) / total


def aggregate_mmlu(per_subject_correct: Mapping[str, Sequence[bool]]) -> dict[str, object]:
    """open-instruct's metrics.json from each subject's per-question correctness (in any order).

    Subcategories and categories with no evaluated subject are left out (open-instruct itself fails on
    them; they only occur when a task evaluates a subset of subjects). A subject outside the MMLU
    mapping counts in ``average_acc`` only.
    """
    if not per_subject_correct or not any(len(v) for v in per_subject_correct.values()):
        raise HarnessError("MMLU: no answered questions to aggregate")
    subjects = sorted(per_subject_correct)
    subcat: dict[str, list[Sequence[bool]]] = {s: [] for s in MMLU_CATEGORIES.subcategory_order()}
    cat: dict[str, list[Sequence[bool]]] = {c: [] for c in MMLU_CATEGORIES.categories}
    for subject in subjects:
        correct = per_subject_correct[subject]
        for name in MMLU_CATEGORIES.subcategories.get(subject, ()):
            subcat[name].append(correct)
            for category, members in MMLU_CATEGORIES.categories.items():
                if name in members:
                    cat[category].append(correct)
    return {
        "average_acc": _accuracy([per_subject_correct[s] for s in subjects]),
        "subcat_acc": {name: _accuracy(arrays) for name, arrays in subcat.items() if sum(map(len, arrays))},
        "cat_acc": {name: _accuracy(arrays) for name, arrays in cat.items() if sum(map(len, arrays))},
    }


def read_mmlu_average(path: str | os.PathLike[str]) -> float:
    """``json.load(metrics.json)["average_acc"]``, as the official scorer reads it (section 2.8)."""
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise HarnessError(f"{path}: MMLU metrics file not found") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise HarnessError(f"{path}: cannot read the MMLU metrics file: {exc}") from None
    except json.JSONDecodeError as exc:
        raise HarnessError(f"{path}:{exc.lineno}: not valid JSON ({exc.msg})") from None
    if not isinstance(data, dict) or "average_acc" not in data:
        raise HarnessError(f"{path}: no 'average_acc' key (expected open-instruct's MMLU metrics.json)")
    value = data["average_acc"]
    if isinstance(value, bool) or not isinstance(value, int | float) or math.isnan(value):
        raise HarnessError(f"{path}: 'average_acc' must be a number, got {value!r}")
    return value
