"""Output for scripts and pipes: narrow consoles never cut a name or a path (`tasks`, `task build tiny`,
`pack`), and `run --json` on a cold cache (the tiny world built first) prints one JSON object on stdout,
with the build's progress on stderr."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import background
import pytest
from test_runner import SUBMISSIONS
from test_runner_cli import invoke

from tasks.registry import list_tasks

REPO = Path(__file__).resolve().parents[1]


def test_narrow_pipes_get_whole_names_and_paths(tiny_task, tmp_path: Path, capsys, monkeypatch) -> None:
    monkeypatch.setenv("COLUMNS", "50")  # stdout is captured: not a terminal, like `| cat`
    code, out, _ = invoke(["tasks"], capsys)
    assert code in (0, None)
    assert "…" not in out and all(name in out for name in list_tasks())
    assert "semeval25-1b" in out and "semeval25-7b" in out

    monkeypatch.setenv("COLUMNS", "60")
    code, out, _ = invoke(["task", "build", "tiny"], capsys)
    assert code in (0, None)
    assert "…" not in out
    for path in (tiny_task.model_dir, tiny_task.mia_nonmember, tiny_task.mmlu_dir):
        assert any(str(path) in line for line in out.splitlines()), path  # on one line, not folded

    monkeypatch.setenv("COLUMNS", "40")
    output = tmp_path / "a-folder-with-a-rather-long-name" / "packed_entry.py"
    code, out, _ = invoke(["pack", str(SUBMISSIONS / "good.py"), "-o", str(output)], capsys)
    assert code == 0 and output.is_file()
    assert any(line.startswith(f"wrote {output} (sha256 ") for line in out.splitlines()), out
    assert f"  embedded module _fixture_io from {SUBMISSIONS / '_fixture_io.py'}" in out.splitlines()


def _cold_cache(folder: Path) -> Path:
    """The session's own cache where it starts empty (the world built here is then the session's: see
    conftest.py), else a new one in ``folder``."""
    return Path(os.environ.get(background.COLD_CACHE_ENV) or folder / "cache")


def _cold_run(folder: Path) -> tuple[list[str], dict[str, str]]:
    """`run --json` of a good entry on the tiny task with an empty cache."""
    env = {**os.environ, "UNLEARN_HARNESS_CACHE": str(_cold_cache(folder)), "HF_HUB_OFFLINE": "1"}
    env["UNLEARN_HARNESS_OFFICIAL_LOAD"] = "0"
    # the session's world (see conftest.py): its gold model trains beside the target
    if os.environ.get(background.COLD_CACHE_ENV):
        env["UNLEARN_HARNESS_TINY_GOLD"] = "1"
    env.pop("UNLEARN_HARNESS_RESULTS", None)
    args = [sys.executable, "-m", "harness", "run", str(SUBMISSIONS / "good.py"), "--task", "tiny", "--json"]
    return args + ["--results", str(folder / "results"), "--no-record", "--set", 'mode="copy"'], env


@pytest.mark.slow
@pytest.mark.background(background.COLD_RUN, _cold_run)
def test_run_json_on_a_cold_cache_prints_only_json() -> None:
    """One cold build of the smallest world (size tiny, about 1-3 minutes on 2 cores; started when the
    session has collected this test, beside the others: tests/background.py): stdout is exactly the
    run's JSON object, the build's progress is on stderr."""
    done = background.wait(background.COLD_RUN, _cold_run, timeout=900)
    assert done.returncode == 0, done.stderr[-2000:]
    record = json.loads(done.stdout)  # the whole of stdout: one JSON object, nothing before or after it
    assert record["status"] == "OK" and record["task"] == "tiny"
    assert done.stdout.strip().startswith("{") and done.stdout.count("\n") <= 1
    assert "tiny world: target model" in done.stderr  # the build happened here, and reported on stderr
    assert any(_cold_cache(done.folder).glob("tiny-tiny-seed0-*/model/config.json"))
    if os.environ.get(background.COLD_CACHE_ENV):  # the session's world: built with its gold model
        assert "tiny world: gold model (in parallel)" in done.stderr
