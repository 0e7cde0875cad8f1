"""`evaluate(limit=N)`, the partial evaluation behind --limit: the first N rows per split, MIA documents per
side and MMLU test questions per subject; the exact and the fast path agree under it, its rows are the full
evaluation's first rows, and the limit is part of the cache key (a full evaluation's key is unchanged)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
from test_engine import _assert_same_artifacts

from harness.errors import HarnessError
from harness.inference import cache, evaluate
from tasks.data import read_mia, read_mmlu, read_rows

LIMIT = 4


def _frames(run_dir: Path) -> dict[str, pd.DataFrame]:
    files = sorted(p for p in run_dir.rglob("*.csv") if p.name != "row_scores.csv")
    return {
        str(p.relative_to(run_dir)): pd.read_csv(p, dtype={"id": str}, keep_default_na=False) for p in files
    }


@pytest.fixture(scope="module")
def limited_runs(tiny_task, tmp_path_factory: pytest.TempPathFactory):
    """The tiny target evaluated under --limit 4 by both paths, and in full by the fast path."""
    root = tmp_path_factory.mktemp("limited")
    model = tiny_task.model_dir
    return {
        "exact": evaluate(model, tiny_task, root / "exact", exact=True, use_cache=False, progress=False, limit=LIMIT),
        "fast": evaluate(model, tiny_task, root / "fast", use_cache=False, progress=False, limit=LIMIT),
        "full": evaluate(model, tiny_task, root / "full", progress=False),  # cached after the first session
    }  # fmt: skip


def test_a_limited_evaluation_reads_the_first_rows_of_every_file(limited_runs, tiny_task) -> None:
    frames = _frames(limited_runs["fast"].run_dir)
    for split in ("forget", "retain"):
        rows = read_rows(getattr(tiny_task, f"eval_{split}"))
        assert len(rows) > LIMIT
        assert frames[f"{split}_0.csv"]["id"].tolist() == [r.id for r in rows[:LIMIT]]
    for side in ("member", "nonmember"):
        docs = read_mia(getattr(tiny_task, f"mia_{side}"))
        assert len(docs) > LIMIT
        assert frames[f"mia_results/{side}_0.csv"]["id"].tolist() == [d.id for d in docs[:LIMIT]]
    subjects = read_mmlu(tiny_task.mmlu_dir, tiny_task.mmlu_subjects)
    for subject in subjects:
        assert len(subject.test) > LIMIT
        frame = frames[f"mmlu_results/{subject.name}.csv"]
        assert frame["0"].tolist() == [item.question for item in subject.test[:LIMIT]]
    full = _frames(limited_runs["full"].run_dir)
    assert len(full["forget_0.csv"]) == len(read_rows(tiny_task.eval_forget))  # the full run is whole


def test_exact_and_fast_paths_agree_under_the_same_limit(limited_runs) -> None:
    exact, fast = limited_runs["exact"], limited_runs["fast"]
    _assert_same_artifacts(exact.run_dir, fast.run_dir)
    assert fast.scores.results() == exact.scores.results()


def test_a_limited_evaluation_gives_the_full_evaluations_first_rows(limited_runs) -> None:
    limited, full = _frames(limited_runs["fast"].run_dir), _frames(limited_runs["full"].run_dir)
    assert sorted(limited) == sorted(full)
    for name, frame in limited.items():
        head = full[name].head(LIMIT)
        for column in frame.columns:
            if column == "nll" or column.endswith("_probs"):  # another batch shape: float rounding only
                assert frame[column].tolist() == pytest.approx(head[column].tolist(), rel=1e-4, abs=1e-5)
            else:
                assert frame[column].tolist() == head[column].tolist(), (name, column)


def test_the_limit_is_part_of_the_cache_key(tiny_task, tmp_path: Path, monkeypatch) -> None:
    keys: list[tuple[dict, str]] = []
    real = cache.eval_key

    def spy(checkpoint_dir, data_paths, settings):
        key = real(checkpoint_dir, data_paths, settings)
        keys.append((dict(settings), key))
        return key

    monkeypatch.setattr(cache, "eval_key", spy)
    for limit in (None, LIMIT, 2):
        evaluate(tiny_task.model_dir, tiny_task, tmp_path / f"run-{limit}", progress=False, limit=limit)
    (full_settings, full), (limited_settings, limited), (_, two) = keys
    assert len({full, limited, two}) == 3
    assert "limit" not in full_settings and limited_settings["limit"] == LIMIT
    # a full evaluation keeps the key it had before --limit existed: the same settings less "limit"
    assert real(tiny_task.model_dir, [], {k: v for k, v in limited_settings.items() if k != "limit"}) == real(
        tiny_task.model_dir, [], full_settings
    )
    again = evaluate(tiny_task.model_dir, tiny_task, tmp_path / "again", progress=False, limit=LIMIT)
    assert again.cached and len(_frames(again.run_dir)["forget_0.csv"]) == LIMIT


@pytest.mark.parametrize("limit", [0, -1, True, 2.5])
def test_a_bad_limit_is_one_line(tiny_task, tmp_path: Path, limit) -> None:
    with pytest.raises(HarnessError, match="--limit must be a positive integer"):
        evaluate(tiny_task.model_dir, tiny_task, tmp_path, progress=False, limit=limit)
