"""Official scoring of SemEval-2025 Task 4 (V3, with V1/V2 as legacy switches), bit for bit.

`score_directory` scores an official scorer output directory and writes evaluation_results.jsonl and
row_scores.csv; `Scores` is what it returns. See official.py for the formulas, csvio.py for the files,
rouge.py for ROUGE-L, mmlu.py for the MMLU aggregation and report.py for the table and JSON.
"""

from harness.scoring.mmlu import aggregate_mmlu, read_mmlu_average
from harness.scoring.official import (
    MMLU_THRESHOLD_7B,
    VERSIONS,
    Scores,
    compute_auc,
    score_directory,
    score_splits,
)

__all__ = [
    "MMLU_THRESHOLD_7B",
    "VERSIONS",
    "Scores",
    "aggregate_mmlu",
    "compute_auc",
    "read_mmlu_average",
    "score_directory",
    "score_splits",
]
