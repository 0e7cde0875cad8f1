"""Long set-up work that starts as soon as the session has collected its tests and runs beside them.

On two cores the suite keeps one mostly idle (load average about 1-1.5: most tests run one process at a
time), while some pieces of it are minutes of work that no other test waits for: the cold build of
tests/test_plain_output.py, the creation of the organisers' environment (pip) and the README's guide
followed command by command (tests/test_new_entry_guide.py), each a subprocess. Started early, they
overlap the rest of the suite instead of adding to it; the test or fixture that needs one waits for it
(`wait`), and starts it then if the session did not (a single test run). Where the cold run builds the
session's world, the jobs and fixtures that need the world wait for its build (`wait_for_the_cold_build`).

conftest.py starts what the selected tests need (`pytest_collection_finish`) and ends what is left at
the session's end (`stop_all`): a process still running is killed, its folder removed.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

#: the job of tests/test_plain_output.py: `run --json` on a cold cache, which builds the tiny world first
COLD_RUN = "cold-run"
#: set by conftest.py where the session's cache starts empty: the cold run builds the world there, and the
#: `tiny_world` fixture waits for that build (target and gold model, trained side by side) instead of
#: making a second one beside it (two cores)
COLD_CACHE_ENV = "HARNESS_TEST_COLD_CACHE"

#: set by conftest.py beside COLD_CACHE_ENV once the cold run has started: its process id, so that the jobs
#: started after it wait for its build (`wait_for_the_cold_build`) instead of building the world themselves
COLD_RUN_PID_ENV = "HARNESS_TEST_COLD_RUN_PID"

#: builds a job's command in its own folder: (argv, environment)
Command = Callable[[Path], tuple[list[str], dict[str, str]]]


@dataclass
class Job:
    """A started subprocess: its folder (its cwd; stdout and stderr go to files there)."""

    folder: Path
    process: subprocess.Popen


@dataclass(frozen=True)
class Done:
    """A finished job: exit status, what it printed, and its folder."""

    returncode: int
    stdout: str
    stderr: str
    folder: Path


_JOBS: dict[str, Job] = {}


def start(key: str, command: Command) -> Job:
    """Start job ``key`` (once: a second call returns the running job)."""
    if key not in _JOBS:
        folder = Path(tempfile.mkdtemp(prefix="harness-test-background-"))
        argv, env = command(folder)
        with open(folder / "stdout", "wb") as out, open(folder / "stderr", "wb") as err:
            process = subprocess.Popen(argv, env=env, cwd=folder, stdout=out, stderr=err)
        _JOBS[key] = Job(folder, process)
    return _JOBS[key]


def wait(key: str, command: Command, timeout: float) -> Done:
    """Job ``key``'s result, starting it now if the session did not; killed after ``timeout`` seconds."""
    job = start(key, command)
    try:
        code = job.process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        job.process.kill()
        job.process.wait()
        raise
    read = lambda name: (job.folder / name).read_text(encoding="utf-8", errors="replace")  # noqa: E731
    return Done(code, read("stdout"), read("stderr"), job.folder)


def wait_for_the_cold_build(cache: Path) -> None:
    """Where the session's cold run builds the tiny world in ``cache`` (COLD_CACHE_ENV, COLD_RUN_PID_ENV),
    wait until that build is in place or the cold run has ended; from the session or from a job."""
    from tasks.tiny.build import tiny_paths

    pid = os.environ.get(COLD_RUN_PID_ENV)
    if not pid or os.environ.get(COLD_CACHE_ENV) != str(cache):
        return
    while _running(int(pid)) and not tiny_paths(0, "tiny", cache).complete:
        time.sleep(0.5)


def _running(pid: int) -> bool:
    """Whether process ``pid`` still runs: a zombie (ended, not yet reaped by the session that started it)
    does not, so the same test serves the session and the jobs it started."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[-1].split()[0] != "Z"


def stop_all() -> None:
    """Kill every job still running and remove every job's folder."""
    for job in _JOBS.values():
        if job.process.poll() is None:
            job.process.kill()
            job.process.wait()
        shutil.rmtree(job.folder, ignore_errors=True)
    _JOBS.clear()
