"""The run lifecycle of one submission on one task, and the status taxonomy it ends in.

`run_submission` goes contract check -> stage -> sandboxed run -> checkpoint validation -> evaluation
(harness.inference) -> bootstrap intervals -> leaderboard record, writing everything into one run
directory (results_root/<task>/<timestamp>-<submission>-<variant>-<id>/) with its manifest.json.
Whatever the submission does, it ends in a `RunResult` with one status and a one-line message; only
the user's own mistakes (a bad --set, a task that is not there) raise `HarnessError`.
"""

from __future__ import annotations

import os
import re
import shutil
import threading
import time
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from harness import __version__, contract, sandbox
from harness.checkpoint import CheckpointReport, validate, warm_up
from harness.errors import USER_ERRORS, HarnessError
from harness.manifest import Manifest, environment, task_summary, write_manifest
from leaderboard.record import RunRecord, score_fields
from tasks.spec import TaskSpec

STATUSES = {
    "OK": "the checkpoint is valid and was scored",
    "SALVAGED": "the budget ran out, but the last checkpoint in out/ was valid and was scored (as the organisers did)",
    "TIMEOUT": "the budget ran out and nothing valid was saved: an official attempt would score nothing",
    "IMPORT_ERROR": "the submission file fails to import (syntax error, missing package, error at import time)",
    "SIGNATURE_MISMATCH": "unlearn() cannot be called the official way (missing, wrong order, extra parameter without default)",
    "CRASHED": "unlearn() raised an exception or the process died",
    "OUT_OF_MEMORY": "the run ran out of memory (MemoryError, CUDA OOM, the memory cap or the OOM killer)",
    "NO_CHECKPOINT": "unlearn() returned but left nothing loadable in the output directory",
    "INVALID_CHECKPOINT": "the output cannot be scored as is (adapter only, no tokenizer, subfolder, incomplete shards, other architecture)",
    "NON_FINITE_WEIGHTS": "the saved weights contain NaN or inf",
    "SANDBOX_VIOLATION": "the submission failed after trying to use the network or read task data it was not given",
    "EVAL_ERROR": "the checkpoint passed validation but the evaluation failed",
}
#: the statuses whose checkpoint is scored
SCORED = ("OK", "SALVAGED")


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
        from dataclasses import asdict

        out = asdict(self.record)
        out.update(
            status=self.status, message=self.message, run_dir=str(self.run_dir), warnings=self.warnings
        )
        if not self.ok:
            out["log_tail"] = self.log_tail
        if self.checkpoint is not None:
            out["checkpoint"] = self.checkpoint.to_json()
        return out


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
    hidden = sandbox.task_paths(task) + [Path(results_root).resolve()]
    cache = os.environ.get("UNLEARN_HARNESS_CACHE")
    if cache:
        hidden.append(Path(cache).resolve())
    return hidden


def _validate(out_dir: Path, model_dir: Path) -> CheckpointReport:
    """`checkpoint.validate`, with any loader failure it does not foresee turned into INVALID_CHECKPOINT."""
    try:
        return validate(out_dir, model_dir)
    except Exception as exc:  # noqa: BLE001 - a broken checkpoint is a status, not a traceback
        first = str(exc).strip().splitlines()
        reason = f"{type(exc).__name__}: {first[0] if first else ''}"
        return CheckpointReport(
            out_dir=out_dir, status="INVALID_CHECKPOINT", message=f"out/ does not load ({reason})"
        )


def _classify(
    box: sandbox.SandboxResult, out_dir: Path, model_dir: Path, memory_cap_mb: float | None
) -> tuple[str, str, CheckpointReport | None]:
    """(status, message, checkpoint report) for a finished child."""
    if box.killed_for_memory:
        return (
            "OUT_OF_MEMORY",
            f"the process tree went over the memory cap of {memory_cap_mb:.0f} MB; it was killed",
            None,
        )
    if box.timed_out:
        report = _validate(out_dir, model_dir)
        if report.ok:
            return (
                "SALVAGED",
                f"the budget ran out after {box.wall_s:.1f} s; the checkpoint saved in out/ is valid and is scored",
                report,
            )
        return (
            "TIMEOUT",
            f"the budget ran out after {box.wall_s:.1f} s with nothing valid saved ({report.message})",
            report,
        )
    failed = [r for r in box.entry_results if not r.get("ok")]
    if failed:
        first = failed[0]
        error = f"{first.get('error_type')}: {first.get('error')}".rstrip(": ")
        if first.get("oom"):
            return "OUT_OF_MEMORY", f"unlearn() ran out of memory: {error}", None
        if first.get("phase") == "import":
            return "IMPORT_ERROR", f"the submission fails to import: {error}", None
        if first.get("phase") == "signature":
            return (
                "SIGNATURE_MISMATCH",
                f"unlearn() cannot be called with the official arguments: {error}",
                None,
            )
        if box.violations:
            return (
                "SANDBOX_VIOLATION",
                f"unlearn() failed after a blocked access: {box.violations[0]} ({error})",
                None,
            )
        return "CRASHED", f"unlearn() raised {error}", None
    if box.returncode != 0 or not box.entry_results:
        if box.returncode in (-9, 137):
            return (
                "OUT_OF_MEMORY",
                "the process was killed by SIGKILL (most likely the kernel's out-of-memory killer)",
                None,
            )
        return "CRASHED", f"the process exited with status {box.returncode} before unlearn() finished", None
    report = _validate(out_dir, model_dir)
    if not report.ok:
        return report.status or "INVALID_CHECKPOINT", report.message, report
    return "OK", report.message, report


def _console(progress: bool):
    from rich.console import Console

    return Console(stderr=True, quiet=not progress)


def run_submission(
    submission: Path,
    task: TaskSpec,
    *,
    budget_s: float | None = None,
    params: dict | None = None,
    variant: str | None = None,
    processes: int = 1,
    launcher: str = "python",
    results_root: Path = Path("runs"),
    record: bool = True,
    progress: bool = True,
    score: bool = True,
    isolation: str = "auto",
    memory_cap_mb: float | None = None,
    grace_s: float = 10.0,
) -> RunResult:
    """Run `submission` on `task` through the whole lifecycle; see the module docstring."""
    console = _console(progress)
    submission = Path(submission)
    params = dict(params or {})
    variant = variant or "default"
    budget = float(budget_s if budget_s is not None else task.budget_s)
    if budget <= 0:
        raise HarnessError(f"the budget must be positive, not {budget}")
    if processes < 1:
        raise HarnessError(f"--processes must be at least 1, not {processes}")
    if launcher not in sandbox.LAUNCHERS:
        raise HarnessError(f"unknown launcher '{launcher}' (choose from {', '.join(sandbox.LAUNCHERS)})")
    if not submission.is_file():
        raise HarnessError(f"{submission}: no such file")
    timings: dict[str, float] = {}
    clock = time.perf_counter()
    report = contract.check_submission(submission)
    timings["check"] = time.perf_counter() - clock
    _check_params(report, params)
    if missing := task.missing():
        raise HarnessError(f"task '{task.name}' cannot run: missing {', '.join(missing)}")
    mode = sandbox.detect_isolation(isolation)

    created = datetime.now(timezone.utc)
    run_id = uuid.uuid4().hex[:8]
    run_dir = (
        Path(results_root)
        / _slug(task.name)
        / (f"{created:%Y%m%dT%H%M%SZ}-{_slug(submission.stem)}-{_slug(variant)}-{run_id}")
    )
    run_dir.mkdir(parents=True)
    run_dir = run_dir.resolve()
    copy = run_dir / submission.name
    shutil.copy2(submission, copy)
    sha = _sha256(copy)
    warnings: list[str] = [str(p) for p in report.warnings]
    box: sandbox.SandboxResult | None = None
    checkpoint: CheckpointReport | None = None
    scores = None
    intervals: dict[str, tuple[float, float]] = {}
    log_tail = ""

    if report.errors:
        errors = report.errors
        status = "SIGNATURE_MISMATCH" if any(p.kind == "signature" for p in errors) else "IMPORT_ERROR"
        message = str(errors[0]) + (f" (and {len(errors) - 1} more)" if len(errors) > 1 else "")
        log_tail = "\n".join(str(p) for p in errors)
    else:
        console.print(f"[bold]stage[/] {task.name}: fresh work directory in {run_dir}")
        clock = time.perf_counter()
        try:
            staged = sandbox.stage(task, run_dir / "work", submission, report.siblings, isolation=mode)
        except BaseException:
            shutil.rmtree(run_dir, ignore_errors=True)  # bad task data: no half-made run directory
            raise
        timings["stage"] = time.perf_counter() - clock
        console.print(
            f"[bold]run[/] {submission.name} ({launcher} x{processes}, {mode}, budget {budget:.0f} s)"
        )
        threading.Thread(target=warm_up, args=(task.model_dir,), daemon=True).start()
        box = sandbox.run(
            staged,
            budget_s=budget,
            kwargs=params,
            log_dir=run_dir / "logs",
            launcher=launcher,
            processes=processes,
            isolation=mode,
            hidden=_hidden_paths(task, results_root),
            memory_cap_mb=memory_cap_mb,
            grace_s=grace_s,
            tag=run_id,
        )
        timings["run"] = box.wall_s
        warnings += box.warnings
        clock = time.perf_counter()
        console.print("[bold]validate[/] the checkpoint in out/")
        status, message, checkpoint = _classify(box, staged.out_dir, task.model_dir, memory_cap_mb)
        timings["validate"] = time.perf_counter() - clock
        if box.violations and status in ("OK", "SALVAGED", "NO_CHECKPOINT"):
            warnings.append(f"blocked in the sandbox: {box.violations[0]}")
        if status not in SCORED:
            log_tail = sandbox.tail(box.stderr_path) or sandbox.tail(box.stdout_path)
        elif score:
            clock = time.perf_counter()
            console.print("[bold]evaluate[/] generations, MIA losses, MMLU")
            try:
                from harness.inference import evaluate

                scores = evaluate(staged.out_dir, task, run_dir, progress=progress).scores
            except Exception as exc:  # noqa: BLE001 - an evaluation failure is a status, not a traceback
                status, message = (
                    "EVAL_ERROR",
                    f"evaluation failed: {type(exc).__name__}: {exc}".splitlines()[0],
                )
            timings["evaluate"] = time.perf_counter() - clock
            if scores is not None:
                intervals = _intervals(run_dir, warnings)
        sandbox.cleanup(staged)

    env = environment()
    record_row = RunRecord(
        run_id=run_id,
        created_at=created.isoformat(timespec="seconds"),
        task=task.name,
        submission_name=submission.stem,
        submission_sha256=sha,
        variant=variant,
        params=params,
        status=status,
        message=message,
        **score_fields(scores),
        unchanged=bool(checkpoint and checkpoint.unchanged),
        intervals=intervals,
        timings={k: round(v, 3) for k, v in timings.items()},
        budget_s=budget,
        budget_used_s=round(box.wall_s, 3) if box else None,
        peak_rss_mb=round(box.peak_rss_mb, 1) if box else None,
        peak_gpu_mb=box.peak_gpu_mb if box else None,
        run_dir=str(run_dir),
        harness_version=__version__,
    )
    manifest = Manifest(
        run_id=run_id,
        created_at=record_row.created_at,
        status=status,
        message=message,
        submission={
            "name": submission.stem,
            "path": str(submission.resolve()),
            "sha256": sha,
            "copy": copy.name,
            "siblings": {name: _sha256(path) for name, path in report.siblings.items()},
            "requested_packages": sorted(set(report.requested_packages.values())),
        },
        variant=variant,
        params=params,
        task=task_summary(task),
        launcher=launcher,
        processes=processes,
        isolation=mode,
        budget_s=budget,
        budget_used_s=record_row.budget_used_s,
        timings=record_row.timings,
        peak_rss_mb=record_row.peak_rss_mb,
        peak_gpu_mb=record_row.peak_gpu_mb,
        memory_cap_mb=memory_cap_mb,
        seeds={"params": {k: v for k, v in params.items() if "seed" in k.lower()}, "task": task.extra.get("seed"),
               "PYTHONHASHSEED": os.environ.get("PYTHONHASHSEED")},
        checkpoint=checkpoint.to_json() if checkpoint else None,
        command=box.command if box else [],
        warnings=warnings,
        violations=box.violations if box else [],
        returncode=box.returncode if box else None,
        **env,
    )  # fmt: skip
    write_manifest(run_dir, manifest)
    if record:
        from leaderboard.store import Store, default_db

        Store(default_db(Path(results_root))).add(record_row)
    return RunResult(
        status=status,
        record=record_row,
        run_dir=run_dir,
        message=message,
        log_tail=log_tail,
        checkpoint=checkpoint,
        scores=scores,
        warnings=warnings,
    )


def _intervals(run_dir: Path, warnings: list[str]) -> dict[str, tuple[float, float]]:
    try:
        from leaderboard.bootstrap import bootstrap_run

        return {k: (float(v[0]), float(v[1])) for k, v in bootstrap_run(run_dir).items()}
    except (*USER_ERRORS, Exception) as exc:  # noqa: BLE001 - intervals are optional
        warnings.append(f"no bootstrap intervals: {exc}")
        return {}


def _sha256(path: Path) -> str:
    from harness.checkpoint import sha256_file

    return sha256_file(path)
