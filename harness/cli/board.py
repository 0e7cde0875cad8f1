"""CLI commands `board` (the ranked leaderboard) and `board compare RUN_A RUN_B` (is B really better than A?).

Glue only: the leaderboard package stores, ranks and renders; this module picks the database, turns the
leaderboard's errors into one-line user errors and writes the output (atomically when to a file).
"""

from __future__ import annotations

import io
import os
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import click
from rich.console import Console

from harness.cli._group import cli
from harness.errors import HarnessError
from leaderboard.compare import compare_records
from leaderboard.errors import BoardError
from leaderboard.html import boards_to_html
from leaderboard.ranking import rank_all
from leaderboard.render import (
    boards_to_csv,
    boards_to_json,
    boards_to_markdown,
    comparison_to_json,
    comparison_to_markdown,
    render_boards,
    render_comparison,
)
from leaderboard.store import Store, default_db

FORMATS = ("table", "markdown", "csv", "json", "html")


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
    folder = output.parent if str(output.parent) else Path(".")
    try:
        folder.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{output.name}.", dir=folder)
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
        os.replace(tmp, output)
    except OSError as exc:
        raise HarnessError(f"{output}: cannot write: {exc.strerror or exc}") from None
    click.echo(f"wrote {output}", err=True)


def _plain(console: Console) -> str:
    """What a recording console printed, as plain text without the padding to the console width."""
    return "\n".join(line.rstrip() for line in console.export_text().splitlines()) + "\n"


def _store(db: Path | None) -> Store:
    path = db if db is not None else default_db()
    if path.is_dir():
        raise HarnessError(f"{path}: is a folder; --db takes the leaderboard file (e.g. {default_db(path)})")
    return Store(path)


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
        if task is not None and not any(r.task == task for r in records):
            known = ", ".join(sorted({r.task for r in records})) or "none"
            raise HarnessError(f"{store.path}: no runs recorded for task {task!r} (tasks with runs: {known})")
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
        console = Console(record=True, width=200, file=io.StringIO())
        render_boards(boards, console)
        text = _plain(console)
    else:
        text = {"markdown": boards_to_markdown, "csv": boards_to_csv, "json": boards_to_json}[fmt](boards)
    _write(text, output)


@board.command()
@click.argument("run_a")
@click.argument("run_b")
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
    run_a: str,
    run_b: str,
    resamples: int,
    seed: int,
    fmt: str,
    as_json: bool,
    output: Path | None,
    db: Path | None,
) -> None:
    """Is run B better than run A? Differences B - A with paired bootstrap intervals.

    RUN_A and RUN_B are run ids or unique prefixes of them. Both runs are resampled with the same rows; a
    headline number is "better" or "worse" when its whole 95% interval is above or below 0.
    """
    fmt = "json" if as_json else fmt
    with _user_errors():
        store = _store(db if db is not None else (ctx.obj or {}).get("board_db"))
        comparison = compare_records(store.get(run_a), store.get(run_b), n=resamples, seed=seed)
    if fmt == "table" and output is None:
        render_comparison(comparison, _console())
        return
    if fmt == "table":
        console = Console(record=True, width=200, file=io.StringIO())
        render_comparison(comparison, console)
        text = _plain(console)
    else:
        text = comparison_to_json(comparison) if fmt == "json" else comparison_to_markdown(comparison)
    _write(text, output)
