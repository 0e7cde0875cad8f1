"""The `check`, `run` and `pack` commands: exit codes, one-line errors, JSON output."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from test_runner import SUBMISSIONS

from harness.cli import main
from harness.cli.run import parse_set
from harness.errors import HarnessError


def invoke(args: list[str], capsys) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as exit_info:
        main(args)
    captured = capsys.readouterr()
    return exit_info.value.code, captured.out, captured.err


def test_parse_set_reads_json_literals():
    assert parse_set(("lr=1e-5", "epochs=3", "merge=true", 'mode="ga,gd"', "name=ga,gd", "x=")) == {
        "lr": 1e-5,
        "epochs": 3,
        "merge": True,
        "mode": "ga,gd",
        "name": "ga,gd",
        "x": "",
    }
    with pytest.raises(HarnessError, match="expected key=value"):
        parse_set(("novalue",))


def test_static_check_lists_problems_one_per_line(capsys):
    code, out, err = invoke(["check", str(SUBMISSIONS / "wrong_order.py"), "--static-only"], capsys)
    assert code == 1
    lines = [line for line in out.splitlines() if line]  # the findings are the result: stdout
    assert len(lines) == 2 and all(
        line.startswith(f"{SUBMISSIONS / 'wrong_order.py'}:6: error:") for line in lines
    )


def test_static_check_json(capsys):
    code, out, _ = invoke(["check", str(SUBMISSIONS / "good.py"), "--static-only", "--json"], capsys)
    report = json.loads(out)
    assert (
        code == 0
        and report["ok"]
        and report["siblings"] == {"_fixture_io": str(SUBMISSIONS / "_fixture_io.py")}
    )


def test_bad_set_is_one_line_exit_2(capsys):
    code, out, err = invoke(["run", str(SUBMISSIONS / "good.py"), "--task", "tiny", "--set", "=3"], capsys)
    assert (
        code == 2 and err.strip() == "error: --set '=3': expected key=value with a Python identifier as key"
    )


def test_check_dry_run_and_run_json_on_the_tiny_task(tiny_task, tmp_path, capsys):
    code, out, err = invoke(["check", str(SUBMISSIONS / "good.py")], capsys)
    assert code == 0, err
    assert "ready for an official attempt" in out
    assert "run dir" not in out  # check's dry run leaves no run directory to point at
    code, out, err = invoke(["check", str(SUBMISSIONS / "saves_nothing.py")], capsys)
    assert code == 1 and "NO_CHECKPOINT" in out + err

    args = [
        "run",
        str(SUBMISSIONS / "good.py"),
        "--task",
        "tiny",
        "--json",
        "--results",
        str(tmp_path),
        "--name",
        "v1",
        "--set",
        'mode="copy"',  # a copy of the target itself: its evaluation is in the engine's cache
    ]
    code, out, err = invoke(args, capsys)
    record = json.loads(out)
    assert code == 0, err
    assert record["status"] == "OK" and record["variant"] == "v1" and record["final_score"] is not None
    assert (tmp_path / "leaderboard.sqlite").is_file()
    manifest = json.loads((Path(record["run_dir"]) / "manifest.json").read_text())
    assert manifest["variant"] == "v1" and Path(record["run_dir"]).parent == (tmp_path / "tiny").resolve()


def test_progress_never_goes_to_stdout():
    # a cold tiny-world build under `run --json` must leave stdout to the JSON object
    from tasks.tiny.build import _Reporter

    reporter = _Reporter(True)
    assert reporter.progress is not None and reporter.progress.console.stderr


def test_a_zero_task_aggregate_is_explained():
    from harness.cli.run import explain
    from leaderboard.record import RunRecord

    terms = (0.0, 0.8, 0.5, 0.5, 0.5, 0.5, 1.0, 1.0, 1.0, 0.0, 1.0, 1.0)
    record = RunRecord(run_id="r", created_at="", task="tiny", submission_name="s", submission_sha256="",
                       terms=terms, task_aggregate=0, final_score=1 / 3)  # fmt: skip
    lines = explain(record, target_final=1 / 3)
    assert lines[0].startswith("task aggregate 0: forget Task1 regurgitation still 1.0")
    assert "retain Task2 knowledge is 0" in lines[1]
    assert "equals the untouched target's (0.3333)" in lines[2]
    assert explain(record, target_final=0.5)[-1].startswith("task aggregate 0")
