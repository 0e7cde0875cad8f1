"""Staging a fresh work directory and running a submission in an isolated, time-budgeted child.

`stage` builds the work directory: forget/ and retain/ (jsonl and parquet), the submission's code, an
empty out/, a private home, the control folder (the entry module's spec, read-only to the child, and
its results folder); the model is bound read-only from the task (copied only when unisolated). `run`
starts the child (the entry module under python, torchrun or accelerate) inside the view of
harness/isolation (bubblewrap or the unshare jail; `none` only when asked for), in a memory cgroup
where one can be made, with a scrubbed environment (no credentials, HF_HUB_OFFLINE=1,
HARNESS_DEADLINE). The budget clock starts with the child; at expiry the whole tree gets SIGTERM, then
SIGKILL after a grace period; a child that ends after its deadline (e.g. because the harness was
paused) has timed out all the same. stdout and stderr are logged with a bounded head and tail.
"""

from __future__ import annotations

import fnmatch
import json
import os
import re
import shutil
import signal
import stat
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import psutil

from harness import isolation as views
from harness.errors import HarnessError
from harness.isolation import ISOLATIONS, detect_isolation  # noqa: F401 - re-exported for the runner and CLI
from harness.isolation import cgroup as cgroups
from harness.isolation import command as isolation_command
from harness.isolation.logs import capture
from tasks.determinism import reproducible_cpu_env
from tasks.spec import TaskSpec

ENTRY = Path(__file__).resolve().with_name("entry.py")
ZERO3_CONFIG = Path(__file__).resolve().parent / "configs" / "accelerate_zero3.yaml"
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
#: torch's threads in a CPU child: fixed, since a reduction's order (and so its rounding) follows the
#: thread count; one, since on a shared 2-core machine a second thread mostly waits for the first
CHILD_THREADS = 1
#: a gap this long between two polls means the harness itself was paused (SIGSTOP, a frozen machine)
STALL_S = 2.0
#: what the child may overrun its deadline by, on its own clock, before it counts as timed out
LATE_S = 0.5
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
    #: the task's model was copied to model_dir (unisolated); else model_binds show it there
    model_copied: bool
    #: (source, destination) of every model file in the view: the task's own files where the sandbox uid
    #: can read them, private copies of those it cannot
    model_binds: tuple[tuple[Path, Path], ...] = ()

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
    #: the longest pause of the harness while the child ran (a sign that the budget was not enforced)
    stalled_s: float = 0.0
    #: the kernel settings the child ran under (tasks.determinism; empty on GPUs)
    kernels: dict[str, str] = field(default_factory=dict)


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


def _model_binds(source: Path, target: Path) -> tuple[list[tuple[Path, Path]], int]:
    """(read-only binds, bytes copied) that show the model's files at `target` to the sandbox uid:
    symbolic links (a hub snapshot's) resolved, files only their owner may read copied (readable)."""
    binds: list[tuple[Path, Path]] = []
    copied = 0
    strict = views.sandbox_ids() is not None  # another uid reads them: "other" must be allowed to
    for path in sorted(source.rglob("*")):
        real = path.resolve()
        if not real.is_file():
            continue
        dest = target / path.relative_to(source)
        if not strict or real.stat().st_mode & stat.S_IROTH:
            binds.append((real, dest))
            continue
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(real, dest)
        dest.chmod(0o444)
        binds.append((dest, dest))
        copied += dest.stat().st_size
    return binds, copied


def _readable(folder: Path) -> None:
    """Let the sandbox uid read what the harness staged (whatever the umask was)."""
    for path in [folder, *folder.rglob("*")]:
        path.chmod(
            path.stat().st_mode | stat.S_IRUSR | stat.S_IRGRP | stat.S_IROTH | (0o111 if path.is_dir() else 0)
        )


def _hand_over(folders: list[Path]) -> None:
    """Make the writable folders the sandbox uid's own (when the harness is root)."""
    ids = views.sandbox_ids()
    for folder in folders:
        if ids:
            os.chown(folder, *ids)
        folder.chmod(0o755 if ids else 0o700)


def stage(
    task: TaskSpec, workdir: Path, submission: Path, siblings: dict[str, Path], *, isolation: str
) -> StagedRun:
    """Build the fresh work directory of a run (nothing here is charged to the budget)."""
    # Stays whole: the work directory's pieces in the order the child's view lists them.
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
    copied = isolation == "none"
    binds: list[tuple[Path, Path]] = []
    if copied:
        _copy_model(source, model_dir)
    else:
        model_dir.mkdir()
        binds, copied_bytes = _model_binds(source, model_dir)
        if copied_bytes > 2**30:
            print(
                f"note: {copied_bytes / 2**30:.1f} GiB of model files in {source} are readable by their owner "
                "only and were copied for the sandbox; 'chmod o+r' them to have them bound instead",
                file=sys.stderr,
            )
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
    if isolation != "none":
        for readable in (dirs["forget"], dirs["retain"], code):
            _readable(readable)
        _hand_over([out_dir, home, home / "tmp", control / "results"])
    return StagedRun(
        workdir=workdir,
        model_dir=model_dir,
        forget_dir=dirs["forget"],
        retain_dir=dirs["retain"],
        out_dir=out_dir,
        home_dir=home,
        control_dir=control,
        submission=staged_submission,
        model_copied=copied,
        model_binds=tuple(binds),
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


def view_of(
    staged: StagedRun, spec_path: Path, hidden: list[Path], memory_cap_mb: float | None
) -> views.View:
    """The child's file system: the system, python, the entry module and the work directory's pieces."""
    readonly = list(staged.model_binds) if not staged.model_copied else [(staged.model_dir, staged.model_dir)]
    readonly += [(staged.forget_dir, staged.forget_dir)]
    readonly += [(staged.retain_dir, staged.retain_dir), (staged.submission.parent, staged.submission.parent)]
    readonly += [(spec_path, spec_path)]
    return views.build_view(
        readonly=readonly,
        writable=[staged.out_dir, staged.home_dir, staged.result_dir],
        files=[ENTRY, views.JAIL, ZERO3_CONFIG],
        hidden=hidden,
        cwd=staged.home_dir,
        tmp_size=int(memory_cap_mb * 2**20) if memory_cap_mb else None,
    )


def _shared_memory_bytes(proc: psutil.Process, seen: set[tuple[int, int]]) -> int:
    """Bytes of memfd and /dev/shm files the process holds open (RSS misses pages nobody maps)."""
    total = 0
    try:
        fds = os.listdir(f"/proc/{proc.pid}/fd")
    except OSError:
        return 0
    for fd in fds:
        try:
            link = os.readlink(f"/proc/{proc.pid}/fd/{fd}")
            if not (link.startswith("/memfd:") or link.startswith("/dev/shm/")):
                continue
            info = os.stat(f"/proc/{proc.pid}/fd/{fd}")
        except OSError:
            continue
        if (info.st_dev, info.st_ino) not in seen:
            seen.add((info.st_dev, info.st_ino))
            total += info.st_size
    return total


class _Monitor(threading.Thread):
    """Polls the child's process tree: peak memory (RSS and shared-memory files), every pid seen, the cap."""

    def __init__(self, root: psutil.Process, memory_cap_mb: float | None, shared: bool = True) -> None:
        super().__init__(daemon=True)
        self.root = root
        self.cap = memory_cap_mb
        #: also count memfd and /dev/shm files (a walk of every open fd: only where no cgroup counts them)
        self.shared = shared
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
            shared: set[tuple[int, int]] = set()
            for proc in self.tree():
                self.seen.setdefault(proc.pid, proc)
                try:
                    total += proc.memory_info().rss
                    total += _shared_memory_bytes(proc, shared) if self.shared else 0
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


def _write_spec(
    staged: StagedRun,
    kwargs: dict,
    hidden: list[Path],
    mode: str,
    memory_cap_mb: float | None,
    seed: int | None,
) -> Path:
    """The entry module's instructions; a hidden path is named only to an unisolated child (its audit hook)."""
    cuda = any(Path("/dev").glob("nvidia[0-9]*"))
    spec = {
        "submission": str(staged.submission),
        "args": [str(staged.model_dir), str(staged.out_dir), str(staged.forget_dir), str(staged.retain_dir)],
        "kwargs": kwargs,
        "result_dir": str(staged.result_dir),
        "forbidden": [str(p) for p in hidden] if mode == "none" else [],
        "allowed": [str(staged.workdir), *views.view.python_paths()],
        # isolated, the loopback is the sandbox's own (torchrun's rendezvous); unisolated, it is the host's
        "block_loopback": mode == "none",
        # RLIMIT_AS breaks CUDA (it reserves huge address ranges): on GPUs the cap is polled only
        "memory_cap_bytes": int(memory_cap_mb * 2**20) if memory_cap_mb and not cuda else None,
        # the run seed: Python, NumPy and torch are seeded with it before the submission is imported
        "seed": seed,
    }
    path = staged.control_dir / "spec.json"
    path.write_text(json.dumps(spec, indent=1))
    path.chmod(0o644)
    return path


def _command(
    staged: StagedRun,
    spec_path: Path,
    launcher: str,
    processes: int,
    isolation: str,
    hidden: list[Path],
    memory_cap_mb: float | None,
) -> tuple[list[str], list[str]]:
    """(full command line, warnings): the launcher's command inside the run's view under `isolation`."""
    argv, warnings = _launcher_command(launcher, processes, spec_path)
    view = view_of(staged, spec_path, hidden, memory_cap_mb)
    if isolation == "none":
        warnings.append(
            "no isolation (--isolation none): the submission ran as a plain child that could read the whole "
            "file system, reach the network and write the results folder; its record is marked unisolated"
        )
    return isolation_command(isolation, view, argv, staged.control_dir), warnings


def _child_settings(env: dict[str, str], seed: int | None) -> dict[str, str]:
    """Add the run seed and, on CPU, the fixed kernels (tasks.determinism) to the child's
    environment; returns the kernel settings (none on a GPU machine)."""
    if seed is not None:
        env["PYTHONHASHSEED"] = str(seed)
    if any(Path("/dev").glob("nvidia[0-9]*")):
        return {}
    kernels = reproducible_cpu_env(CHILD_THREADS)
    env.update(kernels)
    return kernels


def _watch(child: subprocess.Popen, monitor: _Monitor, result: SandboxResult, budget_s: float) -> None:
    """Wait for the child, the budget or the memory cap, whichever comes first; note pauses of our own."""
    started = last = time.monotonic()
    while child.poll() is None:
        now = time.monotonic()
        result.stalled_s = max(result.stalled_s, now - last - POLL_S)
        last = now
        if now - started >= budget_s:
            result.timed_out = True
            return
        if monitor.over_cap.is_set():
            result.killed_for_memory = True
            return
        time.sleep(POLL_S)
    now = time.monotonic()
    result.stalled_s = max(result.stalled_s, now - last - POLL_S)
    if now - started > budget_s + LATE_S:  # it finished after its deadline, unseen
        result.timed_out = True


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
    on_output=None,
    seed: int | None = None,
) -> SandboxResult:
    """Run the staged submission once; never raises for anything the submission does.

    `on_output(stream, chunk)`, when given, sees the child's output as it comes ("stdout"/"stderr", bytes).
    """
    hidden = [Path(p) for p in hidden or []]
    spec_path = _write_spec(staged, kwargs, hidden, isolation, memory_cap_mb, seed)
    command, warnings = _command(staged, spec_path, launcher, processes, isolation, hidden, memory_cap_mb)
    group = cgroups.create(tag or str(os.getpid()), memory_cap_mb)
    log_dir.mkdir(parents=True, exist_ok=True)
    stdout_path, stderr_path = log_dir / "stdout.log", log_dir / "stderr.log"
    result = SandboxResult(
        returncode=None, wall_s=0.0, isolation=isolation, command=command, warnings=warnings,
        stdout_path=stdout_path, stderr_path=stderr_path,
    )  # fmt: skip
    echo = (lambda name: lambda chunk: on_output(name, chunk)) if on_output else (lambda name: None)  # noqa: E731
    out_fd, out_log = capture(stdout_path, on_chunk=echo("stdout"))
    err_fd, err_log = capture(stderr_path, on_chunk=echo("stderr"))
    started = time.time()
    env = scrubbed_env(dict(os.environ), deadline=started + budget_s, home=staged.home_dir, tag=tag)
    result.kernels = _child_settings(env, seed)
    try:
        child = subprocess.Popen(
            command, stdout=out_fd, stderr=err_fd, stdin=subprocess.DEVNULL, env=env, cwd=staged.home_dir,
            start_new_session=True, preexec_fn=group.enter if group else None,
        )  # fmt: skip
    except OSError as exc:
        raise HarnessError(f"cannot start the submission: {exc}") from exc
    finally:
        os.close(out_fd)
        os.close(err_fd)
    monitor = _Monitor(psutil.Process(child.pid), memory_cap_mb, shared=group is None)
    monitor.start()
    try:
        _watch(child, monitor, result, budget_s)
    except BaseException:  # interrupted (Ctrl-C): take the whole tree down before going
        _terminate(monitor.tree() + _tagged(tag, started), 1.0)
        if group:
            group.remove()
        raise
    _end(child, monitor, group, result, tag=tag, started=started, grace_s=grace_s)
    for log in (out_log, err_log):
        log.join(timeout=5.0)
    result.returncode = child.returncode
    result.peak_rss_mb = monitor.peak_mb
    _read_results(staged, result)
    return result


def _end(
    child: subprocess.Popen,
    monitor: _Monitor,
    group,
    result: SandboxResult,
    *,
    tag: str,
    started: float,
    grace_s: float,
) -> None:
    """Stop the child if it still runs, then every process of the run left behind; note what happened."""
    if child.poll() is None:
        _terminate(monitor.tree() + _tagged(tag, started), grace_s)
    child.wait()
    result.wall_s = time.time() - started
    monitor.stop.set()
    monitor.join()
    leftovers = [p for p in monitor.seen.values() if _alive(p)] + _tagged(tag, started)
    leftovers = [p for p in {p.pid: p for p in leftovers}.values() if _alive(p) and p.pid != child.pid]
    if leftovers:
        result.leftover_killed = _terminate(leftovers, min(grace_s, 2.0))
    if group:
        result.leftover_killed += group.kill_all()
        result.killed_for_memory |= group.oom_killed()
        group.remove()
    if result.stalled_s > STALL_S:
        result.warnings.append(
            f"the harness was paused for {result.stalled_s:.1f} s while the submission ran, so its clock "
            "could not enforce the budget"
        )


def _read_results(staged: StagedRun, result: SandboxResult) -> None:
    for path in sorted(staged.result_dir.glob("result-*.json")):
        try:
            if path.is_file() and not path.is_symlink():
                result.entry_results.append(json.loads(path.read_text()[:1_000_000]))
        except (ValueError, OSError):
            continue
    result.entry_results = [
        {k: plain(v) if isinstance(v, str) else v for k, v in r.items()}
        for r in result.entry_results
        if isinstance(r, dict)
    ]
    result.violations = sorted(
        {plain(str(v)) for r in result.entry_results for v in r.get("violations") or []}
    )
    gpu = [r["peak_gpu_mb"] for r in result.entry_results if isinstance(r.get("peak_gpu_mb"), (int, float))]
    result.peak_gpu_mb = max(gpu) if gpu else None


def cleanup(staged: StagedRun) -> None:
    """Remove the staged copies (model, data, home, the jail's mount point) once the run is over; out/ and
    control/ stay."""
    jail_root = staged.control_dir / "jail-root"
    for folder in (staged.model_dir, staged.home_dir, staged.forget_dir, staged.retain_dir, jail_root):
        if not folder.exists():
            continue
        for path in [folder, *folder.rglob("*")]:
            if path.is_dir() and not path.is_symlink():
                path.chmod(path.stat().st_mode | stat.S_IWUSR | stat.S_IXUSR)
        shutil.rmtree(folder, ignore_errors=True)


_ESCAPES = re.compile(
    r"\x1b(\[[0-?]*[ -/]*[@-~]|\][^\x07\x1b]*(\x07|\x1b\\)|[@-Z\\-_])|[\x00-\x08\x0b-\x1f\x7f\x80-\x9f]"
)


def plain(text: str) -> str:
    """Text that came from the child (a message, a log tail) without terminal escape sequences or control
    characters: it is shown on the user's terminal and stored on the board."""
    return _ESCAPES.sub("", text.replace("\r\n", "\n"))


def tail(path: Path | None, lines: int = 20) -> str:
    """The last `lines` lines of a log file ('' when absent)."""
    if path is None or not Path(path).is_file():
        return ""
    with open(path, "rb") as handle:
        handle.seek(0, os.SEEK_END)
        size = handle.tell()
        handle.seek(max(0, size - 64 * 1024))
        text = handle.read().decode("utf-8", errors="replace")
    return plain("\n".join(text.splitlines()[-lines:]))
