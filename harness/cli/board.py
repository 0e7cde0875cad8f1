"""CLI commands `board` (the ranked leaderboard), `board compare A B` (is B really better than A?) and
`board stability --task T` (how stable is the ranking?).

Glue only: the leaderboard package stores, ranks and renders; this module picks the database, turns the
leaderboard's errors into one-line user errors and writes the output (atomically when to a file).
"""

from __future__ import annotations

import io
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TypeVar

import click
from rich.console import Console

from harness.cli._group import cli
from harness.errors import HarnessError
from harness.files import write_text_atomic
from harness.reference import board_tasks, record_missing_rows
from leaderboard.compare import compare_selected
from leaderboard.errors import BoardError
from leaderboard.html import boards_to_html
from leaderboard.ranking import rank_all, rank_board
from leaderboard.record import RunRecord
from leaderboard.render import (
    boards_to_csv,
    boards_to_json,
    boards_to_markdown,
    comparison_to_json,
    comparison_to_markdown,
    render_boards,
    render_comparison,
    render_stability,
    stability_to_json,
)
from leaderboard.stability import board_stability
from leaderboard.store import Store, default_db

FORMATS = ("table", "markdown", "csv", "json", "html")
T = TypeVar("T")


@contextmanager
def _user_errors() -> Iterator[None]:
    try:
        yield
    except BoardError as exc:
        raise HarnessError(str(exc)) from None


def _console() -> Console:
    return Console(width=None if sys.stdout.isatty() else 200, highlight=False)


def _write(text: str, output: Path | None) -> None:
    """Print, or write the file atomically (temporary file in the same folder, then rename)."""
    if output is None:
        click.echo(text, nl=not text.endswith("\n"))
        return
    write_text_atomic(output, text)  # a path it cannot write is one line naming it (files.WriteError)
    click.echo(f"wrote {output}", err=True)


def _table_text(render: Callable[[T, Console], None], value: T) -> str:
    """What `render` prints for `value`, as plain text without the padding to the console width."""
    console = Console(record=True, width=200, file=io.StringIO())
    render(value, console)
    return "\n".join(line.rstrip() for line in console.export_text().splitlines()) + "\n"


def _store(db: Path | None) -> Store:
    path = db if db is not None else default_db()
    if path.is_dir():
        raise HarnessError(f"{path}: is a folder; --db takes the leaderboard file (e.g. {default_db(path)})")
    return Store(path)


def _check_task(store: Store, records: list[RunRecord], task: str) -> None:
    """One clear error when no run of `task` is recorded, naming the tasks that have runs."""
    known = sorted({r.task for r in records})
    if task not in known:
        shown = ", ".join(known) or "none"
        raise HarnessError(f"{store.path}: no runs recorded for task {task!r} (tasks with runs: {shown})")


@cli.group(invoke_without_command=True)
@click.option(
    "--task", "task", metavar="NAME", help="Only this task's board (default: every task with runs)."
)
@click.option("--all-runs", is_flag=True, help="Every run, not only the best of each submission + variant.")
@click.option("--format", "fmt", type=click.Choice(FORMATS), default="table", show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Same as --format json.")
@click.option("--output", type=click.Path(dir_okay=False, path_type=Path), help="Write to this file.")
@click.option(
    "--db",
    type=click.Path(path_type=Path),
    help="Leaderboard database [default: $UNLEARN_HARNESS_RESULTS/leaderboard.sqlite or runs/leaderboard.sqlite].",
)
@click.pass_context
def board(
    ctx: click.Context,
    task: str | None,
    all_runs: bool,
    fmt: str,
    as_json: bool,
    output: Path | None,
    db: Path | None,
) -> None:
    """Rank the recorded runs like the official site, with 95% bootstrap intervals.

    One row per seed group (runs recorded together by `run --seeds`): the mean over its seeds, the seed SD and
    a two-level interval (seeds, then rows); a single run is a group of one seed.

    For a task with an MMLU threshold, runs below it are listed apart (honorary mentions). Reference rows
    (the untouched target, the retain-only gold model) are shown but not ranked; failed runs are listed with
    their status. --format html writes one self-contained page with trade-off plots.
    """
    ctx.ensure_object(dict)
    ctx.obj["board_db"] = db
    if ctx.invoked_subcommand is not None:
        return
    fmt = "json" if as_json else fmt
    with _user_errors():
        store = _store(db)
        records = store.records()
        if task is not None:
            _check_task(store, records, task)
            if (specs := board_tasks(task, records)) and record_missing_rows(
                specs, store.path.parent, progress=fmt != "json", db=store.path
            ):
                records = store.records()  # the task's reference rows, recorded now (harness.reference)
        boards = rank_all(records, task=task, all_runs=all_runs)
    if not boards and fmt == "table":
        click.echo(f"No runs recorded in {store.path} yet.")
        return
    if fmt == "table" and output is None:
        render_boards(boards, _console())
        return
    if fmt == "html":
        if output is None:
            output = store.path.with_suffix(".html")
        text = boards_to_html(boards)
    elif fmt == "table":
        text = _table_text(render_boards, boards)
    else:
        text = {"markdown": boards_to_markdown, "csv": boards_to_csv, "json": boards_to_json}[fmt](boards)
    _write(text, output)


@board.command()
@click.argument("a")
@click.argument("b")
@click.option(
    "--resamples", default=1000, show_default=True, type=click.IntRange(min=1), help="Bootstrap resamples."
)
@click.option("--seed", default=0, show_default=True, type=int, help="Bootstrap seed.")
@click.option(
    "--format", "fmt", type=click.Choice(("table", "markdown", "json")), default="table", show_default=True
)
@click.option("--json", "as_json", is_flag=True, help="Same as --format json.")
@click.option("--output", type=click.Path(dir_okay=False, path_type=Path), help="Write to this file.")
@click.option("--db", type=click.Path(path_type=Path), help="Leaderboard database (as for `board`).")
@click.pass_context
def compare(
    ctx: click.Context,
    a: str,
    b: str,
    resamples: int,
    seed: int,
    fmt: str,
    as_json: bool,
    output: Path | None,
    db: Path | None,
) -> None:
    """Is B better than A? Differences B - A with paired bootstrap intervals.

    A and B are run ids or group ids, or unique prefixes of them. Two runs are resampled with the same rows.
    A group is compared by its mean over seeds, paired with the other side seed by seed (both must have the
    same seeds) and row by row. A headline number is "better" or "worse" when its whole 95% interval is
    above or below 0.
    """
    fmt = "json" if as_json else fmt
    with _user_errors():
        store = _store(db if db is not None else (ctx.obj or {}).get("board_db"))
        comparison = compare_selected(store.select(a), store.select(b), n=resamples, seed=seed)
    if fmt == "table" and output is None:
        render_comparison(comparison, _console())
        return
    if fmt == "table":
        text = _table_text(render_comparison, comparison)
    else:
        text = comparison_to_json(comparison) if fmt == "json" else comparison_to_markdown(comparison)
    _write(text, output)


@board.command()
@click.option("--task", "task", metavar="NAME", help="The task (default: the only task with runs).")
@click.option(
    "--resamples", default=1000, show_default=True, type=click.IntRange(min=1), help="Bootstrap resamples."
)
@click.option("--seed", default=0, show_default=True, type=int, help="Bootstrap seed.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.option("--output", type=click.Path(dir_okay=False, path_type=Path), help="Write to this file.")
@click.option("--db", type=click.Path(path_type=Path), help="Leaderboard database (as for `board`).")
@click.pass_context
def stability(
    ctx: click.Context,
    task: str | None,
    resamples: int,
    seed: int,
    as_json: bool,
    output: Path | None,
    db: Path | None,
) -> None:
    """How stable is the ranking? P(rank 1) and expected rank under the two-level resampling.

    For the ranked variants (best group of each): the probability of rank 1 and the expected rank when the
    seeds and then the rows are resampled; the ranks under the V1 and V2 formulas and Kendall's tau of the
    V3 ranking with each; how many ranks change without the MIA term.
    """
    with _user_errors():
        store = _store(db if db is not None else (ctx.obj or {}).get("board_db"))
        records = store.records()
        known = sorted({r.task for r in records})
        if task is None:
            if len(known) != 1:
                shown = ", ".join(known) or "none"
                raise HarnessError(f"{store.path}: pass --task (tasks with runs: {shown})")
            task = known[0]
        _check_task(store, records, task)
        board_rows = rank_board(records, task, intervals=False)
        result = board_stability(board_rows, n=resamples, seed=seed)
    if as_json:
        _write(stability_to_json(result), output)
        return
    if output is None:
        render_stability(result, _console())
        return
    _write(_table_text(render_stability, result), output)
