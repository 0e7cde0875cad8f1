"""The organisers' pinned environment: create it once, find it, run the project's worker inside it.

The official scorer ran under transformers 4.45.2, pandas 2.2.3, scikit-learn 1.5.0, rouge_score 0.1.2,
accelerate 1.0.0, datasets 3.0.1, numpy 2.1.2 and scipy 1.14.1 (official-scoring.md 2.13). `create` makes a
virtual environment with exactly those pins under ``<cache root>/envs/official-<key>/`` and reuses this
environment's torch: its files are linked, not reinstalled (a CUDA build is several GB; the organisers'
torch 2.5.0 is not asked for, and the torch in use is recorded). The rest of their requirements file
trains (deepspeed, pytorch-lightning) or is shadowed by the standard library (statistics), so it is left
out. The worker (worker.py) is this project's exact path, checkpoint loading, MMLU and scoring, run from
this source tree by that interpreter: `score --official-env` gives the organisers' numerics by construction.
`start_worker` / `prepare_load` / `start_load` start it and return at once (`run` starts one while the
submission runs and has it load the checkpoint while it scores); `run_worker` / `loads` wait for the answer.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import shutil
import signal
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

from harness.errors import HarnessError
from harness.manifest import task_summary

#: the organisers' pins that matter for scoring (official-scoring.md 2.13)
PINS = (
    "transformers==4.45.2",
    "pandas==2.2.3",
    "scikit-learn==1.5.0",
    "rouge_score==0.1.2",
    "accelerate==1.0.0",
    "datasets==3.0.1",
    "numpy==2.1.2",
    "scipy==1.14.1",
)
#: what the worker imports beyond the pins (the organisers' file leaves these unpinned or lacks them)
WORKER_NEEDS = ("rich>=13", "platformdirs>=4")
#: the file written last: an environment without it is incomplete and is rebuilt
MARKER = "harness-env.json"
SOURCE_ROOT = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class OfficialEnv:
    """A complete official environment: its folder, interpreter and what is installed in it."""

    root: Path
    python: Path
    installed: dict[str, str]
    torch: str

    def to_json(self) -> dict:
        return {"root": str(self.root), "python": str(self.python), "torch": self.torch,
                "installed": self.installed}  # fmt: skip


def envs_root() -> Path:
    """<UNLEARN_HARNESS_CACHE or the platform user cache>/envs."""
    import platformdirs

    base = os.environ.get("UNLEARN_HARNESS_CACHE") or platformdirs.user_cache_dir("unlearn-harness")
    return Path(base) / "envs"


def env_key() -> str:
    """A short hash of what determines the environment: the pins, the Python and the torch linked in."""
    payload = [*PINS, *WORKER_NEEDS, platform.python_version(), metadata.version("torch"), sys.prefix]
    return hashlib.sha256(json.dumps(payload).encode()).hexdigest()[:12]


def env_dir() -> Path:
    return envs_root() / f"official-{env_key()}"


def _python(root: Path) -> Path:
    return root / ("Scripts/python.exe" if os.name == "nt" else "bin/python")


def locate() -> OfficialEnv | None:
    """The complete official environment, or None where it has not been created."""
    root = env_dir()
    try:
        info = json.loads((root / MARKER).read_text())
    except (OSError, ValueError):
        return None
    if not _python(root).exists():
        return None
    return OfficialEnv(root, _python(root), info["installed"], info["torch"])


def _site_packages(python: Path) -> Path:
    code = "import sysconfig; print(sysconfig.get_paths()['purelib'])"
    return Path(
        subprocess.run([str(python), "-c", code], check=True, capture_output=True, text=True).stdout.strip()
    )


def _link_distribution(name: str, site: Path) -> None:
    """Link one installed distribution's top-level folders and files (and its metadata) into `site`."""
    dist = metadata.distribution(name)
    tops = {Path(str(f)).parts[0] for f in dist.files or () if not str(f).startswith("..")}
    for top in sorted(tops):
        source = Path(dist.locate_file(top)).resolve()
        if source.exists() and not (site / top).exists() and not top.endswith(".pth"):
            (site / top).symlink_to(source)


def _torch_distributions() -> list[str]:
    """torch and the CUDA/triton distributions it depends on that are installed (linked, never reinstalled)."""
    from packaging.requirements import Requirement

    names = ["torch"]
    for line in metadata.requires("torch") or ():
        name = Requirement(line).name
        if name.startswith(("nvidia-", "triton", "cuda-")):
            try:
                metadata.distribution(name)
            except metadata.PackageNotFoundError:
                continue
            names.append(name)
    return names


def _pip(python: Path, args: list[str], log) -> None:
    command = [str(python), "-m", "pip", "install", "--disable-pip-version-check", "--no-input", "--retries", "1",
               "--timeout", "20", *args]  # fmt: skip
    done = subprocess.run(command, capture_output=True, text=True)
    log(done.stdout)
    if done.returncode != 0:
        errors = [
            line for line in done.stderr.splitlines() if line.startswith("ERROR")
        ] or done.stderr.splitlines()
        last = errors[-1] if errors else f"pip exited with {done.returncode}"
        raise HarnessError(
            f"cannot create the official environment: pip could not install {' '.join(args)} ({last.strip()}); "
            "it needs the package index (or a wheel folder in PIP_FIND_LINKS)"
        )


def _installed(python: Path) -> dict[str, str]:
    code = (
        "import json, importlib.metadata as m;"
        "print(json.dumps({d.metadata['Name'].lower(): d.version for d in m.distributions()}))"
    )
    out = subprocess.run([str(python), "-c", code], check=True, capture_output=True, text=True).stdout
    return dict(sorted(json.loads(out).items()))


def create(*, rebuild: bool = False, log=lambda text: None) -> OfficialEnv:
    """The official environment, created first where missing (a minute and ~0.5 GB of packages)."""
    from filelock import FileLock

    root = env_dir()
    root.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(root) + ".lock"):
        found = locate()
        if found is not None and not rebuild:
            return found
        shutil.rmtree(root, ignore_errors=True)
        subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(root)], check=True)
        python = _python(root)
        try:
            subprocess.run([str(python), "-m", "ensurepip", "--default-pip"], check=True, capture_output=True)
            site = _site_packages(python)
            for name in _torch_distributions():
                _link_distribution(name, site)
            _pip(python, [*PINS, *WORKER_NEEDS], log)
            installed = _installed(python)
        except BaseException:
            shutil.rmtree(root, ignore_errors=True)
            raise
        info = {"pins": list(PINS), "installed": installed, "torch": installed.get("torch", "?")}
        with tempfile.NamedTemporaryFile("w", dir=root, delete=False) as handle:
            json.dump(info, handle, indent=1)
        os.replace(handle.name, root / MARKER)
    found = locate()
    assert found is not None
    return found


def require() -> OfficialEnv:
    """The official environment, or a HarnessError saying how to create it."""
    found = locate()
    if found is None:
        raise HarnessError(
            "the official environment does not exist yet: run `unlearn-harness env official` "
            "(a minute, needs the package index once)"
        )
    return found


class WorkerHandle:
    """worker.py running in an official environment (`start_worker`). It starts at once and does its
    imports (seconds) while the caller goes on; `submit` sends the one request (on stdin), `result` waits
    for the answer, `cancel` ends it. ``capture``: its output goes to a file (the last line is quoted where
    it fails), not to the caller's terminal, so that a background worker does not write over a progress bar;
    ``background``: at the lowest CPU priority (it takes only the CPU time nothing else wants)."""

    def __init__(
        self, env: OfficialEnv, *, progress: bool = True, capture: bool = False, background: bool = False
    ) -> None:
        self.python = env.python
        self._tmp = tempfile.TemporaryDirectory(prefix="official-worker-")
        folder = Path(self._tmp.name)
        self._answer_path, self._log_path = folder / "answer.json", folder / "stderr.log"
        environ = {**os.environ, "PYTHONPATH": str(SOURCE_ROOT), "PYTHONNOUSERSITE": "1"}
        environ.setdefault("HF_HUB_OFFLINE", "1")
        command = [str(env.python), "-m", "harness.envs.worker", "-", str(self._answer_path)]
        command += ["--quiet"] * (not progress) + ["--background"] * background
        # the worker's output (progress, transformers' messages) goes to stderr: stdout stays the caller's
        log = open(self._log_path, "wb") if capture else None  # noqa: SIM115 - the child holds it; closed below
        try:
            # its own session: `cancel` ends it with whatever it started
            self._process = subprocess.Popen(
                command, env=environ, stdin=subprocess.PIPE, stdout=log or 2, stderr=log,
                start_new_session=True,
            )  # fmt: skip
        except OSError as error:
            self._tmp.cleanup()
            raise HarnessError(
                f"the official environment's interpreter {env.python} cannot start ({error})"
            ) from None
        finally:
            if log is not None:
                log.close()
        self._submitted = False
        self._outcome: dict | HarnessError | None = None

    def submit(self, request: dict) -> WorkerHandle:
        """Send the worker its request (once); it runs it as soon as its imports are done."""
        if self._submitted:
            raise HarnessError("the official environment's worker takes one request")
        self._submitted = True
        try:
            self._process.stdin.write(json.dumps(request).encode())
            self._process.stdin.close()
        except OSError:
            pass  # it has already exited: `result` says how
        return self

    def done(self) -> bool:
        """Whether the worker has exited (its answer is then ready)."""
        return self._outcome is not None or self._process.poll() is not None

    def result(self, timeout: float | None = None) -> dict:
        """The worker's JSON answer, waiting up to `timeout` seconds (None: as long as it takes); a
        HarnessError (one line) where it answered an error, exited without an answer or ran out of time."""
        if self._outcome is None and not self._submitted:
            raise HarnessError("the official environment's worker was given no request (WorkerHandle.submit)")
        if self._outcome is None:
            self._outcome = self._collect(timeout)
        if isinstance(self._outcome, HarnessError):
            raise self._outcome
        return self._outcome

    def _collect(self, timeout: float | None) -> dict | HarnessError:
        try:
            returncode = self._process.wait(timeout)
        except BaseException as error:  # out of time, or an interrupt: the worker does not outlive the wait
            self.cancel()
            if not isinstance(error, subprocess.TimeoutExpired):
                raise
            return HarnessError(
                f"the official environment's worker ({self.python}) gave no answer in {timeout:g} s"
            )
        try:
            if not self._answer_path.is_file():
                return HarnessError(
                    f"the official environment's worker ({self.python}) exited with status {returncode} "
                    f"without an answer ({self._last_log_line() or 'its traceback is above'})"
                )
            answer = json.loads(self._answer_path.read_text())
        finally:
            self._tmp.cleanup()
        return HarnessError(answer["error"]) if "error" in answer else answer

    def _last_log_line(self) -> str:
        try:
            lines = self._log_path.read_text(errors="replace").strip().splitlines()
        except OSError:
            return ""
        return lines[-1].strip() if lines else ""

    def cancel(self) -> None:
        """End the worker and what it started where it still runs (nothing is answered); a no-op once it
        has exited."""
        if self._process.poll() is None:
            try:
                os.killpg(self._process.pid, signal.SIGKILL)
            except (AttributeError, OSError):  # no process groups here, or it has just exited
                self._process.kill()
            self._process.wait()
        if not self._process.stdin.closed:
            self._process.stdin.close()
        if self._outcome is None:
            self._outcome = HarnessError(f"the official environment's worker ({self.python}) was cancelled")
        self._tmp.cleanup()


def start_worker(
    env: OfficialEnv, request: dict | None = None, *, progress: bool = True, capture: bool = False,
    background: bool = False,
) -> WorkerHandle:  # fmt: skip
    """Start worker.py in `env` and return at once (see `WorkerHandle`); `request`: submitted now, else
    by the caller once it knows it (the worker's imports then overlap with what the caller does first)."""
    handle = WorkerHandle(env, progress=progress, capture=capture, background=background)
    return handle if request is None else handle.submit(request)


def run_worker(env: OfficialEnv, request: dict, *, progress: bool = True) -> dict:
    """Run worker.py in `env` on one request; its JSON answer (a HarnessError where it failed)."""
    return start_worker(env, request, progress=progress).result()


def evaluate(env: OfficialEnv, checkpoint: Path, task, run_dir: Path, *, dtype: str | None = None,
             device: str | None = None, progress: bool = True, limit: int | None = None) -> dict:  # fmt: skip
    """The exact path, MMLU and scoring of `checkpoint` on `task` in `env`, into `run_dir` (``limit``: the
    first rows only, as `harness.inference.evaluate`): the worker's answer (``results``: the official results object, ``timings``, ``transformers``)."""
    request = {"verb": "evaluate", "checkpoint": str(Path(checkpoint).resolve()), "task": task_summary(task),
               "run_dir": str(Path(run_dir).resolve()), "dtype": dtype, "device": device,
               "limit": limit}  # fmt: skip
    return run_worker(env, request, progress=progress)


class PendingLoad:
    """The load of one checkpoint in an official environment, in the background (`start_load`): the
    worker may start before the checkpoint exists (`prepare_load`), `begin` then names it."""

    def __init__(self, worker: WorkerHandle) -> None:
        self.worker = worker

    def begin(self, checkpoint: Path) -> PendingLoad:
        """Load `checkpoint` (once the worker's imports are done)."""
        self.worker.submit({"verb": "load", "checkpoint": str(Path(checkpoint).resolve())})
        return self

    def result(self, timeout: float | None = None) -> str | None:
        """None where the checkpoint loaded; else the problem (the error's first line). A HarnessError where
        the worker failed or gave no answer within `timeout` seconds (it is then ended)."""
        answer = self.worker.result(timeout)
        return None if answer["loads"] else answer["problem"]

    def cancel(self) -> None:
        self.worker.cancel()


def prepare_load(env: OfficialEnv) -> PendingLoad:
    """Start a worker in `env` for one load, before the checkpoint is known: its imports (most of the
    seconds) run meanwhile; `PendingLoad.begin` names the checkpoint. Its output is kept off the terminal."""
    return PendingLoad(start_worker(env, progress=False, capture=True, background=True))


def start_load(env: OfficialEnv, checkpoint: Path) -> PendingLoad:
    """Start loading `checkpoint` with AutoTokenizer and AutoModelForCausalLM in `env` (another interpreter,
    a few seconds) and return at once."""
    return prepare_load(env).begin(checkpoint)


def loads(env: OfficialEnv, checkpoint: Path) -> str | None:
    """None where `checkpoint` loads with AutoTokenizer and AutoModelForCausalLM in `env`; else the problem."""
    return start_load(env, checkpoint).result()
