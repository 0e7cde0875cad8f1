"""The leaderboard against the official scorer: the bootstrap reads what score_directory writes, and the
array formulas (leaderboard.formulas) give harness.scoring's headline numbers for V1, V2 and V3."""

from __future__ import annotations

import csv
import json
import random
from pathlib import Path

import numpy as np
import pytest

from leaderboard import formulas
from leaderboard.bootstrap import bootstrap_run, load_run

EXPECTED_SC = "the quick brown fox jumps over the lazy dog near the river bank"
OUTPUTS_SC = [
    EXPECTED_SC,
    "the quick brown fox sleeps",
    "a dog near a river",
    "nothing in common here",
    "quick fox lazy dog river",
]


def write(path: Path, header: list[str], rows: list[list]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        writer.writerows(rows)


def official_output_dir(root: Path) -> Path:
    """An official scorer output directory (spec 2.1-2.8 layout) with varied generations."""
    header = ["id", "task", "input", "expected_output", "model_output", "nll"]
    for split, shift in (("forget", 1), ("retain", 3)):
        rows = []
        for t in (1, 2, 3):
            for i in range(10):
                output = OUTPUTS_SC[(i + shift + t) % len(OUTPUTS_SC)]
                rows.append([f"{split}{t}d{i}sc1", f"Task{t}", "prompt", EXPECTED_SC, output, 1.5])
                answer = "Paris" if (i + shift * t) % 3 else "London"
                rows.append([f"{split}{t}d{i}qa0", f"Task{t}", "question?", "Paris", answer, 1.2])
        write(root / f"{split}_0.csv", header, rows)
    write(
        root / "mia_results" / "member_0.csv", ["id", "nll"], [[f"m{i}", 1.0 + 0.05 * i] for i in range(20)]
    )
    write(
        root / "mia_results" / "nonmember_0.csv",
        ["id", "nll"],
        [[f"n{i}", 1.3 + 0.05 * i] for i in range(20)],
    )
    mmlu_rows = [["q", "a", "b", "c", "d", "A", i % 3 != 0, 0.1, 0.1, 0.1, 0.1] for i in range(30)]
    write(
        root / "mmlu_results" / "anatomy.csv",
        ["0", "1", "2", "3", "4", "5", "correct"] + [f"choice{c}_probs" for c in "ABCD"],
        mmlu_rows,
    )
    (root / "mmlu_results" / "metrics.json").write_text(json.dumps({"average_acc": 20 / 30}))
    return root


def test_bootstrap_reads_score_directory_output(tmp_path: Path) -> None:
    from harness.scoring import score_directory

    directory = official_output_dir(tmp_path / "run")
    scores = score_directory(directory)
    assert (directory / "row_scores.csv").is_file()
    run = load_run(directory)
    assert len(run.groups) == len(scores.terms) == 12
    # the per-row scores average back to the official terms (forget inverted)
    for group, term in zip(run.groups, scores.terms):
        mean = float(group.scores.mean())
        assert (1 - mean if group.split == "forget" else mean) == pytest.approx(term, abs=1e-12), group.label
    intervals = bootstrap_run(directory, n=500)
    for key in ("final_score", "task_aggregate", "mia_score", "mmlu_average"):
        low, high = intervals[key]
        assert low <= getattr(scores, key) <= high, key


def random_cases(count: int) -> list[tuple[list[float], float, float]]:
    rng = random.Random(11)
    cases = []
    for i in range(count):
        terms = [rng.choice([0.0, 1.0, rng.random()]) if i % 4 == 0 else rng.random() for _ in range(12)]
        cases.append((terms, rng.random(), rng.random()))
    cases.append(([0.5] * 12, 0.5, 0.4))
    cases.append(([1.0] * 11 + [0.0], 1.0, 0.0))
    return cases


@pytest.mark.parametrize("version", ["v1", "v2", "v3"])
def test_the_array_formulas_are_the_scorers(version: str) -> None:
    """leaderboard.formulas (vectorised, for the bootstrap) against harness.scoring (stdlib, bit-exact)."""
    from harness.scoring.official import headline_numbers

    cases = random_cases(200)
    terms = np.array([c[0] for c in cases])
    auc, mmlu = np.array([c[1] for c in cases]), np.array([c[2] for c in cases])
    finals = formulas.final_score(terms, auc, mmlu, version)
    hms = formulas.harmonic_mean(terms)
    zero_seen = False
    for i, (t, a, m) in enumerate(cases):
        task_aggregate, mia, final = headline_numbers(t, a, m, version)
        zero_seen |= task_aggregate == 0
        assert hms[i] == pytest.approx(task_aggregate, abs=1e-12)
        assert finals[i] == pytest.approx(final, abs=1e-12)
        if version != "v1":
            assert formulas.mia_score(a, version) == mia  # the same operations: bit-exact on floats
    assert zero_seen  # the zero-term rule was exercised
