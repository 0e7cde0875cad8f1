"""`unlearn-harness sweep`: grid parsing, the local executor's plumbing, and a real two-variant sweep on
the tiny task through submitit's local executor (the Slurm code path without a cluster)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from click.testing import CliRunner

from harness import sweep as sweeps
from harness.cli import cli
from harness.cli import demo as demo_cli
from harness.errors import HarnessError

GA = Path(demo_cli.SUBMISSIONS_DIR) / "ga.py"


def test_parse_grid_values_are_json_literals():
    grid = sweeps.parse_grid(("lr=1e-5, 3e-5", "epochs=1,3", "mode=full,lora4bit"))
    assert grid == {"lr": [1e-5, 3e-5], "epochs": [1, 3], "mode": ["full", "lora4bit"]}
    for bad, problem in (
        ("lr", "expected key=value1"),
        ("lr=", "expected key=value1"),
        ("1x=2", "identifier"),
    ):
        with pytest.raises(HarnessError, match=problem):
            sweeps.parse_grid((bad,))
    with pytest.raises(HarnessError, match="given twice"):
        sweeps.parse_grid(("lr=1", "lr=2"))
    with pytest.raises(HarnessError, match="at least one --grid"):
        sweeps.parse_grid(())


def test_variants_are_the_cartesian_product_first_key_slowest():
    plan = sweeps.variants({"lr": [1e-5, 3e-5], "epochs": [1, 3]}, {"batch_size": 4})
    assert [name for name, _ in plan] == [
        "lr=1e-05,epochs=1",
        "lr=1e-05,epochs=3",
        "lr=3e-05,epochs=1",
        "lr=3e-05,epochs=3",
    ]
    assert plan[1][1] == {"batch_size": 4, "lr": 1e-5, "epochs": 3}
    assert sweeps.variants({"phases": ["ga:1:1"]})[0][0] == 'phases="ga:1:1"'


def test_sweep_rejects_a_parameter_the_entry_does_not_take(tmp_path):
    result = CliRunner().invoke(cli, ["sweep", str(GA), "--grid", "nope=1,2", "--results", str(tmp_path)])
    assert result.exit_code != 0
    assert "has no parameter 'nope'" in str(result.exception or result.output)


def test_local_executor_runs_every_variant_n_at_a_time(tmp_path, monkeypatch, tiny_task):
    seen, lock, active, peak = [], threading.Lock(), [0], [0]

    def fake_run_variant(submission, task_name, params, variant, budget_s, results_root, processes, launcher, *rest):
        import time

        with lock:
            active[0] += 1
            peak[0] = max(peak[0], active[0])
        time.sleep(0.3)
        with lock:
            active[0] -= 1
            seen.append((variant, params, budget_s))
        return {
            "variant": variant,
            "params": params,
            "status": "OK",
            "message": "",
            "record": {"final_score": 0.5},
        }

    monkeypatch.setattr(sweeps, "run_variant", fake_run_variant)
    args = ["sweep", str(GA), "--grid", "lr=1e-4,2e-4", "--grid", "epochs=1,2", "--set", "batch_size=4"]
    args += ["--parallel", "2", "--budget", "30", "--results", str(tmp_path), "--json"]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout)
    assert [v["variant"] for v in out["variants"]] == [
        "lr=0.0001,epochs=1",
        "lr=0.0001,epochs=2",
        "lr=0.0002,epochs=1",
        "lr=0.0002,epochs=2",
    ]
    assert sorted(v for v, _, _ in seen) == sorted(v["variant"] for v in out["variants"])
    assert all(p["batch_size"] == 4 and b == 30 for _, p, b in seen)
    assert peak[0] == 2


@pytest.mark.slow
def test_sweep_through_submitit_records_every_variant_on_the_board(tmp_path, tiny_task):
    from leaderboard.store import Store, default_db

    args = ["sweep", str(GA), "--grid", "lr=1e-4,1e-3", "--set", "epochs=1", "--executor", "submitit-local"]
    args += ["--parallel", "2", "--budget", "90", "--results", str(tmp_path), "--json"]
    # a real process, as a user runs it: submitit's local executor manages child processes and their
    # standard streams, which must not be the test runner's captured ones
    proc = subprocess.run(
        [sys.executable, "-m", "harness", *args],
        capture_output=True,
        text=True,
        timeout=600,
        env=dict(os.environ),
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout)
    assert [v["status"] for v in out["variants"]] == ["OK", "OK"]
    records = Store(default_db(tmp_path)).records(task="tiny")
    assert sorted(r.variant for r in records) == ["lr=0.0001", "lr=0.001"]
    assert {r.params["lr"] for r in records} == {1e-4, 1e-3}
    assert all(r.final_score is not None for r in records)
    # a larger learning rate unlearns more: the forget terms (1 - forget score) cannot be lower
    by_lr = {r.params["lr"]: r for r in records}
    assert sum(by_lr[1e-3].terms[:6]) >= sum(by_lr[1e-4].terms[:6])
