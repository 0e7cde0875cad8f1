"""The run lifecycle of one submission on one task, as named steps, and the result it ends in.

    check     contract.check_submission: the file, statically (never executed)
    prepare   preflight (the leaderboard database and the scored data open before any budget is spent),
              then a fresh run directory with a hashed copy of the submission
    stage     sandbox.stage: the work directory the child sees
    execute   sandbox.run: the isolated, budgeted child
    classify  the child's outcome and the checkpoint it left -> one Status and a one-line message; for a
              valid checkpoint the static 4.45.2 check, and its load in the official environment begun in
              the background (checkpoint.OfficialLoad: that worker starts with the child, for its imports)
    evaluate  harness.inference.evaluate and the bootstrap intervals, for a scored status
    confirm   the official environment's load collected (a problem is a warning; timings.official_load)
    record    manifest.json in the run directory, then one leaderboard row

Whatever the submission does, it ends in a `RunResult` with one status (leaderboard.status.Status) and
a one-line message; only the user's own mistakes (a bad --set, a task that is not there, a corrupted
leaderboard or data file) raise `HarnessError` or another user error, and then nothing is written.
"""

from __future__ import annotations

import os
import re
import shutil
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from harness import __version__, contract, sandbox
from harness.checkpoint import (
    OFFICIAL_LOAD_ENV,
    CheckpointReport,
    OfficialLoad,
    portable_problems,
    sha256_file,
    validate,
    warm_up,
)
from harness.errors import USER_ERRORS, HarnessError
from harness.files import WriteError, make_folder
from harness.isolation import describe as describe_isolation
from harness.manifest import Manifest, environment, task_summary, write_manifest
from leaderboard.record import RunRecord, score_fields
from leaderboard.status import SCORED, Status
from tasks.spec import TaskSpec
from tasks.tiny.build import default_cache_root

#: status -> what it means (the CLI prints it under a failed run)
STATUSES = {status.value: status.description for status in Status}


@dataclass
class RunResult:
    """The outcome of `run_submission`."""

    status: str
    record: RunRecord
    run_dir: Path
    message: str
    log_tail: str = ""
    checkpoint: CheckpointReport | None = None
    scores: Any = None  # harness.scoring.Scores when scored
    warnings: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.status in SCORED

    def to_json(self) -> dict[str, Any]:
        out = asdict(self.record)
        out.update(
            status=self.status, message=self.message, run_dir=str(self.run_dir), warnings=self.warnings
        )
        if not self.ok:
            out["log_tail"] = self.log_tail
        if self.checkpoint is not None:
            out["checkpoint"] = self.checkpoint.to_json()
        return out


@dataclass(frozen=True)
class RunOptions:
    """How to run: everything `run_submission` takes besides the submission and the task."""

    budget_s: float
    params: dict[str, Any]
    variant: str = "default"
    processes: int = 1
    launcher: str = "python"
    results_root: Path = Path("runs")
    record: bool = True
    progress: bool = True
    score: bool = True
    isolation: str = "auto"
    memory_cap_mb: float | None = None
    grace_s: float = 10.0
    on_output: Callable[[str, bytes], None] | None = None
    #: the run seed (Python, NumPy and torch are seeded with it; passed as seed=k where unlearn takes one)
    seed: int | None = None
    #: the seed group this run belongs to (see run_group)
    group_id: str | None = None
    #: after scoring, run the robustness audit (harness.audit) and record its robust forget score
    audit: bool = False
    #: a partial evaluation (--limit): the first N rows per split, MIA documents per side and MMLU questions
    #: per subject; recorded, and the board ranks the run apart from full ones (not comparable)
    limit: int | None = None
    #: load the checkpoint in the official environment (where it exists) while scoring; None: unless
    #: UNLEARN_HARNESS_OFFICIAL_LOAD=0
    official_load: bool | None = None


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", text).strip("_")[:40] or "x"


def _check_params(report: contract.ContractReport, params: dict[str, Any]) -> None:
    official = [p.name for p in report.parameters[:4]]
    for key in params:
        if key in official:
            raise HarnessError(f"--set {key}: '{key}' is one of the four paths the harness passes itself")
        if report.parameters and not report.accepts(key):
            takes = ", ".join(p.name for p in report.extra_parameters) or "no extra parameters"
            raise HarnessError(
                f"--set {key}: unlearn() in {report.path} has no parameter '{key}' (it takes: {takes})"
            )


def _hidden_paths(task: TaskSpec, results_root: Path) -> list[Path]:
    """What no child may see. Isolation keeps all of it out of the view by construction; the list masks
    what an odd layout puts inside a bound tree, and is the audit hook's only guide when unisolated."""
    hidden = sandbox.task_paths(task) + [Path(results_root).resolve(), default_cache_root().resolve()]
    return hidden + [Path.home().resolve()]


def _preflight(task: TaskSpec, options: RunOptions) -> None:
    """Fail before the budget is spent: a leaderboard that cannot take the row, scored data that do not parse."""
    if options.record:
        from leaderboard.store import Store, default_db

        db = default_db(Path(options.results_root))
        Store(db)  # an existing database is opened and checked: a corrupted one is one BoardError line
        folder = db.parent if db.parent.exists() else Path(options.results_root)
        while not folder.exists():
            folder = folder.parent
        if not os.access(db if db.exists() else folder, os.W_OK):
            raise HarnessError(
                f"{db}: the leaderboard database is not writable (fix its permissions or use --no-record)"
            )
    if options.score:
        from tasks.data import read_mia, read_rows

        for path in (task.eval_forget, task.eval_retain):
            if path is not None:
                read_rows(path)
        for path in (task.mia_member, task.mia_nonmember):
            if path is not None:
                read_mia(path)


def _validate(out_dir: Path, model_dir: Path) -> CheckpointReport:
    """`checkpoint.validate`, with any loader failure it does not foresee turned into INVALID_CHECKPOINT."""
    try:
        return validate(out_dir, model_dir)
    except Exception as exc:  # noqa: BLE001 - a broken checkpoint is a status, not a traceback
        first = str(exc).strip().splitlines()
        reason = f"{type(exc).__name__}: {first[0] if first else ''}"
        return CheckpointReport(
            out_dir=out_dir, status=Status.INVALID_CHECKPOINT, message=f"out/ does not load ({reason})"
        )


def _classify_failure(box: sandbox.SandboxResult) -> tuple[Status, str] | None:
    """The status of a child that did not finish `unlearn()` cleanly (None when it did)."""
    failed = [r for r in box.entry_results if not r.get("ok")]
    if failed:
        first = failed[0]
        error = f"{first.get('error_type')}: {first.get('error')}".rstrip(": ")
        if first.get("oom"):
            return Status.OUT_OF_MEMORY, f"unlearn() ran out of memory: {error}"
        if first.get("phase") == "import":
            return Status.IMPORT_ERROR, f"the submission fails to import: {error}"
        if first.get("phase") == "signature":
            return (
                Status.SIGNATURE_MISMATCH,
                f"unlearn() cannot be called with the official arguments: {error}",
            )
        if box.violations:
            return (
                Status.SANDBOX_VIOLATION,
                f"unlearn() failed after a blocked access: {box.violations[0]} ({error})",
            )
        return Status.CRASHED, f"unlearn() raised {error}"
    if box.returncode != 0 or not box.entry_results:
        if box.returncode in (-9, 137):
            return (
                Status.OUT_OF_MEMORY,
                "the process was killed by SIGKILL (most likely the kernel's out-of-memory killer)",
            )
        return Status.CRASHED, f"the process exited with status {box.returncode} before unlearn() finished"
    return None


def _classify(
    box: sandbox.SandboxResult, out_dir: Path, model_dir: Path, memory_cap_mb: float | None
) -> tuple[Status, str, CheckpointReport | None]:
    """(status, message, checkpoint report) for a finished child."""
    if box.killed_for_memory:
        cap = f"the memory cap of {memory_cap_mb:.0f} MB" if memory_cap_mb else "its memory limit"
        return Status.OUT_OF_MEMORY, f"the process tree went over {cap}; it was killed", None
    if box.timed_out and box.stalled_s > sandbox.STALL_S:
        return (
            Status.TIMEOUT,
            f"the harness was paused for {box.stalled_s:.1f} s while the submission ran and the run ended "
            "past its budget; a budget that was not enforced cannot be scored",
            None,
        )
    if box.timed_out:
        report = _validate(out_dir, model_dir)
        if report.ok:
            return (
                Status.SALVAGED,
                f"the budget ran out after {box.wall_s:.1f} s; the checkpoint saved in out/ is valid and is scored",
                report,
            )
        return (
            Status.TIMEOUT,
            f"the budget ran out after {box.wall_s:.1f} s with nothing valid saved ({report.message})",
            report,
        )
    if (failure := _classify_failure(box)) is not None:
        return (*failure, None)
    report = _validate(out_dir, model_dir)
    if not report.ok:
        return Status(report.status or Status.INVALID_CHECKPOINT), report.message, report
    return Status.OK, report.message, report


def _console(progress: bool):
    from rich.console import Console

    return Console(stderr=True, quiet=not progress)


def build_record(
    task: TaskSpec,
    *,
    run_id: str,
    created: datetime,
    run_dir: Path,
    submission_name: str,
    status: Status,
    message: str,
    scores: Any,
    timings: dict[str, float],
    submission_sha256: str = "",
    **fields: Any,
) -> RunRecord:
    """The leaderboard row of one run: a submission's (`_Run.record`) or a reference row's
    (harness.reference). The fields every row derives the same way are filled here (task and world seed,
    time, status, the official scores, rounded timings, run directory, harness version); ``fields`` are
    the other `RunRecord` fields (variant, params, role, intervals, budget, isolation, seeds, ...)."""
    return RunRecord(
        run_id=run_id, created_at=created.isoformat(timespec="seconds"), task=task.name,
        submission_name=submission_name, submission_sha256=submission_sha256, status=Status(status).value,
        message=message, **score_fields(scores), timings={k: round(v, 3) for k, v in timings.items()},
        run_dir=str(run_dir), harness_version=__version__, world_seed=world_seed(task), **fields,
    )  # fmt: skip


class _Run:
    """One run on its way through the lifecycle; each method is one step of the module docstring."""

    def __init__(self, submission: Path, task: TaskSpec, options: RunOptions) -> None:
        self.submission, self.task, self.options = submission, task, options
        self.console = _console(options.progress)
        self.timings: dict[str, float] = {}
        self.warnings: list[str] = []
        self.box: sandbox.SandboxResult | None = None
        self.checkpoint: CheckpointReport | None = None
        self.scores: Any = None
        self.intervals: dict[str, tuple[float, float]] = {}
        self.log_tail = ""
        self.status: Status = Status.CRASHED
        self.message = ""
        self.robust_forget: float | None = None
        self.official_load: OfficialLoad | None = None

    def _timed(self, name: str, started: float) -> None:
        self.timings[name] = time.perf_counter() - started

    def check(self) -> None:
        started = time.perf_counter()
        self.report = contract.check_submission(self.submission)
        self._timed("check", started)
        _check_params(self.report, self.options.params)
        if missing := self.task.missing():
            raise HarnessError(f"task '{self.task.name}' cannot run: missing {', '.join(missing)}")
        self.warnings += [str(p) for p in self.report.warnings]
        if self.options.seed is not None and not self.report.errors:
            if self.report.accepts("seed"):
                self.options.params.setdefault("seed", self.options.seed)
            else:
                self.warnings.append(
                    "unlearn() has no 'seed' parameter: the run seed only seeds Python, NumPy and torch globally"
                )

    def prepare(self) -> None:
        self.mode = sandbox.detect_isolation(self.options.isolation)
        _preflight(self.task, self.options)
        self.created = datetime.now(timezone.utc)
        self.run_id = uuid.uuid4().hex[:8]
        name = f"{self.created:%Y%m%dT%H%M%SZ}-{_slug(self.submission.stem)}-{_slug(self.options.variant)}-{self.run_id}"
        run_dir = Path(self.options.results_root) / _slug(self.task.name) / name
        make_folder(run_dir.parent)  # a results root it cannot write is one line naming it
        try:
            run_dir.mkdir()
        except OSError as exc:
            raise WriteError(f"{run_dir}: cannot create the run folder: {exc.strerror or exc}") from exc
        self.run_dir = run_dir.resolve()
        self.copy = self.run_dir / self.submission.name
        shutil.copy2(self.submission, self.copy)
        self.sha = sha256_file(self.copy)

    def refuse(self) -> None:
        """A submission the static check rejects never runs."""
        errors = self.report.errors
        signature = any(p.kind == "signature" for p in errors)
        self.status = Status.SIGNATURE_MISMATCH if signature else Status.IMPORT_ERROR
        self.message = str(errors[0]) + (f" (and {len(errors) - 1} more)" if len(errors) > 1 else "")
        self.log_tail = "\n".join(str(p) for p in errors)

    def stage(self) -> sandbox.StagedRun:
        self.console.print(
            f"[bold]stage[/] {self.task.name}: fresh work directory in {self.run_dir}", soft_wrap=True
        )
        started = time.perf_counter()
        try:
            staged = sandbox.stage(
                self.task, self.run_dir / "work", self.submission, self.report.siblings, isolation=self.mode
            )
        except BaseException:
            shutil.rmtree(self.run_dir, ignore_errors=True)  # bad task data: no half-made run directory
            raise
        self._timed("stage", started)
        return staged

    def execute(self, staged: sandbox.StagedRun) -> None:
        o = self.options
        self.console.print(
            f"[bold]run[/] {self.submission.name} ({o.launcher} x{o.processes}, {self.mode}, budget {o.budget_s:.0f} s)"
        )
        threading.Thread(target=warm_up, args=(self.task.model_dir,), daemon=True).start()
        # the official environment's worker does its imports meanwhile; it loads out/ after validation
        self.official_load = OfficialLoad.prepare(enabled=official_load_wanted(o.official_load))
        self.box = sandbox.run(
            staged, budget_s=o.budget_s, kwargs=o.params, log_dir=self.run_dir / "logs", launcher=o.launcher,
            processes=o.processes, isolation=self.mode, hidden=_hidden_paths(self.task, o.results_root),
            memory_cap_mb=o.memory_cap_mb, grace_s=o.grace_s, tag=self.run_id, on_output=o.on_output, seed=o.seed,
        )  # fmt: skip
        self.timings["run"] = self.box.wall_s
        self.warnings += self.box.warnings

    def classify(self, staged: sandbox.StagedRun) -> None:
        self.console.print("[bold]validate[/] the checkpoint in out/")
        started = time.perf_counter()
        self.status, self.message, self.checkpoint = _classify(
            self.box, staged.out_dir, self.task.model_dir, self.options.memory_cap_mb
        )
        self._timed("validate", started)
        self._start_official_load(staged.out_dir)
        if self.box.violations and self.status in (*SCORED, Status.NO_CHECKPOINT):
            self.warnings.append(f"blocked in the sandbox: {self.box.violations[0]}")
        if self.status not in SCORED:
            self.log_tail = sandbox.tail(self.box.stderr_path) or sandbox.tail(self.box.stdout_path)

    def _start_official_load(self, out_dir: Path) -> None:
        """The static 4.45.2 check (warnings), and the load in the official environment begun (`confirm`)."""
        report, load = self.checkpoint, self.official_load
        if report is None or not report.ok:
            self.abandon()
            if report is not None:
                report.official_env_load = "skipped: no valid checkpoint"
            return
        report.official_env_problems = portable_problems(out_dir)
        self.warnings += report.official_env_problems
        if load is not None:
            report.official_env_load = load.begin(out_dir).state

    def confirm(self) -> None:
        """Collect the official environment's load (it ran while the run scored); what it found is a warning."""
        if self.official_load is None:
            return
        started = time.perf_counter()
        running = self.official_load.state == "running"
        lines = self.official_load.finish()
        if running:
            self._timed("official_load", started)  # what it added to the run: the wait past scoring
        self.checkpoint.official_env_load = self.official_load.state
        self.checkpoint.official_env_problems += lines
        self.warnings += lines
        self.official_load = None

    def abandon(self) -> None:
        """End a load still running where the run ends early (an interrupt, a user error)."""
        if self.official_load is not None:
            self.official_load.cancel()
            self.official_load = None

    def evaluate(self, staged: sandbox.StagedRun) -> None:
        if self.status not in SCORED or not self.options.score:
            return
        self.console.print("[bold]evaluate[/] generations, MIA losses, MMLU")
        started = time.perf_counter()
        try:
            from harness.inference import evaluate

            self.scores = evaluate(
                staged.out_dir,
                self.task,
                self.run_dir,
                progress=self.options.progress,
                limit=self.options.limit,
            ).scores
        except Exception as exc:  # noqa: BLE001 - an evaluation failure is a status, not a traceback
            self.status = Status.EVAL_ERROR
            self.message = f"evaluation failed: {type(exc).__name__}: {exc}".splitlines()[0]
        self._timed("evaluate", started)
        if self.scores is not None:
            self.intervals = _intervals(self.run_dir, self.warnings)
        if self.scores is not None and self.options.audit:
            self._audit(staged)

    def _audit(self, staged: sandbox.StagedRun) -> None:
        """The robustness audit of the scored checkpoint (audit.json in the run directory)."""
        from harness.audit import audit

        self.console.print("[bold]audit[/] quantization, relearning, probes, MIA panel, extraction")
        started = time.perf_counter()
        try:
            self.robust_forget = audit(
                staged.out_dir, self.task, self.run_dir, progress=self.options.progress
            ).robust_forget
        except (*USER_ERRORS, Exception) as exc:  # noqa: BLE001 - the run stays scored; the audit says why not
            self.warnings.append(f"audit failed: {type(exc).__name__}: {exc}".splitlines()[0])
        self._timed("audit", started)

    def record(self) -> RunResult:
        row = self._record_row()
        write_manifest(self.run_dir, self._manifest(row))
        if self.options.record:
            from leaderboard.store import Store, default_db

            Store(default_db(Path(self.options.results_root))).add(row)
        return RunResult(
            status=self.status, record=row, run_dir=self.run_dir, message=self.message, log_tail=self.log_tail,
            checkpoint=self.checkpoint, scores=self.scores, warnings=self.warnings,
        )  # fmt: skip

    def _record_row(self) -> RunRecord:
        box, o = self.box, self.options
        return build_record(
            self.task, run_id=self.run_id, created=self.created, run_dir=self.run_dir,
            submission_name=self.submission.stem, submission_sha256=self.sha, status=self.status,
            message=self.message, scores=self.scores, timings=self.timings, variant=o.variant, params=o.params,
            unchanged=bool(self.checkpoint and self.checkpoint.unchanged), intervals=self.intervals,
            budget_s=o.budget_s, budget_used_s=round(box.wall_s, 3) if box else None,
            peak_rss_mb=round(box.peak_rss_mb, 1) if box else None, peak_gpu_mb=box.peak_gpu_mb if box else None,
            isolation=self.mode, group_id=o.group_id, seed=o.seed, robust_forget=self.robust_forget, limit=o.limit,
        )  # fmt: skip

    def _manifest(self, row: RunRecord) -> Manifest:
        box, o = self.box, self.options
        seeds = {k: v for k, v in o.params.items() if "seed" in k.lower()}
        return Manifest(
            run_id=self.run_id, created_at=row.created_at, status=self.status.value, message=self.message,
            submission={
                "name": self.submission.stem, "path": str(self.submission.resolve()), "sha256": self.sha,
                "copy": self.copy.name, "siblings": {n: sha256_file(p) for n, p in self.report.siblings.items()},
                "requested_packages": sorted(set(self.report.requested_packages.values())),
            },
            variant=o.variant, params=o.params, task=task_summary(self.task), launcher=o.launcher,
            processes=o.processes, isolation=self.mode, budget_s=o.budget_s, budget_used_s=row.budget_used_s,
            timings=row.timings, peak_rss_mb=row.peak_rss_mb, peak_gpu_mb=row.peak_gpu_mb,
            memory_cap_mb=o.memory_cap_mb, limit=o.limit,
            seeds={"run": o.seed, "group": o.group_id, "params": seeds, "task": self.task.extra.get("seed"),
                   "PYTHONHASHSEED": str(o.seed) if o.seed is not None else os.environ.get("PYTHONHASHSEED")},
            checkpoint=self.checkpoint.to_json() if self.checkpoint else None, command=box.command if box else [],
            warnings=self.warnings, violations=box.violations if box else [],
            returncode=box.returncode if box else None, kernels=box.kernels if box else {},
            isolation_detail=describe_isolation(self.mode), **environment(),
        )  # fmt: skip


def _options(
    task: TaskSpec, budget_s: float | None, launcher: str, processes: int, **rest: Any
) -> RunOptions:
    budget = float(budget_s if budget_s is not None else task.budget_s)
    if budget <= 0:
        raise HarnessError(f"the budget must be positive, not {budget}")
    if processes < 1:
        raise HarnessError(f"--processes must be at least 1, not {processes}")
    if launcher not in sandbox.LAUNCHERS:
        raise HarnessError(f"unknown launcher '{launcher}' (choose from {', '.join(sandbox.LAUNCHERS)})")
    rest["params"] = dict(rest.get("params") or {})
    rest["variant"] = rest.get("variant") or "default"
    return RunOptions(budget_s=budget, launcher=launcher, processes=processes, **rest)


def run_submission(
    submission: Path,
    task: TaskSpec,
    *,
    budget_s: float | None = None,
    launcher: str = "python",
    processes: int = 1,
    **options: Any,
) -> RunResult:
    """Run `submission` on `task` through the whole lifecycle (see the module docstring).

    `options` are `RunOptions`' fields: params, variant, results_root, record, progress, score,
    isolation, memory_cap_mb, grace_s, on_output, seed, group_id, audit, limit, official_load.
    """
    submission = Path(submission)
    run = _Run(submission, task, _options(task, budget_s, launcher, processes, **options))
    if not submission.is_file():
        raise HarnessError(f"{submission}: no such file")
    run.check()
    run.prepare()
    if run.report.errors:
        run.refuse()
    else:
        staged = run.stage()
        try:
            run.execute(staged)
            run.classify(staged)
            run.evaluate(staged)
            run.confirm()
        finally:
            run.abandon()
            sandbox.cleanup(staged)
    return run.record()


def official_load_wanted(option: bool | None) -> bool:
    """Whether a run loads its checkpoint in the official environment: `option` where given, else unless
    UNLEARN_HARNESS_OFFICIAL_LOAD is 0 (or false/no/off)."""
    if option is not None:
        return option
    return os.environ.get(OFFICIAL_LOAD_ENV, "1").strip().lower() not in ("0", "false", "no", "off")


def world_seed(task: TaskSpec) -> int | None:
    """The world a task's run is on: the tiny task's world seed (its ``seed`` override), None for other tasks."""
    seed = task.extra.get("seed") if task.name == "tiny" else None
    return int(seed) if isinstance(seed, int) or (isinstance(seed, str) and seed.isdigit()) else None


def run_group(
    submission: Path, tasks: list[TaskSpec], seeds: list[int], group_id: str | None = None, **options: Any
) -> tuple[str, list[RunResult]]:
    """Run `submission` once per (world, seed): `tasks` are the worlds (one task, or the tiny task built
    from several world seeds), `seeds` the run seeds. Every run is recorded with one group id (a new one,
    or `group_id` to add the seeds to a recorded group, as `sweep --resume` does), which the board
    aggregates (mean over seeds, seed SD, a two-level interval). Returns (group id, results)."""
    if not seeds or len(set(seeds)) != len(seeds):
        raise HarnessError(f"--seeds must be distinct integers, not {seeds}")
    if any(not isinstance(k, int) or isinstance(k, bool) or k < 0 for k in seeds):
        raise HarnessError(f"--seeds must be non-negative integers, not {seeds}")
    group_id = group_id or uuid.uuid4().hex[:10]
    results = []
    for task in tasks:
        for seed in seeds:
            results.append(run_submission(submission, task, seed=seed, group_id=group_id, **options))
    return group_id, results


def _intervals(run_dir: Path, warnings: list[str]) -> dict[str, tuple[float, float]]:
    try:
        from leaderboard.bootstrap import bootstrap_run

        return {k: (float(v[0]), float(v[1])) for k, v in bootstrap_run(run_dir).items()}
    except (*USER_ERRORS, Exception) as exc:  # noqa: BLE001 - intervals are optional
        warnings.append(f"no bootstrap intervals: {exc}")
        return {}
