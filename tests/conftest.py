"""Shared fixtures: offline Hugging Face, the real public data in ../shared/data, and the tiny world.

The tiny world is built once per test session (about a minute on 2 cores). Set UNLEARN_HARNESS_CACHE
to a persistent folder to reuse a build between sessions.
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
from pathlib import Path

import background
import pytest

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("UNLEARN_HARNESS_SHARED_DATA", REPO.parent / "shared" / "data"))
FIXTURES = Path(__file__).resolve().parent / "fixtures"


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """../shared/data (the LUME release, the SemEval splits, MMLU); skips where it is absent."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"real public data not found at {SHARED_DATA} (set UNLEARN_HARNESS_SHARED_DATA)")
    return SHARED_DATA


_OWN_CACHE: list[Path] = []  # the session's own cache root, removed at its end


def _cache_root() -> Path:
    """UNLEARN_HARNESS_CACHE when set (reused between sessions), else a fresh temp dir for this session
    (made on first use and set as UNLEARN_HARNESS_CACHE)."""
    cache = os.environ.get("UNLEARN_HARNESS_CACHE")
    if cache:
        return Path(cache)
    path = Path(tempfile.mkdtemp(prefix="harness-cache-"))
    _OWN_CACHE.append(path)
    os.environ["UNLEARN_HARNESS_CACHE"] = str(path)
    return path


def _official_env_command(folder: Path) -> tuple[list[str], dict[str, str]]:
    """`unlearn-harness env official` under the session's cache (a minute: pip, from the package index)."""
    return [sys.executable, "-m", "harness", "env", "official"], {
        **os.environ,
        "UNLEARN_HARNESS_CACHE": str(_cache_root()),
    }


def pytest_collection_finish(session: pytest.Session) -> None:
    """Start the long set-up work the selected tests need beside them (tests/background.py): the
    official environment where a test asks for it, and each test's `background` job (not for
    --collect-only)."""
    if session.config.option.collectonly:
        return
    if any("official_env_or_none" in getattr(item, "fixturenames", ()) for item in session.items):
        background.start("official-env", _official_env_command)
    root = _cache_root()
    if root in _OWN_CACHE:  # empty: the cold run's build can be the session's world (`tiny_world`)
        os.environ[background.COLD_CACHE_ENV] = str(root)
    markers = [m for item in session.items if (m := item.get_closest_marker("background")) is not None]
    markers.sort(key=lambda m: m.args[0] != background.COLD_RUN)  # the cold run first: the others wait for it
    for marker in markers:
        job = background.start(*marker.args)
        if marker.args[0] == background.COLD_RUN and background.COLD_CACHE_ENV in os.environ:
            os.environ[background.COLD_RUN_PID_ENV] = str(job.process.pid)


def pytest_sessionfinish(session: pytest.Session) -> None:
    background.stop_all()
    for path in _OWN_CACHE:
        shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(scope="session", autouse=True)
def _one_thread():
    """One torch thread in the test process: the suite runs its background jobs beside the tests
    (tests/background.py), and on a 2-core machine with a core busy two threads stall each other on these
    tiny matrices (an audit test took 29 s instead of 2). Results do not change: the evaluation picks its
    own threads, and tests that need more set them (`cpu_threads`)."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def harness_cache() -> Path:
    """The cache root: UNLEARN_HARNESS_CACHE when set (reused between sessions), else a fresh temp dir."""
    return _cache_root()


@pytest.fixture(scope="session")
def tiny_world(harness_cache: Path):
    """The tiny world and its target model (and gold model), built once per session."""
    from tasks.tiny import build_tiny

    background.wait_for_the_cold_build(harness_cache)
    return build_tiny(seed=0, size="tiny", gold=True, cache_root=harness_cache, progress=False)


@pytest.fixture(scope="session")
def tiny_task(tiny_world):
    """The `TaskSpec` of the tiny task over the session's build."""
    from tasks.tiny import tiny_spec

    return tiny_spec(tiny_world)


@pytest.fixture(autouse=True)
def _no_official_load_in_runs(monkeypatch: pytest.MonkeyPatch) -> None:
    """`run` loads its checkpoint in the official environment where that exists (a second interpreter,
    2-4 s of CPU per run): off here, so that the run tests do not all pay it once a test has created that
    environment in the session's cache. tests/test_run_official_load.py asks for it (official_load=True);
    `check` always loads."""
    monkeypatch.setenv("UNLEARN_HARNESS_OFFICIAL_LOAD", "0")


@pytest.fixture(scope="session")
def official_env_or_none(harness_cache: Path):
    """The organisers' pinned environment (harness/envs/official.py), created once under the session's
    cache (a minute, needs the package index); None where it cannot be created."""
    from harness.envs import official
    from harness.errors import HarnessError

    done = background.wait("official-env", _official_env_command, timeout=1800)
    if done.returncode == 2:  # a HarnessError, said in one line (offline: what is missing)
        lines = [line for line in done.stderr.splitlines() if line.strip()] or ["`env official` failed"]
        _OFFICIAL_ENV_PROBLEM.append(lines[-1].removeprefix("error: "))
        return None
    try:
        return official.create()  # found at once where the job made it; else created (or failing) here
    except HarnessError as error:
        _OFFICIAL_ENV_PROBLEM.append(str(error))
        return None


_OFFICIAL_ENV_PROBLEM: list[str] = []


@pytest.fixture(scope="session")
def official_env(official_env_or_none):
    """The official environment; skips (with the reason) where it cannot be created here."""
    if official_env_or_none is None:
        pytest.skip(_OFFICIAL_ENV_PROBLEM[0] if _OFFICIAL_ENV_PROBLEM else "no official environment")
    return official_env_or_none
