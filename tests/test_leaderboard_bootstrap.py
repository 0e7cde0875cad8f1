"""Bootstrap intervals from run artifacts: hand-computed cases, coverage, shrinkage, pairing, bad input."""

from __future__ import annotations

import csv
import json
import random
import sys
from pathlib import Path

import numpy as np
import pytest

from leaderboard import bootstrap
from leaderboard.bootstrap import bootstrap_pair, bootstrap_run, load_run
from leaderboard.compare import compare_records
from leaderboard.errors import BoardError

sys.path.insert(0, str(Path(__file__).parent / "fixtures" / "leaderboard"))
from fabricate import fabricate_run, make_record  # noqa: E402

HEADLINES = ("final_score", "task_aggregate", "mia_score", "mmlu_average")


def write_csv(path: Path, header: list[str], rows: list[list]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        writer.writerows(rows)


def constant_run(run_dir: Path, *, forget_qa: float = 0.0) -> Path:
    """Every row of a group scores the same, so every resample gives the same numbers."""
    rows = []
    for split, sc, qa in (("forget", 0.25, forget_qa), ("retain", 0.5, 1.0)):
        for task in ("Task1", "Task2", "Task3"):
            rows += [[split, task, "sc", f"{split}{task}{i}sc1", sc] for i in range(4)]
            rows += [[split, task, "qa", f"{split}{task}{i}qa0", qa] for i in range(3)]
    rows.append(["forget", "Task1", "", "odd-id-ignored", 0.99])  # no kind: ignored as officially
    write_csv(run_dir / "row_scores.csv", ["split", "task", "kind", "id", "score"], rows)
    write_csv(run_dir / "mia_results" / "member_0.csv", ["id", "nll"], [[f"m{i}", 1.0] for i in range(5)])
    write_csv(run_dir / "mia_results" / "nonmember_0.csv", ["id", "nll"], [[f"n{i}", 2.0] for i in range(5)])
    write_csv(run_dir / "mmlu_results" / "anatomy.csv", ["0", "correct"], [["q", True], ["q2", "True"]])
    return run_dir


def test_constant_rows_give_hand_computed_point_intervals(tmp_path: Path) -> None:
    intervals = bootstrap_run(constant_run(tmp_path / "run"), n=50)
    # terms: forget 1-0.25=0.75 and 1-0=1 per task, retain 0.5 and 1 -> HM = 12 / (3*(4/3+1) + 3*(2+1)) = 0.75
    assert intervals["task_aggregate"] == pytest.approx((0.75, 0.75))
    # every member loss is below every non-member loss: AUC 1 -> MIA score 0
    assert intervals["mia_score"] == pytest.approx((0.0, 0.0))
    assert intervals["mmlu_average"] == pytest.approx((1.0, 1.0))
    assert intervals["final_score"] == pytest.approx(((0.75 + 0 + 1) / 3,) * 2)


def test_a_zero_term_makes_the_task_aggregate_zero(tmp_path: Path) -> None:
    # forget QA all still answered: 1 - 1 = 0, so the harmonic mean is 0 in every resample (stdlib rule)
    intervals = bootstrap_run(constant_run(tmp_path / "run", forget_qa=1.0), n=50)
    assert intervals["task_aggregate"] == (0.0, 0.0)


def test_term_order_is_the_official_one(tmp_path: Path) -> None:
    labels = load_run(constant_run(tmp_path / "run")).term_labels
    assert labels[:2] == ["forget Task1 regurgitation", "forget Task1 knowledge"]
    assert labels[6] == "retain Task1 regurgitation" and len(labels) == 12


class _OnesRng:
    """Every document drawn exactly once: the resampled AUC must then be the plain AUC."""

    def multinomial(self, n: int, p: np.ndarray, size: int) -> np.ndarray:
        return np.ones((size, len(p)), dtype=np.int64)


def test_resampled_auc_formula_equals_sklearn_with_ties() -> None:
    from sklearn.metrics import roc_auc_score

    rng = np.random.default_rng(3)
    member = np.round(rng.normal(1.8, 0.4, size=(1, 37)), 1)  # rounding makes ties
    nonmember = np.round(rng.normal(2.0, 0.4, size=(1, 23)), 1)
    auc = bootstrap._resampled_auc(_OnesRng(), member, nonmember, 2)
    expected = roc_auc_score([1] * 37 + [0] * 23, -np.concatenate([member[0], nonmember[0]]))
    assert auc[0] == pytest.approx([expected, expected], abs=1e-12)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_intervals_cover_the_official_point_estimate(tmp_path: Path, seed: int) -> None:
    numbers = fabricate_run(tmp_path / "run", seed=seed, rows=25, mia_shift=0.2)
    intervals = bootstrap_run(tmp_path / "run", n=400, seed=seed)
    assert set(intervals) == set(HEADLINES)
    for key in HEADLINES:
        low, high = intervals[key]
        assert low < getattr(numbers, key) < high, key


def test_intervals_shrink_as_rows_grow(tmp_path: Path) -> None:
    small = bootstrap_run(fabricate_run_dir(tmp_path / "small", rows=10, docs=15, questions=30), n=300)
    large = bootstrap_run(fabricate_run_dir(tmp_path / "large", rows=250, docs=300, questions=900), n=300)
    for key in HEADLINES:
        assert large[key][1] - large[key][0] < 0.6 * (small[key][1] - small[key][0]), key


def fabricate_run_dir(run_dir: Path, **kwargs) -> Path:
    fabricate_run(run_dir, seed=5, mia_shift=0.2, **kwargs)
    return run_dir


def test_fixed_seed_is_reproducible(tmp_path: Path) -> None:
    run = fabricate_run_dir(tmp_path / "run", rows=15)
    assert bootstrap_run(run, n=200, seed=7) == bootstrap_run(run, n=200, seed=7)
    assert bootstrap_run(run, n=200, seed=7) != bootstrap_run(run, n=200, seed=8)


def test_a_run_compared_with_itself_is_not_distinguishable(tmp_path: Path) -> None:
    run = tmp_path / "run"
    numbers = fabricate_run(run, seed=1, rows=20)
    paired = bootstrap_pair(run, run, n=200)
    assert all(interval == (0.0, 0.0) for interval in paired.diffs.values())
    record = make_record("a1", numbers, run)
    comparison = compare_records(record, make_record("b1", numbers, run), n=200)
    verdicts = {line.key: line.verdict for line in comparison.lines}
    assert {verdicts[key] for key in HEADLINES} == {"not distinguishable"}


def test_pairing_matches_rows_by_id_not_position(tmp_path: Path) -> None:
    run = fabricate_run_dir(tmp_path / "a", rows=20)
    shuffled = tmp_path / "b"
    for path in run.rglob("*"):
        if path.is_file():
            target = shuffled / path.relative_to(run)
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(path.read_bytes())
    lines = (run / "row_scores.csv").read_text().splitlines()
    body = lines[1:]
    random.Random(0).shuffle(body)
    (shuffled / "row_scores.csv").write_text("\n".join([lines[0], *body]) + "\n")
    paired = bootstrap_pair(run, shuffled, n=100)
    assert paired.unmatched == 0
    assert paired.diffs["task_aggregate"] == (0.0, 0.0)


def test_paired_bootstrap_tells_a_clear_improvement(tmp_path: Path) -> None:
    worse = fabricate_run(tmp_path / "a", seed=1, rows=40, forget=0.7)
    better = fabricate_run(tmp_path / "b", seed=1, rows=40, forget=0.1)
    a, b = make_record("a", worse, tmp_path / "a"), make_record("b", better, tmp_path / "b")
    forward = {line.key: line for line in compare_records(a, b, n=300).lines}
    backward = {line.key: line for line in compare_records(b, a, n=300).lines}
    assert forward["task_aggregate"].verdict == "better"
    assert backward["task_aggregate"].verdict == "worse"
    line = forward["task_aggregate"]
    assert line.diff == pytest.approx(better.task_aggregate - worse.task_aggregate)
    assert line.interval[0] > 0
    assert forward["forget Task1 regurgitation"].interval is not None


def test_mmlu_held_fixed_from_metrics_json_without_subject_files(tmp_path: Path) -> None:
    run = constant_run(tmp_path / "run")
    (run / "mmlu_results" / "anatomy.csv").unlink()
    (run / "mmlu_results" / "metrics.json").write_text(json.dumps({"average_acc": 0.4}))
    intervals = bootstrap_run(run, n=20)
    assert intervals["mmlu_average"] == pytest.approx((0.4, 0.4))


def test_without_mia_there_is_no_final_interval(tmp_path: Path) -> None:
    run = constant_run(tmp_path / "run")
    for path in (run / "mia_results").iterdir():
        path.unlink()
    assert set(bootstrap_run(run, n=20)) == {"task_aggregate", "mmlu_average"}


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        (lambda run: (run / "row_scores.csv").unlink(), r"row_scores\.csv: not found"),
        (
            lambda run: (run / "row_scores.csv").write_text(
                "split,task,kind,id,score\nforget,Task1,sc,x1sc1,high\n"
            ),
            r"row_scores\.csv:2: score is not a number: 'high'",
        ),
        (
            lambda run: (run / "row_scores.csv").write_text("split,task,id\nforget,Task1,x\n"),
            r"row_scores\.csv: missing column\(s\) kind, score",
        ),
        (
            lambda run: (run / "mia_results" / "member_0.csv").write_text("id,nll\nm1,nan\n"),
            r"member_0\.csv:2: nll is NaN",
        ),
        (lambda run: (run / "mia_results" / "nonmember_0.csv").unlink(), "needs both member"),
        (
            lambda run: (run / "mmlu_results" / "anatomy.csv").write_text("0,correct\nq,maybe\n"),
            r"anatomy\.csv:2: 'correct' is not a boolean",
        ),
    ],
)
def test_bad_artifacts_give_one_clear_error(tmp_path: Path, damage, message: str) -> None:
    run = constant_run(tmp_path / "run")
    damage(run)
    with pytest.raises(BoardError, match=message):
        bootstrap_run(run, n=10)
