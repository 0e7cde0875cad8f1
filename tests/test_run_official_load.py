"""`run` loads the checkpoint in the official environment (transformers 4.45.2) while it scores.

harness/checkpoint.py `OfficialLoad` starts the load right after validation (harness/envs/official.py
`start_load`, a second interpreter) and the run collects it after scoring: a problem is a warning worded
as `check`'s, `checkpoint.official_env_load` records whether it ran ("loaded", "problems", "failed: ...",
"skipped: ..."), a worker that fails or hangs is one warning line and never the run's failure. The suite
turns the load off for every other run (conftest); these tests ask for it. The cases with the real
environment skip with the reason where it cannot be built (conftest.official_env).
"""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

import psutil
import pytest

from harness import checkpoint as checkpoint_module
from harness.checkpoint import OfficialLoad
from harness.envs import official
from harness.errors import HarnessError
from harness.runner import official_load_wanted, run_submission

SUBMISSIONS = Path(__file__).resolve().parent / "fixtures" / "submissions"
DOES_NOT_LOAD = "out/ does not load under the organisers' transformers 4.45.2 ("


def _run(name: str, task, tmp_path: Path, **options):
    return run_submission(
        SUBMISSIONS / f"{name}.py", task, budget_s=120, grace_s=1.0, results_root=tmp_path / "runs",
        record=False, progress=False, **options,
    )  # fmt: skip


def _manifest(result) -> dict:
    return json.loads((result.run_dir / "manifest.json").read_text())


def _fake_env(tmp_path: Path, script: str) -> official.OfficialEnv:
    """An 'official environment' whose interpreter is a shell script (a worker that fails or hangs)."""
    python = tmp_path / "fake-env" / "bin" / "python"
    python.parent.mkdir(parents=True)
    python.write_text("#!/bin/sh\n" + script + "\n")
    python.chmod(0o755)
    return official.OfficialEnv(python.parent.parent, python, {}, "?")


def test_a_checkpoint_4_45_cannot_load_is_a_run_warning_from_the_official_env(
    official_env, tiny_task, tmp_path
) -> None:
    result = _run("transformers5_tokenizer", tiny_task, tmp_path, score=False, official_load=True)
    assert result.status == "OK", result.message  # transformers 5 loads it: a warning, not a status
    loaded = [w for w in result.warnings if w.startswith(DOES_NOT_LOAD)]
    assert len(loaded) == 1 and "TokenizersBackend" in loaded[0], result.warnings
    assert any("PreTrainedTokenizerFast" in w for w in result.warnings)  # the static check's fix, as before
    assert result.checkpoint.official_env_load == "problems"
    manifest = _manifest(result)
    assert manifest["checkpoint"]["official_env_load"] == "problems"
    assert loaded[0] in manifest["warnings"] and loaded[0] in manifest["checkpoint"]["official_env_problems"]
    assert result.to_json()["checkpoint"]["official_env_load"] == "problems"
    assert result.record.timings["official_load"] >= 0


def test_a_scored_run_loads_its_checkpoint_there_while_it_scores(official_env, tiny_task, tmp_path) -> None:
    result = _run("good", tiny_task, tmp_path, official_load=True)
    assert result.status == "OK" and result.scores is not None, result.message
    assert result.checkpoint.official_env_load == "loaded"
    assert not any("4.45.2" in w or "official environment" in w for w in result.warnings), result.warnings
    manifest = _manifest(result)
    assert manifest["checkpoint"]["official_env_load"] == "loaded"
    assert "official_load" in manifest["timings"]  # the seconds it waited for the load past scoring


def test_without_an_official_environment_the_run_records_the_skip(tiny_task, tmp_path, monkeypatch) -> None:
    monkeypatch.setattr(official, "locate", lambda: None)
    result = _run("transformers5_tokenizer", tiny_task, tmp_path, score=False, official_load=True)
    assert result.status == "OK", result.message
    state = result.checkpoint.official_env_load
    assert state.startswith("skipped: no official environment") and "env official" in state
    assert _manifest(result)["checkpoint"]["official_env_load"] == state
    assert not any(w.startswith(DOES_NOT_LOAD) for w in result.warnings)
    assert any("TokenizersBackend" in w for w in result.warnings)  # the static check still runs
    assert "official_load" not in result.record.timings


def test_a_worker_that_hangs_is_one_warning_line_and_is_ended(tiny_task, tmp_path, monkeypatch) -> None:
    pid_file = tmp_path / "sleep.pid"
    env = _fake_env(tmp_path, f"sleep 30 & echo $! > {pid_file}; wait")
    monkeypatch.setattr(official, "locate", lambda: env)
    monkeypatch.setattr(checkpoint_module, "OFFICIAL_LOAD_TIMEOUT_S", 1.0)
    result = _run("good", tiny_task, tmp_path, score=False, official_load=True)
    assert result.status == "OK", result.message
    lines = [w for w in result.warnings if "official environment" in w]
    assert lines == [f"out/ was not loaded in the official environment: the official environment's worker "
                     f"({env.python}) gave no answer in 1 s"]  # fmt: skip
    assert result.checkpoint.official_env_load.startswith("failed: ")
    assert _manifest(result)["checkpoint"]["official_env_load"] == result.checkpoint.official_env_load
    sleeper = int(pid_file.read_text())  # what the worker started is ended with it
    assert not psutil.pid_exists(sleeper) or psutil.Process(sleeper).status() == psutil.STATUS_ZOMBIE


def test_a_run_without_a_valid_checkpoint_ends_the_worker_it_started(
    tiny_task, tmp_path, monkeypatch
) -> None:
    pid_file = tmp_path / "sleep.pid"
    env = _fake_env(tmp_path, f"sleep 30 & echo $! > {pid_file}; wait")
    monkeypatch.setattr(official, "locate", lambda: env)
    result = _run("saves_nothing", tiny_task, tmp_path, score=False, official_load=True)
    assert result.status == "NO_CHECKPOINT", result.message
    assert result.checkpoint.official_env_load == "skipped: no valid checkpoint"
    assert not any("official environment" in w for w in result.warnings), result.warnings
    # the worker was started with the child (for its imports), before out/ was known: it is ended
    assert not [p for p in psutil.process_iter(["cmdline"]) if str(env.python) in (p.info["cmdline"] or [])]
    if pid_file.exists() and pid_file.read_text().strip():
        sleeper = int(pid_file.read_text())
        assert not psutil.pid_exists(sleeper) or psutil.Process(sleeper).status() == psutil.STATUS_ZOMBIE


def test_a_worker_that_crashes_is_one_line_quoting_its_output(tiny_task, tmp_path, monkeypatch) -> None:
    env = _fake_env(tmp_path, "echo 'ImportError: no module named torch' >&2; exit 3")
    monkeypatch.setattr(official, "locate", lambda: env)
    load = OfficialLoad.prepare().begin(tiny_task.model_dir)
    assert load.state == "running"
    assert load.finish(timeout=30) == [
        f"out/ was not loaded in the official environment: the official environment's worker ({env.python}) "
        "exited with status 3 without an answer (ImportError: no module named torch)"
    ]
    assert load.state.startswith("failed: ") and "status 3" in load.state


def test_a_prepared_worker_waits_for_its_checkpoint_then_loads_it(official_env, tiny_task, tmp_path) -> None:
    out = tmp_path / "out"
    pending = official.prepare_load(official_env)  # started before the checkpoint exists
    shutil.copytree(tiny_task.model_dir, out)
    config = json.loads((out / "tokenizer_config.json").read_text())
    (out / "tokenizer_config.json").write_text(json.dumps({**config, "tokenizer_class": "TokenizersBackend"}))
    problem = pending.begin(out).result(120)
    assert problem is not None and "TokenizersBackend" in problem
    assert official.start_load(official_env, tiny_task.model_dir).result(120) is None


def test_start_load_returns_at_once_and_a_timeout_ends_the_worker(tiny_task, tmp_path) -> None:
    env = _fake_env(tmp_path, "sleep 30")
    started = time.perf_counter()
    pending = official.start_load(env, tiny_task.model_dir)
    assert time.perf_counter() - started < 1.0 and not pending.worker.done()
    with pytest.raises(HarnessError, match="gave no answer in 0.5 s"):
        pending.result(0.5)
    assert pending.worker.done()
    with pytest.raises(HarnessError, match="gave no answer"):  # asked again: the same answer, no wait
        pending.result(0.0)


def test_the_load_is_on_unless_turned_off(tiny_task, monkeypatch) -> None:
    monkeypatch.delenv("UNLEARN_HARNESS_OFFICIAL_LOAD")
    assert official_load_wanted(None) is True and official_load_wanted(False) is False
    for value in ("0", "false", "off"):
        monkeypatch.setenv("UNLEARN_HARNESS_OFFICIAL_LOAD", value)
        assert official_load_wanted(None) is False and official_load_wanted(True) is True
    monkeypatch.setattr(official, "prepare_load", lambda *a: pytest.fail("a load turned off was started"))
    load = OfficialLoad.prepare(enabled=official_load_wanted(None)).begin(tiny_task.model_dir)
    assert load.state == "skipped: turned off (--no-official-load or UNLEARN_HARNESS_OFFICIAL_LOAD=0)"
    assert load.finish() == []


def test_run_no_official_load_skips_it(tiny_task, tmp_path, monkeypatch, capsys) -> None:
    from harness.cli import main

    monkeypatch.delenv("UNLEARN_HARNESS_OFFICIAL_LOAD")  # the default is on: the flag alone turns it off
    monkeypatch.setattr(
        official, "locate", lambda: pytest.fail("a load turned off looked for the environment")
    )
    args = ["run", str(SUBMISSIONS / "good.py"), "--task", "tiny", "--no-record", "--limit", "1", "--quiet",
            "--results", str(tmp_path / "runs"), "--no-official-load", "--json"]  # fmt: skip
    with pytest.raises(SystemExit) as exit_info:
        main(args)
    found = json.loads(capsys.readouterr().out)
    assert exit_info.value.code == 0, found
    assert found["checkpoint"]["official_env_load"].startswith("skipped: turned off (--no-official-load")
    assert "official_load" not in found["timings"]
