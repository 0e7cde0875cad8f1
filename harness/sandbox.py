"""Staging a fresh work directory and running a submission in an isolated, time-budgeted child.

`stage` builds the work directory: the model (read-only), forget/ and retain/ (jsonl and parquet),
an empty out/, a private home; nothing else of the task. `run` starts the child (the entry module
under python, torchrun or accelerate) in its own process group, isolated by bubblewrap where present
(read-only root, private /tmp, only out/ writable, no network, PID namespace, task folders masked),
else `unshare --net`, else a plain child (with a warning). The environment is scrubbed of credentials
and carries HF_HUB_OFFLINE=1 and HARNESS_DEADLINE. The budget clock starts with the child; at expiry
the whole tree gets SIGTERM, then SIGKILL after a grace period. Peak RSS of the tree is polled.
"""

from __future__ import annotations

import fnmatch
import json
import os
import shutil
import signal
import stat
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path

import psutil

from harness.errors import HarnessError
from tasks.spec import TaskSpec

ENTRY = Path(__file__).resolve().with_name("entry.py")
ZERO3_CONFIG = Path(__file__).resolve().parent / "configs" / "accelerate_zero3.yaml"
ISOLATIONS = ("bwrap", "unshare", "none")
LAUNCHERS = ("python", "torchrun", "accelerate")
#: environment variables never passed to a submission (credentials and harness internals)
SCRUBBED = (
    "*TOKEN*",
    "*_KEY",
    "*_KEY_*",
    "*SECRET*",
    "*PASSWORD*",
    "*PASSWD*",
    "*CREDENTIAL*",
    "AWS_*",
    "AZURE_*",
    "GOOGLE_*",
    "GH_*",
    "GITHUB_*",
    "SSH_AUTH_SOCK",
    "NETRC",
    "UNLEARN_HARNESS_*",
)
POLL_S = 0.1
TAG_VAR = "HARNESS_RUN_TAG"


@dataclass(frozen=True)
class StagedRun:
    """The work directory of one run, as the child sees it."""

    workdir: Path
    model_dir: Path
    forget_dir: Path
    retain_dir: Path
    out_dir: Path
    home_dir: Path
    control_dir: Path  # spec.json (read-only in the sandbox) and results/ (writable)
    submission: Path  # the staged copy of the submission file (with its sibling modules)
    #: the task's model directory, bind-mounted read-only at model_dir under bubblewrap (else copied)
    model_source: Path
    model_copied: bool

    @property
    def result_dir(self) -> Path:
        return self.control_dir / "results"


@dataclass
class SandboxResult:
    """What happened to the child: exit, time, memory, and what the entry module reported."""

    returncode: int | None
    wall_s: float
    timed_out: bool = False
    killed_for_memory: bool = False
    peak_rss_mb: float = 0.0
    peak_gpu_mb: float | None = None
    #: one dict per rank, as written by harness/entry.py
    entry_results: list[dict] = field(default_factory=list)
    violations: list[str] = field(default_factory=list)
    isolation: str = "none"
    command: list[str] = field(default_factory=list)
    stdout_path: Path | None = None
    stderr_path: Path | None = None
    leftover_killed: int = 0
    warnings: list[str] = field(default_factory=list)


@cache
def _works(*command: str) -> bool:
    try:
        return subprocess.run(command, capture_output=True, timeout=20).returncode == 0
    except (OSError, subprocess.SubprocessError):
        return False


def _unshare_prefix() -> list[str] | None:
    if shutil.which("unshare") is None:
        return None
    for prefix in (["unshare", "--net"], ["unshare", "--net", "--map-root-user"]):
        if _works(*prefix, "true"):
            return prefix
    return None


def detect_isolation(requested: str = "auto") -> str:
    """The isolation to use: the requested one (error when unavailable) or the best available."""
    bwrap_ok = shutil.which("bwrap") is not None and _works(
        "bwrap",
        "--ro-bind",
        "/",
        "/",
        "--dev",
        "/dev",
        "--proc",
        "/proc",
        "--unshare-net",
        "--unshare-pid",
        "true",
    )
    available = {"bwrap": bwrap_ok, "unshare": _unshare_prefix() is not None, "none": True}
    if requested == "auto":
        return next(mode for mode in ISOLATIONS if available[mode])
    if requested not in available:
        raise HarnessError(f"unknown isolation '{requested}' (choose from auto, {', '.join(ISOLATIONS)})")
    if not available[requested]:
        raise HarnessError(
            f"isolation '{requested}' is not available here (install bubblewrap: apt-get install bubblewrap)"
        )
    return requested


def scrubbed_env(base: dict[str, str], *, deadline: float, home: Path, tag: str) -> dict[str, str]:
    """The child's environment: `base` without credentials, offline, with a private home and the deadline."""
    env = {k: v for k, v in base.items() if not any(fnmatch.fnmatchcase(k.upper(), p) for p in SCRUBBED)}
    cache_dir = home / ".cache"
    env.update(
        HOME=str(home),
        XDG_CACHE_HOME=str(cache_dir),
        HF_HOME=str(cache_dir / "huggingface"),
        TRITON_CACHE_DIR=str(cache_dir / "triton"),
        TMPDIR=str(home / "tmp"),
        HF_HUB_OFFLINE="1",
        TRANSFORMERS_OFFLINE="1",
        HF_DATASETS_OFFLINE="1",
        WANDB_MODE="disabled",
        PYTHONUNBUFFERED="1",
        HARNESS_DEADLINE=f"{deadline:.3f}",
    )
    env[TAG_VAR] = tag
    return env


def task_paths(task: TaskSpec) -> list[Path]:
    """The folders holding the task's data, none of which the submission may see directly."""
    files = [task.eval_forget, task.eval_retain, task.mia_member, task.mia_nonmember]
    folders = [task.mmlu_dir, task.forget_dir, task.retain_dir, task.model_dir, task.gold_model_dir]
    paths = [Path(p).resolve().parent for p in files if p is not None]
    paths += [Path(p).resolve() for p in folders if p is not None]
    return sorted(set(paths))


def _copy_model(source: Path, target: Path) -> None:
    shutil.copytree(source, target, symlinks=False)
    for path in sorted(target.rglob("*"), reverse=True) + [target]:
        mode = path.stat().st_mode
        path.chmod(mode & ~(stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH))


def stage(
    task: TaskSpec, workdir: Path, submission: Path, siblings: dict[str, Path], *, isolation: str
) -> StagedRun:
    """Build the fresh work directory of a run (nothing here is charged to the budget)."""
    from tasks.data import read_split, write_split

    workdir = Path(workdir).resolve()
    if workdir.exists() and any(workdir.iterdir()):
        raise HarnessError(f"{workdir}: work directory is not empty")
    model_dir, out_dir, home, control = (
        workdir / "model",
        workdir / "out",
        workdir / "home",
        workdir / "control",
    )
    for folder in (out_dir, home / "tmp", control / "results"):
        folder.mkdir(parents=True)
    source = Path(task.model_dir).resolve()
    copied = isolation != "bwrap"
    if copied:
        _copy_model(source, model_dir)
    else:
        model_dir.mkdir()
    dirs = {}
    for name, folder in (("forget", task.forget_dir), ("retain", task.retain_dir)):
        dirs[name] = workdir / name
        write_split(read_split(Path(folder), name), dirs[name], name)
    code = workdir / "submission"
    code.mkdir()
    staged_submission = code / Path(submission).name
    shutil.copy2(submission, staged_submission)
    folder = Path(submission).resolve().parent
    for path in siblings.values():
        target = code / Path(path).resolve().relative_to(folder)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(path, target)
    return StagedRun(
        workdir=workdir,
        model_dir=model_dir,
        forget_dir=dirs["forget"],
        retain_dir=dirs["retain"],
        out_dir=out_dir,
        home_dir=home,
        control_dir=control,
        submission=staged_submission,
        model_source=source,
        model_copied=copied,
    )


def _launcher_command(launcher: str, processes: int, spec_path: Path) -> tuple[list[str], list[str]]:
    """(command, warnings) that run the entry module `processes` times under `launcher`."""
    warnings: list[str] = []
    entry = [str(ENTRY), str(spec_path)]
    if launcher == "python":
        if processes != 1:
            raise HarnessError("--processes N > 1 needs --launcher torchrun or accelerate")
        return [sys.executable, "-u", *entry], warnings
    if launcher == "torchrun":
        return [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--standalone",
            f"--nproc_per_node={processes}",
            *entry,
        ], warnings
    if launcher == "accelerate":
        command = [sys.executable, "-m", "accelerate.commands.launch", "--num_processes", str(processes)]
        try:
            import deepspeed  # noqa: F401
        except ImportError:
            warnings.append(
                "deepspeed is not installed: running under accelerate without the organisers' DeepSpeed ZeRO-3 "
                "config (pip install deepspeed to use harness/configs/accelerate_zero3.yaml)"
            )
            # several processes: accelerate's torchrun-based launcher (it runs on CPU too when no GPU is there)
            command += ["--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no"]
            command += ["--multi_gpu"] if processes > 1 else []
        else:
            command += ["--config_file", str(ZERO3_CONFIG)]
        return [*command, *entry], warnings
    raise HarnessError(f"unknown launcher '{launcher}' (choose from {', '.join(LAUNCHERS)})")


def _keep_out(path: Path, keep: list[Path]) -> bool:
    """True if masking `path` would hide something the child needs (python, the harness, its workdir...)."""
    return path == Path("/") or any(k == path or path in k.parents for k in keep)


def _bwrap_prefix(staged: StagedRun, hidden: list[Path]) -> list[str]:
    keep = [Path(p).resolve() for p in (sys.prefix, sys.base_prefix, ENTRY.parent, Path.home())]
    args = ["bwrap", "--ro-bind", "/", "/", "--dev", "/dev", "--proc", "/proc", "--tmpfs", "/tmp"]
    args += ["--tmpfs", "/dev/shm"]
    for device in sorted(Path("/dev").glob("nvidia*")):
        args += ["--dev-bind", str(device), str(device)]
    masked: list[Path] = []
    for path in sorted(Path(p).resolve() for p in hidden):
        if _keep_out(path, keep) or path == Path("/tmp") or Path("/tmp") in path.parents:
            continue
        if any(m == path or m in path.parents for m in masked) or not path.is_dir():
            continue
        masked.append(path)
        args += ["--tmpfs", str(path)]
    w = staged.workdir
    args += ["--ro-bind", str(w), str(w), "--ro-bind", str(staged.model_source), str(staged.model_dir)]
    for writable in (staged.out_dir, staged.home_dir, staged.result_dir):
        args += ["--bind", str(writable), str(writable)]
    args += [
        "--unshare-net",
        "--unshare-pid",
        "--new-session",
        "--die-with-parent",
        "--chdir",
        str(staged.home_dir),
        "--",
    ]
    return args


class _Monitor(threading.Thread):
    """Polls the child's process tree: peak RSS, every pid seen, and the memory cap."""

    def __init__(self, root: psutil.Process, memory_cap_mb: float | None) -> None:
        super().__init__(daemon=True)
        self.root = root
        self.cap = memory_cap_mb
        self.peak_mb = 0.0
        self.seen: dict[int, psutil.Process] = {}
        self.over_cap = threading.Event()
        self.stop = threading.Event()

    def tree(self) -> list[psutil.Process]:
        try:
            return [self.root, *self.root.children(recursive=True)]
        except psutil.Error:
            return []

    def run(self) -> None:
        while not self.stop.is_set():
            total = 0
            for proc in self.tree():
                self.seen.setdefault(proc.pid, proc)
                try:
                    total += proc.memory_info().rss
                except psutil.Error:
                    continue
            self.peak_mb = max(self.peak_mb, total / 2**20)
            if self.cap is not None and total / 2**20 > self.cap:
                self.over_cap.set()
            self.stop.wait(POLL_S)


def _tagged(tag: str, since: float) -> list[psutil.Process]:
    """Processes started since `since` that carry this run's tag in their environment."""
    found = []
    for proc in psutil.process_iter(["create_time"]):
        try:
            if (proc.info["create_time"] or 0) < since - 1 or proc.pid == os.getpid():
                continue
            if proc.environ().get(TAG_VAR) == tag:
                found.append(proc)
        except psutil.Error:
            continue
    return found


def _alive(proc: psutil.Process) -> bool:
    try:
        return proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def _terminate(procs: list[psutil.Process], grace_s: float) -> int:
    """SIGTERM, wait up to `grace_s`, then SIGKILL the rest; returns how many were alive."""
    alive = [p for p in procs if _alive(p)]
    count = len(alive)
    for sig, wait in ((signal.SIGTERM, grace_s), (signal.SIGKILL, 5.0)):
        for proc in alive:
            try:
                proc.send_signal(sig)
            except psutil.Error:
                continue
        until = time.monotonic() + wait
        while alive and time.monotonic() < until:
            psutil.wait_procs(alive, timeout=POLL_S)  # reaps our own children; others are polled
            alive = [p for p in alive if _alive(p)]
        if not alive:
            break
    return count


def run(
    staged: StagedRun,
    *,
    budget_s: float,
    kwargs: dict,
    log_dir: Path,
    launcher: str = "python",
    processes: int = 1,
    isolation: str = "none",
    hidden: list[Path] | None = None,
    memory_cap_mb: float | None = None,
    grace_s: float = 10.0,
    tag: str = "",
) -> SandboxResult:
    """Run the staged submission once; never raises for anything the submission does."""
    hidden = [Path(p) for p in hidden or []]
    spec_path = staged.control_dir / "spec.json"
    cuda = any(Path("/dev").glob("nvidia[0-9]*"))
    spec = {
        "submission": str(staged.submission),
        "args": [str(staged.model_dir), str(staged.out_dir), str(staged.forget_dir), str(staged.retain_dir)],
        "kwargs": kwargs,
        "result_dir": str(staged.result_dir),
        "forbidden": [str(p) for p in hidden],
        "allowed": [str(staged.workdir)],
        # RLIMIT_AS breaks CUDA (it reserves huge address ranges): on GPUs the cap is polled only
        "memory_cap_bytes": int(memory_cap_mb * 2**20) if memory_cap_mb and not cuda else None,
    }
    spec_path.write_text(json.dumps(spec, indent=1))
    command, warnings = _launcher_command(launcher, processes, spec_path)
    if isolation == "bwrap":
        command = _bwrap_prefix(staged, hidden) + command
    elif isolation == "unshare":
        command = (_unshare_prefix() or []) + ["--", *command]
    else:
        warnings.append(
            "no isolation: bubblewrap and unshare are unavailable, so the submission runs as a plain child "
            "with network access and the whole file system visible (install bubblewrap)"
        )
    log_dir.mkdir(parents=True, exist_ok=True)
    stdout_path, stderr_path = log_dir / "stdout.log", log_dir / "stderr.log"
    result = SandboxResult(
        returncode=None, wall_s=0.0, isolation=isolation, command=command, warnings=warnings,
        stdout_path=stdout_path, stderr_path=stderr_path,
    )  # fmt: skip
    started = time.time()
    env = scrubbed_env(dict(os.environ), deadline=started + budget_s, home=staged.home_dir, tag=tag)
    with open(stdout_path, "wb") as out, open(stderr_path, "wb") as err:
        try:
            child = subprocess.Popen(
                command, stdout=out, stderr=err, stdin=subprocess.DEVNULL, env=env, cwd=staged.home_dir,
                start_new_session=True,
            )  # fmt: skip
        except OSError as exc:
            raise HarnessError(f"cannot start the submission: {exc}") from exc
        monitor = _Monitor(psutil.Process(child.pid), memory_cap_mb)
        monitor.start()
        deadline = started + budget_s
        try:
            while child.poll() is None:
                if time.time() >= deadline:
                    result.timed_out = True
                    break
                if monitor.over_cap.is_set():
                    result.killed_for_memory = True
                    break
                time.sleep(POLL_S)
        except BaseException:  # interrupted (Ctrl-C): take the whole tree down before going
            _terminate(monitor.tree() + _tagged(tag, started), 1.0)
            raise
        if child.poll() is None:
            _terminate(monitor.tree() + _tagged(tag, started), grace_s)
        child.wait()
        result.wall_s = time.time() - started
        monitor.stop.set()
        monitor.join()
        leftovers = [p for p in monitor.seen.values() if p.is_running()] + _tagged(tag, started)
        leftovers = [
            p for p in {p.pid: p for p in leftovers}.values() if p.is_running() and p.pid != child.pid
        ]
        if leftovers:
            result.leftover_killed = _terminate(leftovers, min(grace_s, 2.0))
    result.returncode = child.returncode
    result.peak_rss_mb = monitor.peak_mb
    for path in sorted(staged.result_dir.glob("result-*.json")):
        try:
            result.entry_results.append(json.loads(path.read_text()))
        except ValueError:
            continue
    result.violations = sorted({v for r in result.entry_results for v in r.get("violations", [])})
    gpu = [r["peak_gpu_mb"] for r in result.entry_results if r.get("peak_gpu_mb") is not None]
    result.peak_gpu_mb = max(gpu) if gpu else None
    return result


def cleanup(staged: StagedRun) -> None:
    """Remove the staged copies (model, data, home) once the run is over; out/ and control/ stay."""
    for folder in (staged.model_dir, staged.home_dir, staged.forget_dir, staged.retain_dir):
        if not folder.exists():
            continue
        for path in [folder, *folder.rglob("*")]:
            if path.is_dir() and not path.is_symlink():
                path.chmod(path.stat().st_mode | stat.S_IWUSR | stat.S_IXUSR)
        shutil.rmtree(folder, ignore_errors=True)


def tail(path: Path | None, lines: int = 20) -> str:
    """The last `lines` lines of a log file ('' when absent)."""
    if path is None or not Path(path).is_file():
        return ""
    with open(path, "rb") as handle:
        handle.seek(0, os.SEEK_END)
        size = handle.tell()
        handle.seek(max(0, size - 64 * 1024))
        text = handle.read().decode("utf-8", errors="replace")
    return "\n".join(text.splitlines()[-lines:])
