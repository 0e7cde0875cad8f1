"""CLI commands about tasks: ``unlearn-harness tasks`` (list, present/missing) and ``task build tiny``."""

from __future__ import annotations

import json
from pathlib import Path

import click
from rich.console import Console
from rich.table import Table

from harness.cli._group import cli
from harness.errors import HarnessError
from tasks.registry import describe_task, list_tasks, validate_task
from tasks.spec import PATH_FIELDS, SETTING_FIELDS, TaskSpec


def _spec_json(spec: TaskSpec, counts: dict[str, int] | None) -> dict[str, object]:
    out: dict[str, object] = {"name": spec.name, "description": spec.description, "source": spec.source}
    for field in PATH_FIELDS:
        value = getattr(spec, field)
        out[field] = None if value is None else str(value)
    out["missing"] = spec.missing()
    out["ready"] = not spec.missing()
    out["settings"] = {}
    for field in SETTING_FIELDS:
        value = getattr(spec, field)
        out["settings"][field] = (list(value) or None) if isinstance(value, tuple) else value
    if counts is not None:
        out["counts"] = counts
    return out


@cli.command("tasks")
@click.option("--check", is_flag=True, help="Also read every present data file and count its rows.")
@click.option("--json", "as_json", is_flag=True, help="Print machine-readable JSON instead of a table.")
def tasks_command(check: bool, as_json: bool) -> None:
    """List the tasks and, for each, what is present and what is missing.

    Real tasks are tasks/<name>.toml; override any path with UNLEARN_HARNESS_<TASK>_<FIELD>
    (e.g. UNLEARN_HARNESS_SEMEVAL25_7B_MODEL_DIR). The tiny task is built with `task build tiny`.
    """
    specs = [describe_task(name) for name in list_tasks()]
    counts = {spec.name: validate_task(spec) for spec in specs} if check else {}
    if as_json:
        click.echo(json.dumps([_spec_json(spec, counts.get(spec.name)) for spec in specs], indent=2))
        return
    table = Table(title="tasks")
    table.add_column("task", style="bold")
    table.add_column("status")
    table.add_column("missing")
    table.add_column("description")
    if check:
        table.add_column("rows (forget/retain, MIA, MMLU)")
    for spec in specs:
        missing = spec.missing()
        status = "[green]ready[/green]" if not missing else "[yellow]incomplete[/yellow]"
        listed = ", ".join(missing) or "-"
        if spec.name == "tiny" and missing:
            status, listed = "[yellow]not built[/yellow]", "all: run `unlearn-harness task build tiny`"
        row = [spec.name, status, listed, spec.description]
        if check:
            c = counts[spec.name]
            row.append(
                f"{c.get('eval_forget_rows', '-')}/{c.get('eval_retain_rows', '-')}, "
                f"{c.get('mia_member_docs', '-')}/{c.get('mia_nonmember_docs', '-')}, "
                f"{c.get('mmlu_subjects', '-')} subj. {c.get('mmlu_test_questions', '-')} q."
            )
        table.add_row(*row)
    Console().print(table)


@cli.group("task")
def task_group() -> None:
    """Build and inspect tasks."""


@task_group.command("build")
@click.argument("name")
@click.option("--seed", type=click.IntRange(min=0), default=0, show_default=True, help="World seed.")
@click.option(
    "--size", type=click.Choice(["tiny", "small"]), default="tiny", show_default=True, help="World size."
)
@click.option("--gold", is_flag=True, help="Also build the retain-only gold model.")
@click.option(
    "--cache",
    "cache_root",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Cache root (default: $UNLEARN_HARNESS_CACHE, else the user cache dir).",
)
@click.option("--json", "as_json", is_flag=True, help="Print the built paths as JSON.")
def build_command(
    name: str, seed: int, size: str, gold: bool, cache_root: Path | None, as_json: bool
) -> None:
    """Build task NAME (only `tiny` is built; real tasks are configured in tasks/<name>.toml).

    Builds into the cache, keyed by the generator version, seed, size and settings; a second build
    with the same inputs returns the cached one at once.
    """
    from tasks.tiny import build_tiny

    if name != "tiny":
        known = ", ".join(n for n in list_tasks() if n != "tiny")
        raise HarnessError(
            f"only the tiny task is built; {name!r} is configured by path (real tasks: {known}; see `tasks`)"
        )
    build = build_tiny(seed=seed, size=size, gold=gold, cache_root=cache_root, progress=not as_json)
    if as_json:
        click.echo(json.dumps(build.to_json(), indent=2))
        return
    table = Table(title=f"tiny world (size {size}, seed {seed})", show_header=False)
    table.add_column("what", style="bold")
    table.add_column("path")
    for key, value in build.to_json().items():
        if key not in ("seed", "size"):
            table.add_row(key, "-" if value is None else str(value))
    Console().print(table)
