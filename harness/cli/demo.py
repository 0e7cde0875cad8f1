"""CLI commands `demo` (the README's first command) and `sweep` (a grid of variants of one submission).

Glue only: `demo` builds the tiny world if needed, puts the reference rows on the board
(harness.reference), runs a handful of reference entries within their budgets and shows the leaderboard;
`sweep` parses its options, hands the grid to harness.sweep (which runs and records every variant, one
after another, N at a time, or as Slurm jobs through submitit) and prints the outcomes and the board.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

import click
from rich.console import Console

import harness
from harness.cli._group import cli
from harness.cli.run import isolation_option
from harness.errors import HarnessError
from harness.reference import ensure_reference_rows
from harness.sweep import EXECUTORS
from leaderboard.status import SCORED, Status

#: the reference entries shipped in the repository
SUBMISSIONS_DIR = Path(harness.__file__).resolve().parents[1] / "submissions"
#: what the demo runs: the seed paper's gradient difference, the 1st-place SUGD, the organisers' NPO
DEMO_ENTRIES = ("grad_diff", "sugd", "rmu")


def _stderr() -> Console:
    return Console(stderr=True, highlight=False)


def _stdout() -> Console:
    """The board's console: the terminal's width, or 200 columns when piped (names are not cut)."""
    return Console(width=None if sys.stdout.isatty() else 200, highlight=False)


def _results_root(results: Path | None) -> Path:
    return results or Path(os.environ.get("UNLEARN_HARNESS_RESULTS") or "runs")


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
@isolation_option
@click.option("--seeds", default=None, metavar="K,K,...",
              help="Run each variant once per seed (seed=k where unlearn takes it), as one group per variant.")  # fmt: skip
@click.option("--resume", is_flag=True,
              help="Skip the variants (and seeds) already scored on the board for the same submission file "
              "(sha256), task and parameters; a recorded run that failed runs again.")  # fmt: skip
@click.option(
    "--results", type=click.Path(file_okay=False, path_type=Path), help="Results folder [default: runs]."
)
@click.option("--json", "as_json", is_flag=True, help="Print the variants' outcomes as one JSON object.")
def sweep(
    submission: Path, grid_items: tuple[str, ...], set_items: tuple[str, ...], task_name: str,
    budget: float | None, parallel: int, executor: str, partition: str | None, gpus: int, processes: int,
    launcher: str, isolation: str, seeds: str | None, resume: bool, results: Path | None, as_json: bool,
) -> None:  # fmt: skip
    """Run SUBMISSION once per combination of the --grid values and show the variants on the board.

    Example: unlearn-harness sweep submissions/ga.py --grid lr=1e-4,3e-4 --grid epochs=1,2
    """
    from harness import sweep as sweeps
    from harness.checkpoint import sha256_file
    from harness.cli.run import parse_seeds, parse_set
    from leaderboard.store import Store, default_db
    from tasks.registry import get_task

    console = _stderr()
    results_root = _results_root(results).resolve()
    run_seeds = parse_seeds("--seeds", seeds)
    todo = sweeps.plan(sweeps.parse_grid(grid_items), parse_set(set_items), run_seeds)
    sweeps.check_plan(submission, todo)
    task = get_task(task_name, progress=not as_json)  # build once here, not in every job
    if resume:
        records = Store(default_db(results_root)).records(task=task.name)
        todo = sweeps.resume(todo, records, sha256_file(submission), task)
    runs = len(todo) * (len(run_seeds) if run_seeds else 1)
    done = f", {sum(len(v.done) for v in todo)} of {runs} runs already recorded" if resume else ""
    per_seed = f" x {len(run_seeds)} seeds" if run_seeds else ""
    console.print(
        f"[bold]sweep[/] {submission.name}: {len(todo)} variants{per_seed} on {task.name} "
        f"({executor}, {parallel} at a time{done})",
        soft_wrap=True,
    )
    options = sweeps.SweepOptions(
        results_root=results_root, budget_s=budget, processes=processes, launcher=launcher, isolation=isolation,
        parallel=parallel, executor=executor, partition=partition, gpus=gpus,
    )  # fmt: skip
    outcomes = sweeps.run_sweep(
        submission, task, todo, options, say=console.print, on_outcome=lambda o: _report(console, submission.stem, o)
    )  # fmt: skip
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
    final = record.get("final_score") if record else outcome.get("final_score")
    line = _status_line(name, outcome["variant"], outcome["status"], final, outcome["message"])
    if outcome.get("seeds"):
        line += f" (mean of seeds {', '.join(map(str, outcome['seeds']))}; group {outcome['group_id']})"
    if outcome.get("skipped"):
        line += " [dim]already recorded (--resume)[/]"
    console.print(line, soft_wrap=True)
