"""CLI commands `check`, `run` and `pack`: glue between the command line and harness.runner / harness.pack."""

from __future__ import annotations

import json
import os
import sys
import tempfile
import threading
from pathlib import Path
from typing import Any

import click
from rich.console import Console
from rich.markup import escape
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from harness.cli._group import cli
from harness.cli.tasks import PATH_FLAGS, task_from_flags, task_path_options
from harness.contract import check_submission
from harness.errors import HarnessError
from harness.pack import pack as pack_submission
from harness.reference import record_missing_rows
from harness.runner import SCORED, STATUSES, RunResult, run_group, run_submission
from harness.sandbox import ISOLATIONS, LAUNCHERS, plain
from leaderboard.status import Status

HEADLINES = ("final_score", "task_aggregate", "mia_score", "mmlu_average")

limit_option = click.option(
    "--limit",
    type=click.IntRange(min=1),
    default=None,
    metavar="N",
    help="A quick, partial evaluation: the first N rows per split, MIA documents per side and MMLU questions "
    "per subject. Recorded, and ranked apart on the board (not comparable with a full evaluation).",
)


def limit_line(limit: int) -> str:
    """What a partial evaluation (--limit) scored, in one line."""
    return (
        f"partial evaluation (--limit {limit}): the first {limit} rows per split, MIA documents per side "
        "and MMLU questions per subject; not comparable with a full evaluation"
    )


def parse_set(values: tuple[str, ...]) -> dict[str, Any]:
    """``key=value`` pairs -> keyword arguments; values are JSON literals when they parse (1e-5, 3, true)."""
    params: dict[str, Any] = {}
    for item in values:
        key, sep, raw = item.partition("=")
        key = key.strip()
        if not sep or not key.isidentifier():
            raise HarnessError(f"--set {item!r}: expected key=value with a Python identifier as key")
        try:
            params[key] = json.loads(raw)
        except ValueError:
            params[key] = raw
    return params


def parse_seeds(option: str, text: str | None) -> list[int] | None:
    """'0,1,2' -> [0, 1, 2]; one clear line for anything else."""
    if text is None:
        return None
    parts = [part.strip() for part in text.split(",")]
    if not all(part.isdigit() for part in parts):
        raise HarnessError(f"{option} {text!r}: expected comma-separated non-negative integers, e.g. 0,1,2")
    seeds = [int(part) for part in parts]
    if len(set(seeds)) != len(seeds):
        raise HarnessError(f"{option} {text!r}: a seed is repeated")
    return seeds


def _worlds(task_name: str, world_seeds: list[int] | None, paths: dict[str, str | None]) -> list:
    if world_seeds is None:
        return [_task(task_name, paths)]
    if task_name != "tiny":
        raise HarnessError("--world-seeds varies the tiny world only (--task tiny)")
    if given := [PATH_FLAGS[field] for field, value in paths.items() if value is not None]:
        raise HarnessError(
            f"--world-seeds builds each world's own model and data; it cannot go with {given[0]}"
        )
    from tasks.registry import get_task

    return [get_task("tiny", {"seed": str(w)}) for w in world_seeds]  # every world built before any run


class LiveOutput:
    """The child's stdout and stderr on our stderr as they come, each line marked with its stream
    (escape sequences and control characters removed: the child's text never drives the terminal)."""

    MARKS = {"stdout": "[entry] ", "stderr": "[entry!] "}

    def __init__(self, stream=None) -> None:
        self.stream = stream or sys.stderr
        self.at_line_start = {"stdout": True, "stderr": True}
        self.lock = threading.Lock()

    def __call__(self, name: str, chunk: bytes) -> None:
        text = plain(chunk.decode("utf-8", errors="replace"))
        with self.lock:
            out = []
            for piece in text.splitlines(keepends=True):
                if self.at_line_start[name]:
                    out.append(self.MARKS[name])
                out.append(piece)
                self.at_line_start[name] = piece.endswith("\n")
            self.stream.write("".join(out))
            self.stream.flush()


def _results_root(results: Path | None) -> Path:
    return results or Path(os.environ.get("UNLEARN_HARNESS_RESULTS") or "runs")


def _task(name: str, paths: dict[str, str | None] | None = None):
    return task_from_flags(name, paths or {})


def _stderr() -> Console:
    return Console(stderr=True, highlight=False)


def explain(record, target_final: float | None = None) -> list[str]:
    """Why a scored run has the numbers it has, where one term or a reference says it all."""
    from leaderboard.compare import OFFICIAL_TERM_LABELS

    lines = []
    terms = record.terms or ()
    if record.task_aggregate == 0 and len(terms) == len(OFFICIAL_TERM_LABELS):
        for label, term in zip(OFFICIAL_TERM_LABELS, terms):
            if term == 0 and label.startswith("forget"):
                what = (
                    "every forget question still answered"
                    if "knowledge" in label
                    else "every forget sentence still completed"
                )
                lines.append(
                    f"task aggregate 0: {label} still 1.0 ({what}); the harmonic mean is 0 when any term is"
                )
            elif term == 0:
                lines.append(
                    f"task aggregate 0: {label} is 0 (the retain set was lost); the harmonic mean is 0 when any term is"
                )
    if target_final is not None and record.final_score is not None and record.final_score == target_final:
        lines.append(
            f"the final score equals the untouched target's ({target_final:.4f}): what the scorer sees did not change"
        )
    return lines


def _target_final(result: RunResult, results_root: Path) -> float | None:
    from leaderboard.store import Store, default_db

    try:
        rows = Store(default_db(results_root)).records(task=result.record.task)
    except Exception:  # noqa: BLE001 - only an explanation
        return None
    world = result.record.world_seed  # the target of the run's own world (harness.reference)
    finals = [
        r.final_score
        for r in rows
        if r.role == "reference-target" and r.final_score is not None and r.world_seed == world
    ]
    return finals[-1] if finals else None


def _print_result(result: RunResult, console: Console, *, results_root: Path | None = None) -> None:
    """The run's summary; without `results_root` (check's dry run) there is no run directory to show and no
    board to compare with."""
    colour = (
        "green" if result.status == Status.OK else "yellow" if result.status == Status.SALVAGED else "red"
    )
    table = Table(show_header=False, box=None, pad_edge=False)
    table.add_column(no_wrap=True)
    table.add_column(overflow="fold")  # never cut a run id or a path with an ellipsis (pipes, CI logs)
    # the message, warnings and log tail carry text from the submission: never read as markup
    table.add_row("status", f"[bold {colour}]{result.status}[/]  {escape(result.message)}")
    if results_root is not None:
        table.add_row("run dir", escape(str(result.run_dir)))
    record = result.record
    for key in HEADLINES:
        value = getattr(record, key)
        if value is not None:
            low_high = record.intervals.get(key)
            ci = f"  (95% CI {low_high[0]:.3f}-{low_high[1]:.3f})" if low_high else ""
            table.add_row(key.replace("_", " "), f"{value:.4f}{ci}")
    if record.robust_forget is not None:
        table.add_row(
            "robust forget",
            f"{record.robust_forget:.4f}  (audit.json; the worst forget score across the attacks)",
        )
    if result.checkpoint is not None and result.checkpoint.sha256:
        ck = result.checkpoint
        distance = f", distance {ck.distance:.3g}" if ck.distance is not None else ""
        table.add_row(
            "checkpoint", f"sha256 {ck.sha256[:16]}{distance}{' (unchanged)' if ck.unchanged else ''}"
        )
    if record.budget_used_s is not None:
        table.add_row("budget", f"{record.budget_used_s:.1f} s of {record.budget_s:.0f} s")
    if record.peak_rss_mb is not None:
        gpu = f", GPU {record.peak_gpu_mb:.0f} MB" if record.peak_gpu_mb is not None else ""
        table.add_row("peak memory", f"RSS {record.peak_rss_mb:.0f} MB{gpu}")
    table.add_row("timings", ", ".join(f"{k} {v:.2f} s" for k, v in record.timings.items()))
    if record.limit is not None:
        table.add_row("evaluation", limit_line(record.limit))
    console.print(table)
    if result.ok and record.final_score is not None:
        for line in explain(record, _target_final(result, results_root) if results_root else None):
            console.print(f"[cyan]why:[/] {escape(line)}", highlight=False, soft_wrap=True)
    for warning in result.warnings:
        console.print(f"[yellow]warning:[/] {escape(warning)}", highlight=False)
    if result.status not in SCORED:
        console.print(f"[dim]{STATUSES[result.status]}[/]")
        if result.log_tail:
            console.print(
                Panel(Text(result.log_tail), title="log tail", title_align="left", border_style="red")
            )


set_option = click.option(
    "--set",
    "sets",
    multiple=True,
    metavar="KEY=VALUE",
    help="Keyword argument for unlearn(); JSON literals are parsed (1e-5, 3, true, '\"ga,gd\"').",
)
budget_option = click.option(
    "--budget", type=float, default=None, help="Time budget in seconds (default: the task's)."
)
isolation_option = click.option(
    "--isolation",
    type=click.Choice(["auto", *ISOLATIONS]),
    default="auto",
    show_default=True,
    help="auto: bwrap (bubblewrap) where it works, else the unshare jail; none (a plain child, trusted code "
    "only) must be asked for.",
)
memory_option = click.option(
    "--memory-cap-mb", type=float, default=None, help="Kill the run past this much memory."
)


@cli.command()
@click.argument("submission", type=click.Path(path_type=Path, dir_okay=False))
@click.option("--task", "task_name", default="tiny", show_default=True, help="Task of the dry run.")
@click.option("--static-only", is_flag=True, help="Only the static checks (no dry run).")
@budget_option
@set_option
@isolation_option
@task_path_options()
@click.option("--json", "as_json", is_flag=True, help="Print the findings as one JSON object.")
def check(
    submission: Path, task_name: str, static_only: bool, budget: float | None, sets: tuple[str, ...],
    isolation: str, as_json: bool, **paths: str | None,
) -> None:  # fmt: skip
    """Check SUBMISSION statically (entry point, signature, imports), then dry-run it on a task.

    Each problem is one line: file:line: problem. Exit status 0 when nothing blocks an official attempt.
    """
    report = check_submission(submission)
    out: dict[str, Any] = report.to_json()
    console = Console(highlight=False)  # the findings are the command's result: stdout (progress: stderr)
    if not as_json:
        for problem in report.problems:
            style = "red" if problem.level == "error" else "yellow"
            console.print(f"[{style}]{escape(str(problem))}[/]", highlight=False, soft_wrap=True)
        if report.requested_packages:
            console.print(
                "request on the submission form: "
                + ", ".join(sorted(set(report.requested_packages.values())))
            )
    ok = report.ok
    if ok and not static_only:
        task = _task(task_name, paths)
        with tempfile.TemporaryDirectory(prefix="unlearn-harness-check-") as tmp:
            result = run_submission(
                submission, task, budget_s=budget, params=parse_set(sets), results_root=Path(tmp), record=False,
                progress=not as_json, score=False, isolation=isolation, official_load=True,
            )  # fmt: skip
            blocking = _official_load_problems(result)  # errors here, not also the run's warnings
            result.warnings = [w for w in result.warnings if w not in blocking]
            out["dry_run"] = result.to_json()
            out["dry_run"].pop("run_dir", None)  # a temporary folder, deleted below
            if not as_json:
                _print_result(result, Console(highlight=False))
        out["official_env"] = blocking
        if not as_json:
            for line in blocking:
                console.print(f"[red]error:[/] {escape(line)}", highlight=False, soft_wrap=True)
        ok = result.status == "OK" and not blocking
    out["ok"] = ok
    if as_json:
        click.echo(json.dumps(out, default=str))
    elif ok:
        console.print(
            "[green]ok[/]: " + ("static checks passed" if static_only else "ready for an official attempt")
        )
    sys.exit(0 if ok else 1)


def _official_load_problems(result: RunResult) -> list[str]:
    """What keeps the dry run's checkpoint from loading under the organisers' transformers 4.45.2: the
    static check, and the load itself in the official environment where it exists (harness/envs), both
    done by the dry run (checkpoint.OfficialLoad; a load that could not run is one line here too)."""
    report = result.checkpoint
    return list(report.official_env_problems) if report is not None and report.ok else []


@cli.command("run")
@click.argument("submission", type=click.Path(path_type=Path, dir_okay=False))
@click.option("--task", "task_name", required=True, help="Task name (see `unlearn-harness tasks`).")
@budget_option
@set_option
@click.option("--name", "variant", default=None, help="Variant name on the leaderboard (default: 'default').")
@click.option(
    "--processes",
    type=int,
    default=1,
    show_default=True,
    help="Number of processes (with torchrun/accelerate).",
)
@click.option("--launcher", type=click.Choice(LAUNCHERS), default="python", show_default=True)
@click.option("--results", type=click.Path(path_type=Path, file_okay=False), default=None,
              help="Results root (default: $UNLEARN_HARNESS_RESULTS or ./runs).")  # fmt: skip
@click.option("--no-record", is_flag=True, help="Do not add the run to the leaderboard.")
@click.option(
    "--grace",
    type=float,
    default=10.0,
    show_default=True,
    help="Seconds between SIGTERM and SIGKILL at the deadline.",
)
@isolation_option
@memory_option
@click.option(
    "--seeds",
    default=None,
    metavar="K,K,...",
    help="Run once per seed (seed=k where unlearn takes it; Python, NumPy, torch always), as one group.",
)
@click.option(
    "--world-seeds",
    default=None,
    metavar="W,W,...",
    help="Tiny task: also vary the world (a target fine-tuned from another seed), each with every seed.",
)
@click.option(
    "--audit",
    "with_audit",
    is_flag=True,
    help="After scoring, run the robustness audit (quantization, relearning, probes, MIA panel, extraction).",
)
@click.option(
    "--quiet", is_flag=True, help="Do not show the submission's output while it runs (it is logged)."
)
@click.option(
    "--no-official-load",
    is_flag=True,
    help="Do not load the checkpoint in the official environment (transformers 4.45.2) while scoring; "
    "also UNLEARN_HARNESS_OFFICIAL_LOAD=0. The static check still runs.",
)
@limit_option
@task_path_options()
@click.option("--json", "as_json", is_flag=True, help="Print the run record as one JSON object.")
def run_command(
    submission: Path, task_name: str, budget: float | None, sets: tuple[str, ...], variant: str | None,
    processes: int, launcher: str, results: Path | None, no_record: bool, grace: float, isolation: str,
    memory_cap_mb: float | None, seeds: str | None, world_seeds: str | None, with_audit: bool, quiet: bool,
    limit: int | None, no_official_load: bool, as_json: bool, **paths: str | None,
) -> None:  # fmt: skip
    """Run SUBMISSION on a task under its budget, validate and score the checkpoint, record the run.

    Exit status 0 when the run was scored (OK or SALVAGED), 1 for any other status (with --seeds: when
    every run was scored).
    """
    params = parse_set(sets)
    run_seeds, worlds = parse_seeds("--seeds", seeds), parse_seeds("--world-seeds", world_seeds)
    options = dict(
        budget_s=budget, params=params, variant=variant, processes=processes, launcher=launcher,
        results_root=_results_root(results), record=not no_record, progress=not as_json, isolation=isolation,
        memory_cap_mb=memory_cap_mb, grace_s=grace, on_output=None if quiet or as_json else LiveOutput(), audit=with_audit,
        limit=limit, official_load=False if no_official_load else None,
    )  # fmt: skip
    # a fresh board gets the untouched target (and gold) beside the run: full evaluations, so not for a quick look
    references = not no_record and limit is None
    if run_seeds is None and worlds is None:
        task = _task(task_name, paths)
        result = run_submission(submission, task, **options)
        if references:
            record_missing_rows([task], options["results_root"], progress=not as_json)
        if as_json:
            click.echo(json.dumps(result.to_json(), default=str))
        else:
            _print_result(result, Console(highlight=False), results_root=options["results_root"])
        sys.exit(0 if result.ok else 1)
    tasks = _worlds(task_name, worlds, paths)
    group_id, results_ = run_group(submission, tasks, run_seeds or [0], **options)
    if references:
        record_missing_rows(tasks, options["results_root"], progress=not as_json)
    if as_json:
        click.echo(json.dumps({"group_id": group_id, "runs": [r.to_json() for r in results_]}, default=str))
    else:
        console = Console(highlight=False)
        for result in results_:
            world = f"world {result.record.world_seed}, " if result.record.world_seed is not None else ""
            console.rule(f"{world}seed {result.record.seed}")
            _print_result(result, console, results_root=options["results_root"])
        scored = sum(r.ok for r in results_)
        console.print(
            f"group {group_id}: {scored} of {len(results_)} runs scored; `unlearn-harness board` shows their mean"
        )
    sys.exit(0 if all(r.ok for r in results_) else 1)


@cli.command("pack")
@click.argument("submission", type=click.Path(path_type=Path, dir_okay=False))
@click.option("-o", "--output", type=click.Path(path_type=Path, dir_okay=False), required=True,
              help="The single file to write (e.g. entry.py).")  # fmt: skip
@click.option("--json", "as_json", is_flag=True, help="Print the report as one JSON object.")
def pack_command(submission: Path, output: Path, as_json: bool) -> None:
    """Pack SUBMISSION and the sibling modules it imports into the single file the organisers accept."""
    report = pack_submission(submission, output)
    if as_json:
        click.echo(json.dumps(report.to_json()))
    else:
        console = Console(highlight=False)
        # soft_wrap: a path is never split across lines (a pipe, a CI log, a narrow terminal)
        console.print(f"wrote {report.output} (sha256 {report.sha256[:16]})", soft_wrap=True)
        for name, path in sorted(report.embedded.items()):
            console.print(f"  embedded module {name} from {path}", soft_wrap=True)
        for problem in report.check.problems if report.check else []:
            console.print(f"  {problem}", soft_wrap=True)
        packages = ", ".join(report.requested_packages) or "none"
        console.print(f"packages to request on the submission form: {packages}", soft_wrap=True)
    sys.exit(0 if report.check is None or report.check.ok else 1)
