"""CLI commands about tasks: ``unlearn-harness tasks`` (list, present/missing) and ``task build tiny``;
and the task path flags of `run`, `check` and `score` (``--model PATH_OR_HUB_ID``, ``--forget-dir`` ...):
the option decorator, the check of each path, the Hugging Face hub look-up of a model id, and the task
they fill in (the overrides of `tasks.registry.get_task`; on the tiny task, a replaced field).
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click
from rich.console import Console
from rich.table import Table

from harness.cli._group import cli
from harness.errors import HarnessError
from leaderboard.render import print_whole
from tasks.registry import TINY, describe_task, env_name, get_task, list_tasks, validate_task
from tasks.spec import PATH_FIELDS, SETTING_FIELDS, TaskSpec

#: the flag of each TaskSpec path field
PATH_FLAGS = {
    field: {"model_dir": "--model", "gold_model_dir": "--gold-model"}.get(
        field, "--" + field.replace("_", "-")
    )
    for field in PATH_FIELDS
}
#: fields that take a local folder or a Hugging Face hub id
MODEL_FIELDS = ("model_dir", "gold_model_dir")
#: what each path flag sets (the TaskSpec field's meaning)
PATH_HELP = {
    "model_dir": "The target model: a local folder or a Hugging Face hub id (owner/name).",
    "forget_dir": "Folder with forget.jsonl / forget.parquet, handed to the submission.",
    "retain_dir": "Folder with retain.jsonl / retain.parquet, handed to the submission.",
    "eval_forget": "The scored forget rows (jsonl or parquet).",
    "eval_retain": "The scored retain rows (jsonl or parquet).",
    "mia_member": "MIA member documents (jsonl).",
    "mia_nonmember": "MIA non-member documents (jsonl).",
    "mmlu_dir": "MMLU folder (dev/ and test/ with <subject>_{dev,test}.csv).",
    "gold_model_dir": "The retain-only gold model: a local folder or a Hugging Face hub id.",
}
#: the fields that scoring reads (score's flags)
SCORED_FIELDS = ("eval_forget", "eval_retain", "mia_member", "mia_nonmember", "mmlu_dir")
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]{0,95}/[A-Za-z0-9][\w.-]{0,95}$")
#: weights in formats transformers' PyTorch loading never reads, and original (non-HF) checkpoints
_HUB_IGNORED = ["*.msgpack", "*.h5", "*.ot", "*.onnx", "*.gguf", "original/*", "onnx/*"]


def task_path_options(*fields: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Click options for the task path `fields` (default: all); each fills the field of the same name."""

    def decorate(command: Callable[..., Any]) -> Callable[..., Any]:
        for field in reversed(fields or PATH_FIELDS):
            metavar = (
                "PATH_OR_HUB_ID" if field in MODEL_FIELDS else "DIR" if field.endswith("_dir") else "FILE"
            )
            help_ = f"{PATH_HELP.get(field, field)} [default: the task's]"
            command = click.option(PATH_FLAGS[field], field, metavar=metavar, default=None, help=help_)(
                command
            )
        return command

    return decorate


def _offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "").strip().upper() in ("1", "ON", "YES", "TRUE")


def hub_snapshot(repo_id: str, flag: str) -> Path:
    """The local folder of hub model `repo_id` (huggingface_hub's snapshot_download; with HF_HUB_OFFLINE
    set only the local hub cache is read, nothing is fetched). Every failure is one HarnessError line."""
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import GatedRepoError, LocalEntryNotFoundError, RepositoryNotFoundError

    offline = _offline()
    where = f"{flag} {repo_id}: no such local folder, and the Hugging Face hub model {repo_id}"
    fetch_elsewhere = (
        f"fetch it on a machine with the network (`hf download {repo_id} --local-dir DIR`) and pass DIR"
    )
    try:
        return Path(snapshot_download(repo_id, local_files_only=offline, ignore_patterns=_HUB_IGNORED))
    except GatedRepoError:
        raise HarnessError(
            f"{where} is gated: accept its terms on its hub page, log in (`hf auth login` or $HF_TOKEN), retry"
        ) from None
    except RepositoryNotFoundError:
        raise HarnessError(f"{where} does not exist (or is private: log in with `hf auth login`)") from None
    except LocalEntryNotFoundError:
        if offline:
            raise HarnessError(
                f"{where} is not in the local hub cache and HF_HUB_OFFLINE is set, so nothing is fetched: "
                f"unset HF_HUB_OFFLINE where the network is allowed, or {fetch_elsewhere}"
            ) from None
        raise HarnessError(
            f"{where} is not in the local hub cache and the hub could not be reached: {fetch_elsewhere}"
        ) from None
    except (OSError, ValueError) as exc:  # HTTP and network errors are OSErrors; a bad id a ValueError
        reason = " ".join(str(exc).split())[:200]
        raise HarnessError(f"{where} could not be fetched ({type(exc).__name__}: {reason})") from None


def _model_folder(folder: Path, flag: str, value: str, check: bool) -> Path:
    if check and not (folder / "config.json").is_file():
        raise HarnessError(f"{flag} {value}: not a Hugging Face model folder (no config.json in {folder})")
    return folder


def resolve_path(field: str, value: str, flag: str | None = None, *, model_check: bool = True) -> Path:
    """The absolute path a path flag names; a model field also takes a hub id (owner/name) that is not a
    local path, and (`model_check`) must hold a config.json. A missing path is one line naming it."""
    flag = flag or PATH_FLAGS[field]
    path = Path(value).expanduser()
    want_dir = field.endswith("_dir")
    if path.exists():
        if want_dir and not path.is_dir():
            raise HarnessError(f"{flag} {value}: not a folder")
        if not want_dir and not path.is_file():
            raise HarnessError(f"{flag} {value}: not a file")
        path = path.resolve()
        return _model_folder(path, flag, value, model_check) if field in MODEL_FIELDS else path
    if field in MODEL_FIELDS and _HUB_ID.match(value) and "--" not in value and ".." not in value:
        return _model_folder(hub_snapshot(value, flag), flag, value, model_check)
    hint = (
        " (a Hugging Face hub id has the form owner/name)"
        if field in MODEL_FIELDS and "/" not in value
        else ""
    )
    raise HarnessError(f"{flag} {value}: no such {'folder' if want_dir else 'file'}{hint}")


def task_from_flags(
    name: str, paths: dict[str, str | None], *, runnable: bool = True, progress: bool = True
) -> TaskSpec:
    """Task `name` with the path flags that were given (field -> value) put in. `runnable`: a task
    that still lacks a required part is one line saying which flag or variable sets it."""
    describe_task(name)  # an unknown task fails before any model is fetched
    chosen = {field: resolve_path(field, value) for field, value in paths.items() if value is not None}
    for field in MODEL_FIELDS if name != TINY else ():  # $UNLEARN_HARNESS_<TASK>_MODEL_DIR may be a hub id
        raw = os.environ.get(env_name(name, field), "").strip()
        if field not in chosen and _HUB_ID.match(raw) and not Path(raw).expanduser().exists():
            chosen[field] = resolve_path(field, raw, f"${env_name(name, field)}")
    if name == TINY:  # the tiny task's paths are its build's; a flag replaces one
        spec = dataclasses.replace(get_task(name, progress=progress), **chosen)
    else:
        spec = get_task(name, {field: str(path) for field, path in chosen.items()}, progress=progress)
    missing = spec.missing() if runnable else []
    if missing:
        fixes = "; ".join(
            f"{field} {'is not set' if getattr(spec, field) is None else f'{getattr(spec, field)} does not exist'}"
            f" (give {PATH_FLAGS[field]} or set ${env_name(name, field)})"
            for field in missing
        )
        raise HarnessError(f"task '{name}' cannot run: {fixes}")
    return spec


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
    table.add_column("task", style="bold", overflow="fold")  # never cut a name or a path (pipes, CI logs)
    table.add_column("status", overflow="fold")
    table.add_column("missing", overflow="fold")
    table.add_column("description", overflow="fold")
    if check:
        table.add_column("rows (forget/retain, MIA, MMLU)", overflow="fold")
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
    print_whole(Console(), table)


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
    table.add_column("what", style="bold", overflow="fold")
    table.add_column("path", overflow="fold")  # whole paths: a pipe or a CI log gets them uncut
    for key, value in build.to_json().items():
        if key not in ("seed", "size"):
            table.add_row(key, "-" if value is None else str(value))
    print_whole(Console(), table)
