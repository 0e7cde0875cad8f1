"""An output path the harness cannot write (here: under a plain file) ends each command in one line naming it,
exit status 2, before any long work: `score --run-dir`, `run --results`, `audit --run-dir`, `board --output`."""

from __future__ import annotations

from pathlib import Path

import pytest
from test_runner_cli import invoke


@pytest.fixture
def blocker(tmp_path: Path) -> Path:
    path = tmp_path / "taken"
    path.write_text("a file where a folder should be")
    return path


def _never(*args, **kwargs):
    raise AssertionError("the long work started")


def test_score_fails_before_the_evaluation(tiny_task, blocker, capsys, monkeypatch) -> None:
    import harness.inference

    monkeypatch.setattr(harness.inference, "evaluate", _never)
    code, out, err = invoke(
        ["score", str(tiny_task.model_dir), "--task", "tiny", "--run-dir", str(blocker / "run")], capsys
    )
    assert (code, out) == (2, "")
    assert err == f"error: {blocker / 'run'}: cannot create this folder: {blocker} is a file, not a folder\n"


def test_run_fails_before_the_entry_runs(tiny_task, blocker, capsys, monkeypatch) -> None:
    from harness import sandbox

    monkeypatch.setattr(sandbox, "run", _never)
    submission = Path(__file__).resolve().parents[1] / "submissions" / "ga.py"
    results = blocker / "results"
    code, out, err = invoke(["run", str(submission), "--task", "tiny", "--results", str(results)], capsys)
    assert code == 2 and out == ""
    assert err == f"error: {results / 'tiny'}: cannot create this folder: {blocker} is a file, not a folder\n"
    assert blocker.read_text() == "a file where a folder should be"


def test_audit_fails_before_the_attacks(tiny_task, blocker, capsys, monkeypatch) -> None:
    import harness.audit.core

    monkeypatch.setattr(harness.audit.core, "measure_run", _never)
    code, out, err = invoke(
        ["audit", str(tiny_task.model_dir), "--task", "tiny", "--run-dir", str(blocker)], capsys
    )
    assert (code, out) == (2, "")
    assert err == f"error: {blocker}: cannot create this folder: it is a file\n"


def test_board_output_is_one_line(blocker, tmp_path, capsys) -> None:
    db = tmp_path / "board.sqlite"
    code, out, err = invoke(
        ["board", "--db", str(db), "--format", "html", "--output", str(blocker / "b.html")], capsys
    )
    assert code == 2
    assert err == f"error: {blocker}: cannot create this folder: it is a file\n"
