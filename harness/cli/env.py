"""CLI command `env official`: create (once) and show the organisers' pinned environment (harness/envs)."""

from __future__ import annotations

import json

import click
from rich.console import Console
from rich.table import Table

from harness.cli._group import cli
from harness.envs import official


@cli.group()
def env() -> None:
    """Other Python environments the harness runs its own code in."""


@env.command("official")
@click.option("--rebuild", is_flag=True, help="Create it again even where it exists.")
@click.option("--where", is_flag=True, help="Only print the folder (exit 1 where it does not exist yet).")
@click.option("--json", "as_json", is_flag=True, help="Print the environment as one JSON object.")
def env_official(rebuild: bool, where: bool, as_json: bool) -> None:
    """Create the organisers' environment (transformers 4.45.2, pandas 2.2.3, ...) once and show it.

    `score --official-env` and `check` use it: the exact path, loading, MMLU and scoring then run under the
    organisers' releases. Needs the package index the first time (a minute); torch is reused, not installed.
    """
    if where:
        found = official.locate()
        if found is None:
            raise SystemExit(1)
        click.echo(found.root)
        return
    stderr = Console(stderr=True, highlight=False)
    if official.locate() is None or rebuild:
        stderr.print(f"creating the official environment in {official.env_dir()} (about a minute) ...")
    found = official.create(rebuild=rebuild)
    if as_json:
        click.echo(json.dumps(found.to_json()))
        return
    console = Console(highlight=False)
    console.print(f"official environment: {found.root}", soft_wrap=True)
    table = Table("package", "pinned", "installed")
    pinned = dict(p.split("==") for p in official.PINS)
    for name, version in pinned.items():
        got = found.installed.get(name.lower().replace("_", "-"), found.installed.get(name.lower(), "?"))
        table.add_row(name, version, got)
    table.add_row("torch", "2.5.0 (not installed: reused)", found.torch)
    console.print(table)
