"""`unlearn-harness demo` end to end on the tiny task: reference rows once, entries recorded, the board."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from harness.cli import cli
from harness.errors import HarnessError


def test_demo_rejects_an_unknown_entry(tmp_path):
    result = CliRunner().invoke(cli, ["demo", "--entries", "nope", "--results", str(tmp_path)])
    assert isinstance(result.exception, HarnessError)
    assert "no reference entry 'nope'" in str(result.exception) and "grad_diff" in str(result.exception)


@pytest.mark.slow
def test_demo_records_reference_rows_once_and_runs_entries(tmp_path, tiny_task):
    from leaderboard.store import Store, default_db

    args = ["demo", "--entries", "ga", "--budget", "90", "--results", str(tmp_path), "--json"]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, result.output
    runs = json.loads(result.stdout)["runs"]
    assert [(r["submission"], r["status"]) for r in runs] == [("ga", "OK")]
    records = Store(default_db(tmp_path)).records(task="tiny")
    roles = sorted(r.role for r in records)
    assert roles == ["entry", "reference-gold", "reference-target"]
    target = next(r for r in records if r.role == "reference-target")
    assert target.unchanged and target.final_score is not None and "final_score" in target.intervals
    # a second demo reuses the reference rows and shows the board
    again = CliRunner().invoke(cli, ["demo", "--entries", "", "--results", str(tmp_path)])
    assert again.exit_code == 0, again.output
    assert sorted(r.role for r in Store(default_db(tmp_path)).records(task="tiny")) == roles
    assert "untouched-target" in again.stdout and "ga" in again.stdout


def test_demo_asks_for_the_gold_model_of_the_tiny_world(tmp_path, monkeypatch):
    """On a cache that holds the target only, the demo must still build the gold model (its reference row)."""
    import tasks.registry

    asked = []

    def fake_get_task(name, overrides=None, *, progress=True):
        asked.append((name, overrides))
        raise HarnessError("stop here")

    monkeypatch.setattr(tasks.registry, "get_task", fake_get_task)
    result = CliRunner().invoke(cli, ["demo", "--entries", "ga", "--results", str(tmp_path)])
    assert isinstance(result.exception, HarnessError)
    assert asked == [("tiny", {"gold": "true"})]
