"""`unlearn-harness sweep`: grid parsing, the local executor's plumbing, and a real two-variant sweep on
the tiny task through submitit's local executor (the Slurm code path without a cluster)."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from harness import sweep as sweeps
from harness.cli import cli
from harness.cli import demo as demo_cli
from harness.errors import HarnessError
from leaderboard.record import RunRecord

GA = Path(demo_cli.SUBMISSIONS_DIR) / "ga.py"
FIXTURES = Path(__file__).parent / "fixtures" / "submissions"


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

    def fake_run_variant(
        submission, task_name, params, variant, budget_s, results_root, processes, launcher, *rest
    ):
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


def _record(run_id: str, params: dict, *, status: str = "OK", sha: str = "a" * 64, task: str = "tiny",
            seed: int | None = None, group_id: str | None = None, world_seed: int | None = 0) -> RunRecord:  # fmt: skip
    return RunRecord(run_id=run_id, created_at=f"2026-01-01T00:00:0{run_id[-1]}+00:00", task=task,
                     submission_name="ga", submission_sha256=sha, params=params, status=status, seed=seed,
                     group_id=group_id, world_seed=world_seed, final_score=0.5 if status == "OK" else None)  # fmt: skip


def test_resume_keeps_only_what_the_board_lacks():
    from tasks.registry import describe_task

    task = describe_task("tiny")  # world seed 0; nothing is built
    todo = sweeps.plan({"lr": [1e-4, 1e-3, 1e-2]}, {"epochs": 1}, None)
    records = [
        _record("r1", {"epochs": 1, "lr": 1e-4}),  # done
        _record("r2", {"epochs": 1, "lr": 1e-3}, status="CRASHED"),  # failed: runs again
        _record("r3", {"epochs": 1, "lr": 1e-2}, sha="b" * 64),  # another version of the file
        _record("r4", {"epochs": 1, "lr": 1e-2}, task="lume"),  # another task
        _record("r5", {"epochs": 1, "lr": 1e-2}, world_seed=1),  # another tiny world
        _record("r6", {"epochs": 2, "lr": 1e-2}),  # other parameters
        _record("r7", {"epochs": 1, "lr": 1e-2}, seed=0, group_id="g"),  # a seeded run: not this plan's
    ]
    resumed = sweeps.resume(todo, records, "a" * 64, task)
    assert [(v.left, [r.run_id for r in v.done]) for v in resumed] == [
        (False, ["r1"]),
        (True, []),
        (True, []),
    ]

    seeded = sweeps.plan({"lr": [1e-4, 1e-3]}, {}, [0, 1, 2])
    records = [
        _record("s1", {"lr": 1e-4, "seed": 0}, seed=0, group_id="g1"),  # the runner adds seed=k
        _record("s2", {"lr": 1e-4, "seed": 1}, seed=1, group_id="g1"),
        _record("s3", {"lr": 1e-4, "seed": 2}, seed=2, group_id="g1", status="TIMEOUT"),
        _record("s4", {"lr": 1e-4, "seed": 0}, seed=0, group_id="g2"),
        _record("s5", {"lr": 1e-3}, seed=0, group_id="g3"),
        _record("s6", {"lr": 1e-3}, seed=1, group_id="g3"),
        _record("s7", {"lr": 1e-3}, seed=2, group_id="g3"),
    ]
    first, second = sweeps.resume(seeded, records, "a" * 64, task)
    assert (first.seeds, first.group_id, [r.run_id for r in first.done]) == ([2], "g1", ["s1", "s2"])
    assert first.left and not second.left and second.group_id == "g3"
    outcome = sweeps._skipped(second)
    assert outcome["skipped"] and outcome["seeds"] == [0, 1, 2] and outcome["final_score"] == 0.5


def test_sweep_takes_the_isolation_choices_of_run():
    def choices(command: str) -> list[str]:
        (option,) = [p for p in cli.commands[command].params if p.name == "isolation"]
        return list(option.type.choices)

    assert choices("sweep") == choices("run") and "none" in choices("sweep")


SLOW_ENTRY = '''"""A copy of the target after `wait` seconds (a variant long enough to be interrupted)."""
import time

from _fixture_io import save_copy


def unlearn(model_dir, output_dir, forget_dir, retain_dir, mode="copy", wait=0.0):
    time.sleep(wait)
    save_copy(model_dir, output_dir, mode=mode)
'''


def _entry(folder: Path) -> Path:
    folder.mkdir()
    shutil.copy(FIXTURES / "_fixture_io.py", folder)
    (folder / "waits.py").write_text(SLOW_ENTRY)
    return folder / "waits.py"


def _entries(root: Path) -> list[RunRecord]:
    from leaderboard.store import Store, default_db

    return [r for r in Store(default_db(root)).records(task="tiny") if r.role == "entry"]


@pytest.mark.slow
def test_an_interrupted_sweep_resumes_with_only_what_is_missing(tmp_path, tiny_task):
    entry, results = _entry(tmp_path / "entry"), tmp_path / "runs"
    args = ["sweep", str(entry), "--grid", "wait=0,8", "--budget", "60", "--results", str(results), "--json"]
    # SIGINT as a terminal delivers it: a suite started in the background (`cmd &` without job control)
    # hands its children SIGINT ignored, and Python then installs no KeyboardInterrupt handler
    proc = subprocess.Popen([sys.executable, "-m", "harness", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=dict(os.environ),
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))  # fmt: skip
    deadline = time.monotonic() + 300
    while not list((results / "tiny").glob("*-waits-wait_8-*")) and time.monotonic() < deadline:
        time.sleep(0.05)  # the second variant has started (its run directory is there)
    time.sleep(1.0)
    proc.send_signal(signal.SIGINT)  # Ctrl-C in the middle of the second variant
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err[-2000:]
    assert [r.variant for r in _entries(results)] == ["wait=0"]

    result = CliRunner().invoke(cli, [*args, "--resume"])
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout)
    assert [(v["variant"], v.get("skipped", False)) for v in out["variants"]] == [
        ("wait=0", True),
        ("wait=8", False),
    ]
    assert sorted(r.variant for r in _entries(results)) == ["wait=0", "wait=8"]  # nothing ran twice
    again = json.loads(CliRunner().invoke(cli, [*args, "--resume"]).stdout)
    assert all(v["skipped"] for v in again["variants"]) and len(_entries(results)) == 2


@pytest.mark.slow
def test_sweep_seeds_runs_each_variant_as_one_group_and_resumes_a_group(tmp_path, tiny_task):
    entry, results = _entry(tmp_path / "entry"), tmp_path / "runs"
    args = ["sweep", str(entry), "--grid", "mode=copy,perturb", "--budget", "60", "--isolation", "none"]
    args += ["--results", str(results), "--json"]
    result = CliRunner().invoke(cli, [*args, "--seeds", "0,1"])
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout)["variants"]
    assert [(v["variant"], v["status"], v["seeds"]) for v in out] == [
        ('mode="copy"', "OK", [0, 1]),
        ('mode="perturb"', "OK", [0, 1]),
    ]
    records = _entries(results)
    groups = {v["variant"]: v["group_id"] for v in out}
    assert sorted((r.variant, r.group_id, r.seed) for r in records) == sorted(
        (name, group, seed) for name, group in groups.items() for seed in (0, 1)
    )
    assert {r.isolation for r in records} == {"none"}  # --isolation reaches every run
    result = CliRunner().invoke(cli, [*args, "--seeds", "0,1,2", "--resume"])
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout)["variants"]
    assert [(v["group_id"], v["seeds"]) for v in out] == [(groups[v["variant"]], [0, 1, 2]) for v in out]
    records = _entries(results)
    assert sorted(r.seed for r in records) == [0, 0, 1, 1, 2, 2]  # the resume ran seed 2 only
    assert {r.group_id for r in records} == set(groups.values())
