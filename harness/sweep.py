"""Sweeps: a grid of variants of one submission, each run through harness.runner onto one board.

    plan      parse_grid + variants: the Cartesian product of the --grid values, each a named variant
              (with --seeds: run once per seed, as one seed group per variant)
    check     check_plan: the submission's contract, and every grid/--set key a parameter of unlearn()
    resume    resume: drop what the board already holds for the same submission (sha256), task (and world)
              and parameters; a seed group missing some seeds gets only those, in the same group
    execute   run_sweep: every variant still to run (run_submission, or run_group with seeds), here in
              threads N at a time or as submitit jobs (Slurm, or submitit's local executor)

An outcome is one JSON-ready dict per variant, in plan order: variant, params, status, message and
record (the run's record; None for a seed group); a seed group adds group_id, seeds, records and the
mean final_score; a variant --resume found already recorded has skipped: true.
"""

from __future__ import annotations

import itertools
import json
import math
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from harness.errors import HarnessError
from leaderboard.record import RunRecord
from leaderboard.status import SCORED, Status
from tasks.spec import TaskSpec

EXECUTORS = ("local", "slurm", "submitit-local")

Outcome = dict[str, Any]


def _literal(raw: str) -> Any:
    """A JSON literal when it parses (1e-5, 3, true), else the string itself."""
    try:
        return json.loads(raw)
    except ValueError:
        return raw


def parse_grid(items: tuple[str, ...]) -> dict[str, list[Any]]:
    """``("lr=1e-5,3e-5", "epochs=1,3")`` -> ``{"lr": [1e-05, 3e-05], "epochs": [1, 3]}``."""
    grid: dict[str, list[Any]] = {}
    for item in items:
        key, sep, raw = item.partition("=")
        key = key.strip()
        values = [v.strip() for v in raw.split(",")]
        if not sep or not key.isidentifier() or not all(values):
            raise HarnessError(
                f"--grid {item!r}: expected key=value1,value2,... with a Python identifier as key"
            )
        if key in grid:
            raise HarnessError(f"--grid {key}: given twice; list all its values in one --grid")
        grid[key] = [_literal(v) for v in values]
    if not grid:
        raise HarnessError("sweep needs at least one --grid key=value1,value2")
    return grid


def variants(
    grid: dict[str, list[Any]], fixed: dict[str, Any] | None = None
) -> list[tuple[str, dict[str, Any]]]:
    """Every combination of the grid (first key slowest), as (variant name, keyword parameters)."""
    fixed = dict(fixed or {})
    keys = list(grid)
    out = []
    for combo in itertools.product(*(grid[k] for k in keys)):
        params = {**fixed, **dict(zip(keys, combo))}
        out.append(
            (
                ",".join(f"{k}={json.dumps(v) if isinstance(v, str) else v}" for k, v in zip(keys, combo)),
                params,
            )
        )
    return out


@dataclass(frozen=True)
class Variant:
    """One variant of the plan and what is left of it to run."""

    name: str
    params: dict[str, Any]
    #: the run seeds still to run (None: one run without a seed)
    seeds: list[int] | None = None
    #: the seed group its runs join (None: a new group)
    group_id: str | None = None
    #: its scored runs already on the board (found by `resume`)
    done: tuple[RunRecord, ...] = field(default_factory=tuple)

    @property
    def left(self) -> bool:
        """Whether anything of it is still to run."""
        return not self.done if self.seeds is None else bool(self.seeds)


def plan(grid: dict[str, list[Any]], fixed: dict[str, Any], seeds: list[int] | None) -> list[Variant]:
    """The sweep's variants (see `variants`), each with every seed to run."""
    return [Variant(name, params, list(seeds) if seeds else None) for name, params in variants(grid, fixed)]


def check_plan(submission: Path, todo: list[Variant]) -> None:
    """The submission passes its static check and takes every parameter of the plan (one line if not)."""
    from harness.contract import check_submission

    report = check_submission(submission)
    if report.errors:
        raise HarnessError(str(report.errors[0]))
    for key in sorted({k for v in todo for k in v.params}):
        if not report.accepts(key):
            takes = ", ".join(p.name for p in report.extra_parameters) or "no extra parameters"
            raise HarnessError(
                f"--grid/--set {key}: unlearn() in {submission} has no parameter '{key}' (it takes: {takes})"
            )


def _same_run(record: RunRecord, sha: str, task: TaskSpec, params: dict[str, Any]) -> bool:
    """A scored run of this submission file, task (and world) and these parameters (the runner adds
    ``seed=k`` to the parameters of a seeded run of an entry that takes one: not a parameter of the plan)."""
    from harness.runner import world_seed

    if record.role != "entry" or record.status not in SCORED or record.submission_sha256 != sha:
        return False
    if record.limit is not None:  # a partial evaluation (run --limit) is not the full run a sweep records
        return False
    if record.task != task.name or record.world_seed != world_seed(task):
        return False
    recorded = dict(record.params)
    if record.seed is not None and "seed" not in params and recorded.get("seed") == record.seed:
        del recorded["seed"]
    return recorded == params


def resume(todo: list[Variant], records: list[RunRecord], sha: str, task: TaskSpec) -> list[Variant]:
    """`todo` less what `records` (the board's) already hold. A variant without seeds is done when one
    scored run matches; with seeds, the recorded group covering most of them is kept and only its missing
    seeds run, in that group. A recorded run that failed counts as not run (it runs again)."""
    out = []
    for variant in todo:
        mine = [r for r in records if _same_run(r, sha, task, variant.params)]
        if variant.seeds is None:
            single = [r for r in mine if r.seed is None]
            out.append(replace(variant, done=tuple(single[-1:])))
            continue
        groups: dict[str, dict[int, RunRecord]] = {}
        for record in mine:  # oldest first: a later run of a seed replaces an earlier one
            if record.group_id is not None and record.seed in variant.seeds:
                groups.setdefault(record.group_id, {})[record.seed] = record
        best = max(groups.items(), key=lambda item: len(item[1]), default=(None, {}))
        out.append(
            replace(
                variant,
                seeds=[k for k in variant.seeds if k not in best[1]],
                group_id=best[0],
                done=tuple(best[1][k] for k in variant.seeds if k in best[1]),
            )
        )
    return out


def group_outcome(variant: str, params: dict[str, Any], group_id: str, records: list[dict]) -> Outcome:
    """The outcome of a variant run as a seed group: the first failed seed's status, else OK (SALVAGED
    when any seed was salvaged), and the mean final score of its scored seeds."""
    failed = [r for r in records if r["status"] not in SCORED]
    finals = [r["final_score"] for r in records if r["final_score"] is not None]
    mean = math.fsum(finals) / len(finals) if finals else None
    if failed:
        status, message = failed[0]["status"], f"seed {failed[0]['seed']}: {failed[0]['message']}"
    else:
        salvaged = any(r["status"] == Status.SALVAGED for r in records)
        status = (Status.SALVAGED if salvaged else Status.OK).value
        message = (
            f"{len(records)} seeds, mean final {mean:.3f}" if mean is not None else f"{len(records)} seeds"
        )
    return {"variant": variant, "params": params, "status": status, "message": message, "record": None,
            "group_id": group_id, "seeds": [r["seed"] for r in records], "records": records,
            "final_score": mean}  # fmt: skip


def run_variant(
    submission: str,
    task_name: str,
    params: dict[str, Any],
    variant: str,
    budget_s: float | None,
    results_root: str,
    processes: int = 1,
    launcher: str = "python",
    isolation: str = "auto",
    seeds: list[int] | None = None,
    group_id: str | None = None,
) -> Outcome:
    """One sweep job (here, in a thread, or on a Slurm node): run the variant (once, or once per seed as
    one group) and record it on the board. Plain arguments, so that submitit can pickle the call."""
    from harness.runner import run_group, run_submission
    from tasks.registry import get_task

    task = get_task(task_name, progress=False)
    options = dict(
        budget_s=budget_s, params=params, variant=variant, processes=processes, launcher=launcher,
        results_root=Path(results_root), progress=False, isolation=isolation,
    )  # fmt: skip
    if seeds is None:
        result = run_submission(Path(submission), task, **options)
        return {"variant": variant, "params": params, "status": result.status, "message": result.message,
                "record": asdict(result.record)}  # fmt: skip
    group_id, results = run_group(Path(submission), [task], list(seeds), group_id=group_id, **options)
    return group_outcome(variant, params, group_id, [asdict(r.record) for r in results])


def _skipped(variant: Variant) -> Outcome:
    """The outcome of a variant `resume` found complete on the board."""
    records = [asdict(r) for r in variant.done]
    if variant.seeds is None:
        record = records[0]
        message = f"already recorded as run {record['run_id']} (--resume)"
        outcome = {"variant": variant.name, "params": variant.params, "status": record["status"],
                   "message": message, "record": record}  # fmt: skip
    else:
        outcome = group_outcome(variant.name, variant.params, variant.group_id or "", records)
        outcome["message"] = f"already recorded as group {variant.group_id} (--resume): {outcome['message']}"
    return {**outcome, "skipped": True}


def _finished(variant: Variant, outcome: Outcome) -> Outcome:
    """A job's outcome; a resumed seed group's covers its earlier seeds too."""
    if variant.done and variant.seeds and outcome.get("group_id"):
        earlier = [asdict(r) for r in variant.done]
        return group_outcome(variant.name, variant.params, outcome["group_id"], earlier + outcome["records"])
    return outcome


@dataclass(frozen=True)
class SweepOptions:
    """How to run every variant of a sweep (the `sweep` command's options)."""

    results_root: Path
    budget_s: float | None = None
    processes: int = 1
    launcher: str = "python"
    isolation: str = "auto"
    parallel: int = 1
    executor: str = "local"
    partition: str | None = None
    gpus: int = 0


def _submitit_executor(options: SweepOptions, folder: Path, job_s: float):
    """submitit's executor for `options.executor` (slurm or submitit-local), with room for `job_s` seconds."""
    import submitit

    if options.executor == "submitit-local":
        ex = submitit.LocalExecutor(folder=folder)
        ex.update_parameters(timeout_min=max(2, int(job_s // 60) + 30))
        return ex
    ex = submitit.AutoExecutor(folder=folder, cluster="slurm")
    ex.update_parameters(
        timeout_min=max(5, int(job_s // 60) + 30), slurm_partition=options.partition,
        gpus_per_node=options.gpus or None, cpus_per_task=8, name="unlearn-sweep",
        slurm_array_parallelism=options.parallel,
    )  # fmt: skip
    return ex


def _job_failed(variant: Variant, exc: Exception) -> Outcome:
    """A submitit job that died (no record of its own): one line, the other variants still count."""
    first = str(exc).strip().splitlines()[-1] if str(exc).strip() else type(exc).__name__
    return {"variant": variant.name, "params": variant.params, "status": "JOB_FAILED", "message": first,
            "record": None}  # fmt: skip


def run_sweep(
    submission: Path,
    task: TaskSpec,
    todo: list[Variant],
    options: SweepOptions,
    *,
    say: Callable[[str], None] = lambda text: None,
    on_outcome: Callable[[Outcome], None] = lambda outcome: None,
) -> list[Outcome]:
    """Run every variant of `todo` that is left (see `Variant.left`) and return one outcome per variant, in
    plan order. `say` gets progress lines; `on_outcome` each outcome as it is known (skipped ones first)."""
    outcomes: dict[int, Outcome] = {}
    for i, variant in enumerate(todo):
        if not variant.left:
            outcomes[i] = _skipped(variant)
            on_outcome(outcomes[i])
    left = [(i, v) for i, v in enumerate(todo) if v.left]
    args = [(str(submission.resolve()), task.name, v.params, v.name, options.budget_s, str(options.results_root),
             options.processes, options.launcher, options.isolation, v.seeds, v.group_id) for _, v in left]  # fmt: skip
    if options.executor == "local" and options.parallel == 1:
        for (i, variant), a in zip(left, args):  # here: Ctrl-C reaches the run, which stops its child
            outcomes[i] = _finished(variant, run_variant(*a))
            on_outcome(outcomes[i])
    elif options.executor == "local":
        pool = ThreadPoolExecutor(max_workers=options.parallel)
        try:
            futures = [pool.submit(run_variant, *a) for a in args]
            for (i, variant), future in zip(left, futures):
                outcomes[i] = _finished(variant, future.result())
                on_outcome(outcomes[i])
        except BaseException:  # interrupted: no variant starts any more (those running finish, recorded)
            pool.shutdown(wait=False, cancel_futures=True)
            raise
        pool.shutdown()
    elif left:
        folder = options.results_root / "submitit" / datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
        budget_s = options.budget_s if options.budget_s is not None else task.budget_s
        runs = max(len(v.seeds or [None]) for _, v in left)  # a seed group is one job of `runs` runs
        ex = _submitit_executor(options, folder, budget_s * runs)
        jobs = ex.map_array(run_variant, *zip(*args))  # one job array; Slurm runs `parallel` at a time
        say(f"submitted {len(jobs)} jobs ({', '.join(j.job_id for j in jobs)}); logs in {folder}")
        for (i, variant), job in zip(left, jobs):
            try:
                outcomes[i] = _finished(variant, job.result())
            except Exception as exc:  # noqa: BLE001 - a failed job is one line, the others still count
                outcomes[i] = _job_failed(variant, exc)
            on_outcome(outcomes[i])
    return [outcomes[i] for i in range(len(todo))]
