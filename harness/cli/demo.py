"""CLI commands `demo` (the README's first command) and `sweep` (a grid of variants of one submission).

`demo` builds the tiny world if needed, puts the reference rows on the board (the untouched target and
the retain-only gold model, each evaluated once), runs a handful of reference entries within their
budgets and shows the leaderboard. `sweep` runs the Cartesian product of ``--grid`` values one after
another, N at a time, or as Slurm jobs through submitit; every run lands on the same board.
"""

from __future__ import annotations

import itertools
import json
import sys
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import click
from rich.console import Console

import harness
from harness import __version__
from harness.cli._group import cli
from harness.errors import HarnessError
from leaderboard.record import RunRecord, score_fields
from leaderboard.status import SCORED, Status
from tasks.spec import TaskSpec

#: the reference entries shipped in the repository
SUBMISSIONS_DIR = Path(harness.__file__).resolve().parents[1] / "submissions"
#: what the demo runs: the seed paper's gradient difference, the 1st-place SUGD, the organisers' NPO
DEMO_ENTRIES = ("grad_diff", "sugd", "rmu")
EXECUTORS = ("local", "slurm", "submitit-local")


def _stderr() -> Console:
    return Console(stderr=True, highlight=False)


def _stdout() -> Console:
    """The board's console: the terminal's width, or 200 columns when piped (names are not cut)."""
    return Console(width=None if sys.stdout.isatty() else 200, highlight=False)


def _results_root(results: Path | None) -> Path:
    import os

    return results or Path(os.environ.get("UNLEARN_HARNESS_RESULTS") or "runs")


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


# ------------------------------------------------------------------------------------ reference rows


def reference_record(
    role: str, checkpoint: Path, task: TaskSpec, results_root: Path, progress: bool
) -> RunRecord:
    """Evaluate ``checkpoint`` (the untouched target or the gold model) and build its leaderboard record."""
    from harness.inference import evaluate
    from leaderboard.bootstrap import bootstrap_run

    created = datetime.now(timezone.utc)
    run_id = uuid.uuid4().hex[:8]
    name = "untouched-target" if role == "reference-target" else "gold-retain-only"
    run_dir = (results_root / task.name / f"{created:%Y%m%dT%H%M%SZ}-{name}-{run_id}").resolve()
    run_dir.mkdir(parents=True)
    result = evaluate(checkpoint, task, run_dir, progress=progress)
    return RunRecord(
        run_id=run_id,
        created_at=created.isoformat(timespec="seconds"),
        task=task.name,
        submission_name=name,
        submission_sha256="",
        variant="reference",
        status=Status.OK.value,
        role=role,
        message=f"reference row: {checkpoint}",
        **score_fields(result.scores),
        unchanged=role == "reference-target",
        intervals=bootstrap_run(run_dir),
        timings={k: round(v, 3) for k, v in result.timings.items()},
        run_dir=str(run_dir),
        harness_version=__version__,
    )


def ensure_reference_rows(task: TaskSpec, results_root: Path, progress: bool = True) -> list[RunRecord]:
    """Add the reference-target (and, when the task has one, reference-gold) rows unless already there."""
    from leaderboard.store import Store, default_db

    store = Store(default_db(results_root))
    present = {r.role for r in store.records(task=task.name)}
    added = []
    for role, checkpoint in (("reference-target", task.model_dir), ("reference-gold", task.gold_model_dir)):
        if checkpoint is None or role in present:
            continue
        record = reference_record(role, Path(checkpoint), task, results_root, progress)
        store.add(record)
        added.append(record)
    return added


def show_board(task_name: str, results_root: Path, console: Console) -> None:
    from leaderboard.ranking import rank_all
    from leaderboard.render import render_boards
    from leaderboard.store import Store, default_db

    records = Store(default_db(results_root)).records(task=task_name)
    render_boards(rank_all(records, task=task_name), console)


def _status_line(name: str, variant: str, status: str, final: float | None, message: str) -> str:
    colour = "green" if status == Status.OK else "yellow" if status == Status.SALVAGED else "red"
    score = f"final {final:.3f}" if final is not None else message
    return f"[bold]{name}[/] {variant}: [{colour}]{status}[/] {score}"


# --------------------------------------------------------------------------------------------- demo


@cli.command()
@click.option("--task", "task_name", default="tiny", show_default=True, help="Task to run the demo on.")
@click.option(
    "--entries",
    default=",".join(DEMO_ENTRIES),
    show_default=True,
    help="Comma-separated reference entries (file stems in submissions/).",
)
@click.option("--budget", type=float, help="Seconds per entry [default: the task's budget].")
@click.option(
    "--results", type=click.Path(file_okay=False, path_type=Path), help="Results folder [default: runs]."
)
@click.option("--json", "as_json", is_flag=True, help="Print the demo's runs as one JSON object.")
def demo(task_name: str, entries: str, budget: float | None, results: Path | None, as_json: bool) -> None:
    """Build the tiny world, record the reference rows, run a few reference entries, show the board."""
    from harness.runner import run_submission
    from tasks.registry import get_task

    console = _stderr()
    results_root = _results_root(results)
    names = [e.strip() for e in entries.split(",") if e.strip()]
    files = [SUBMISSIONS_DIR / f"{name}.py" for name in names]
    for name, path in zip(names, files):
        if not path.is_file():
            known = ", ".join(
                sorted(p.stem for p in SUBMISSIONS_DIR.glob("*.py") if not p.stem.startswith("unlearn_"))
            )
            raise HarnessError(f"{path}: no reference entry '{name}' (known: {known})")
    console.print(f"[bold]task[/] {task_name}: building or reusing the world")
    # the tiny world's gold model is the board's second reference row (trained beside a cold build)
    overrides = {"gold": "true"} if task_name == "tiny" else None
    task = get_task(task_name, overrides, progress=not as_json)
    console.print("[bold]reference rows[/]: the untouched target and the gold model")
    for record in ensure_reference_rows(task, results_root, progress=not as_json):
        console.print(
            _status_line(record.submission_name, "reference", record.status, record.final_score, "")
        )
    runs = []
    for name, path in zip(names, files):
        result = run_submission(path, task, budget_s=budget, results_root=results_root, progress=not as_json)
        record = result.record
        console.print(_status_line(name, record.variant, record.status, record.final_score, result.message))
        runs.append({"submission": name, "status": record.status, "run_id": record.run_id,
                     "final_score": record.final_score, "run_dir": record.run_dir})  # fmt: skip
    if as_json:
        click.echo(json.dumps({"task": task.name, "runs": runs}, indent=2))
        return
    show_board(task.name, results_root, _stdout())


# -------------------------------------------------------------------------------------------- sweep


def run_variant(
    submission: str,
    task_name: str,
    params: dict[str, Any],
    variant: str,
    budget_s: float | None,
    results_root: str,
    processes: int = 1,
    launcher: str = "python",
) -> dict[str, Any]:
    """One sweep job (here, in a thread, or on a Slurm node): run the variant and record it on the board."""
    from harness.runner import run_submission
    from tasks.registry import get_task

    task = get_task(task_name, progress=False)
    result = run_submission(
        Path(submission), task, budget_s=budget_s, params=params, variant=variant, processes=processes,
        launcher=launcher, results_root=Path(results_root), progress=False,
    )  # fmt: skip
    return {"variant": variant, "params": params, "status": result.status, "message": result.message,
            "record": asdict(result.record)}  # fmt: skip


def _submitit_executor(executor: str, folder: Path, budget_s: float, partition: str | None, gpus: int):
    import submitit

    if executor == "submitit-local":
        ex = submitit.LocalExecutor(folder=folder)
        ex.update_parameters(timeout_min=max(2, int(budget_s // 60) + 30))
        return ex
    ex = submitit.AutoExecutor(folder=folder, cluster="slurm")
    ex.update_parameters(
        timeout_min=max(5, int(budget_s // 60) + 30), slurm_partition=partition, gpus_per_node=gpus or None,
        cpus_per_task=8, name="unlearn-sweep",
    )  # fmt: skip
    return ex


@cli.command()
@click.argument("submission", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option(
    "--grid", "grid_items", multiple=True, metavar="KEY=V1,V2", help="Values to try (repeat per key)."
)
@click.option(
    "--set", "set_items", multiple=True, metavar="KEY=VALUE", help="A fixed keyword argument for all."
)
@click.option("--task", "task_name", default="tiny", show_default=True)
@click.option("--budget", type=float, help="Seconds per variant [default: the task's budget].")
@click.option(
    "--parallel", default=1, show_default=True, type=click.IntRange(min=1), help="Variants at a time."
)
@click.option("--executor", type=click.Choice(EXECUTORS), default="local", show_default=True,
              help="local: here; slurm: one Slurm job per variant (submitit); submitit-local: submitit's local "
              "executor (the slurm code path without a cluster).")  # fmt: skip
@click.option("--partition", help="Slurm partition (with --executor slurm).")
@click.option("--gpus", default=0, show_default=True, type=int, help="GPUs per Slurm job.")
@click.option("--processes", default=1, show_default=True, type=int, help="Processes per variant.")
@click.option("--launcher", default="python", show_default=True, help="python, torchrun or accelerate.")
@click.option(
    "--results", type=click.Path(file_okay=False, path_type=Path), help="Results folder [default: runs]."
)
@click.option("--json", "as_json", is_flag=True, help="Print the variants' outcomes as one JSON object.")
def sweep(
    submission: Path,
    grid_items: tuple[str, ...],
    set_items: tuple[str, ...],
    task_name: str,
    budget: float | None,
    parallel: int,
    executor: str,
    partition: str | None,
    gpus: int,
    processes: int,
    launcher: str,
    results: Path | None,
    as_json: bool,
) -> None:
    """Run SUBMISSION once per combination of the --grid values and show the variants on the board.

    Example: unlearn-harness sweep submissions/ga.py --grid lr=1e-4,3e-4 --grid epochs=1,2
    """
    from harness.cli.run import parse_set
    from harness.contract import check_submission
    from tasks.registry import get_task

    console = _stderr()
    results_root = _results_root(results).resolve()
    grid = parse_grid(grid_items)
    plan = variants(grid, parse_set(set_items))
    report = check_submission(submission)
    if report.errors:
        raise HarnessError(str(report.errors[0]))
    for key in {k for _, params in plan for k in params}:
        if not report.accepts(key):
            takes = ", ".join(p.name for p in report.extra_parameters) or "no extra parameters"
            raise HarnessError(
                f"--grid/--set {key}: unlearn() in {submission} has no parameter '{key}' (it takes: {takes})"
            )
    task = get_task(task_name, progress=not as_json)  # build once here, not in every job
    budget_s = budget if budget is not None else task.budget_s
    console.print(
        f"[bold]sweep[/] {submission.name}: {len(plan)} variants on {task.name} ({executor}, {parallel} at a time)"
    )
    args = [(str(submission.resolve()), task.name, params, name, budget, str(results_root), processes, launcher)
            for name, params in plan]  # fmt: skip
    outcomes: list[dict[str, Any]] = []
    if executor == "local":
        with ThreadPoolExecutor(max_workers=parallel) as pool:
            futures = [pool.submit(run_variant, *a) for a in args]
            for future in futures:
                outcomes.append(future.result())
                _report(console, submission.stem, outcomes[-1])
    else:
        folder = results_root / "submitit" / datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
        ex = _submitit_executor(executor, folder, budget_s, partition, gpus)
        if executor == "slurm":
            ex.update_parameters(slurm_array_parallelism=parallel)
        jobs = ex.map_array(run_variant, *zip(*args))  # one job array; Slurm runs `parallel` at a time
        console.print(f"submitted {len(jobs)} jobs ({', '.join(j.job_id for j in jobs)}); logs in {folder}")
        for (name, params), job in zip(plan, jobs):
            try:
                outcomes.append(job.result())
            except Exception as exc:  # noqa: BLE001 - a failed job is one line, the others still count
                first = str(exc).strip().splitlines()[-1] if str(exc).strip() else type(exc).__name__
                outcomes.append({"variant": name, "params": params, "status": "JOB_FAILED", "message": first,
                                 "record": None})  # fmt: skip
            _report(console, submission.stem, outcomes[-1])
    if as_json:
        click.echo(
            json.dumps({"task": task.name, "submission": str(submission), "variants": outcomes}, indent=2)
        )
        return
    show_board(task.name, results_root, _stdout())
    if any(o["status"] not in SCORED for o in outcomes):
        sys.exit(1)


def _report(console: Console, name: str, outcome: dict[str, Any]) -> None:
    record = outcome.get("record") or {}
    console.print(
        _status_line(
            name, outcome["variant"], outcome["status"], record.get("final_score"), outcome["message"]
        )
    )
