"""CLI command `score`: the official numbers of a generations directory, or of a checkpoint on a task.

``unlearn-harness score --generations DIR`` is the official "compute metrics only" mode over an
official scorer output directory; ``unlearn-harness score CHECKPOINT --task NAME`` first runs the
official inference (harness.inference.evaluate) into a run directory, then scores it the same way.
CHECKPOINT (or ``--model``) may be a Hugging Face hub id; the scored-data flags replace the task's files.
``--limit N`` makes the checkpoint mode a quick, partial evaluation (not comparable with a full one).
"""

from __future__ import annotations

import json
import re
import time
from pathlib import Path

import click
from rich.console import Console

from harness.cli._group import cli
from harness.cli.run import limit_line, limit_option
from harness.cli.tasks import PATH_FLAGS, SCORED_FIELDS, resolve_path, task_from_flags, task_path_options
from harness.errors import HarnessError
from harness.files import output_folder
from harness.scoring import VERSIONS, Scores, score_directory
from harness.scoring.report import render_scores


def _default_run_dir(checkpoint: str, task: str) -> Path:
    name = re.sub(r"[^A-Za-z0-9_.-]+", "-", f"{checkpoint}-{task}")
    return Path("runs") / "scores" / f"{name}-{time.strftime('%Y%m%d-%H%M%S')}"


def _evaluate_checkpoint(
    checkpoint: str,
    flag: str,
    task_name: str,
    paths: dict[str, str | None],
    run_dir: Path | None,
    *,
    exact: bool,
    batch_size: int | None,
    max_tokens: int | None,
    use_cache: bool,
    device: str | None,
    dtype: str | None,
    progress: bool,
    official_env: bool = False,
    limit: int | None = None,
) -> tuple[Scores, Path, str]:
    """The scores, the run directory and a line saying which environment's numerics they come from."""
    from harness.inference import evaluate
    from tasks.registry import describe_task

    describe_task(task_name)  # an unknown task fails before a model is fetched
    folder = resolve_path("model_dir", checkpoint, flag=flag, model_check=False)  # evaluate checks it
    task = task_from_flags(task_name, paths, runnable=False)
    name = checkpoint if not Path(checkpoint).expanduser().exists() else folder.name  # a hub id names the run
    run_dir = run_dir or _default_run_dir(name, task_name)
    with output_folder(run_dir):  # a --run-dir that cannot be written fails now, not after the evaluation
        if official_env:
            return _in_official_env(folder, task, run_dir, dtype, device, progress)
        result = evaluate(
            folder,
            task,
            run_dir,
            exact=exact,
            batch_size=batch_size,
            max_tokens=max_tokens,
            device=device,
            dtype=dtype,
            use_cache=use_cache,
            progress=progress,
            limit=limit,
        )
    return result.scores, result.run_dir, _source_line(result.run_dir, exact, result.timings)


def _source_line(run_dir: Path, exact: bool, timings: dict[str, float] | None = None) -> str:
    import transformers

    from harness.inference.engine import NEAR_TIE_SECONDS, near_ties

    line = f"numbers from: this environment (transformers {transformers.__version__}, the 4.45.2 numerics restored)"
    settled, steps = near_ties(run_dir), near_ties(run_dir, "exact_steps") or {}
    if not exact and settled is not None:
        counts = (
            ", ".join(
                f"{n} {stage}" + (f" ({steps[stage]} exact decoding steps)" if steps.get(stage) else "")
                for stage, n in sorted(settled.items())
                if n
            )
            or "none"
        )
        line += f"; fast path, rows settled by the exact loop at near ties: {counts}"
        timings = timings or {}
        seconds = timings.get(NEAR_TIE_SECONDS)  # absent from an evaluation cached before 3 Dec 2026
        if seconds and any(settled.values()):
            share = f" of the evaluation's {timings['total']:.2f} s" if timings.get("total") else ""
            line += f", taking {seconds:.2f} s{share}"
    return line


def _in_official_env(
    folder: Path, task, run_dir: Path, dtype: str | None, device: str | None, progress: bool
) -> tuple[Scores, Path, str]:
    """The exact path, MMLU and scoring in the organisers' environment (harness/envs/official.py)."""
    from harness.envs import official

    env = official.require()  # the worker runs the exact path: the organisers' loops
    answer = official.evaluate(env, folder, task, run_dir, dtype=dtype, device=device, progress=progress)
    scores = score_directory(run_dir, mmlu_threshold=task.mmlu_threshold, write=False)
    if scores.results() != answer["results"]:
        raise HarnessError(
            f"{run_dir}: this environment scores the official environment's files differently "
            "(a harness bug: please report it with the run directory)"
        )
    line = f"numbers from: the organisers' environment {env.root} (transformers {answer['transformers']}, exact path)"
    return scores, Path(run_dir), line


def _refuse_with_generations(task_name: str | None, paths: dict[str, str | None], limit: int | None) -> None:
    """The checkpoint mode's flags, given with --generations: one line naming the first."""
    if task_name is not None:
        raise HarnessError("--task goes with CHECKPOINT, not with --generations")
    if given := [PATH_FLAGS[field] for field, value in paths.items() if value is not None]:
        raise HarnessError(f"{given[0]} goes with CHECKPOINT --task, not with --generations")
    if limit is not None:
        raise HarnessError(
            "--limit goes with CHECKPOINT --task (it limits the evaluation), not with --generations"
        )


def _refuse_with_checkpoint(
    task_name: str | None,
    mmlu_metrics: Path | None,
    official_env: bool,
    batch_size: int | None,
    max_tokens: int | None,
    no_cache: bool,
    limit: int | None,
) -> None:
    """What the checkpoint mode lacks or cannot take: one line naming it."""
    if task_name is None:
        raise HarnessError("CHECKPOINT needs --task NAME (see `unlearn-harness tasks`)")
    if mmlu_metrics is not None:
        raise HarnessError("--mmlu goes with --generations; a checkpoint's MMLU is evaluated on the task")
    if official_env and (batch_size is not None or max_tokens is not None or no_cache or limit is not None):
        raise HarnessError(
            "--official-env runs the exact path on the whole data: --batch-size, --max-tokens, --no-cache "
            "and --limit do not apply"
        )


# `score` stays whole (80 lines, a third of them parameters): one click command, its two modes side by side.
@cli.command()
@click.argument("checkpoint", required=False)
@click.option(
    "--model",
    metavar="PATH_OR_HUB_ID",
    help="The model to score: CHECKPOINT by another name (a local folder or a Hugging Face hub id).",
)
@click.option(
    "--generations",
    type=click.Path(path_type=Path),
    help="An official scorer output directory: forget_*.csv, retain_*.csv, optional mia_results/.",
)
@click.option(
    "--mmlu",
    "mmlu_metrics",
    type=click.Path(path_type=Path),
    help="open-instruct MMLU metrics.json [default: <DIR>/mmlu_results/metrics.json when present].",
)
@click.option("--task", "task_name", help="Task to evaluate CHECKPOINT on (see `unlearn-harness tasks`).")
@click.option(
    "--scoring-version",
    type=click.Choice(VERSIONS),
    default="v3",
    show_default=True,
    help="Official scorer version: v3 (final leaderboard), v2 or v1 (legacy).",
)
@click.option(
    "--mmlu-threshold",
    type=float,
    default=None,
    help="Report award eligibility: MMLU average >= this (0.371 for the 7B task). [default: the task's]",
)
@click.option("--exact", is_flag=True, help="Checkpoint mode: the official one-row loops (slow; for parity).")
@click.option(
    "--batch-size", type=click.IntRange(min=1), help="Checkpoint mode: batch size of the fast path."
)
@click.option(
    "--max-tokens",
    type=click.IntRange(min=1),
    help="Checkpoint mode: padded tokens per batch of the fast path (lower it on out-of-memory) "
    "[default: 1,024 on CPU (4,096 when decoding), 65,536 on CUDA].",
)
@click.option("--no-cache", is_flag=True, help="Checkpoint mode: do not reuse a cached evaluation.")
@click.option("--device", help="Checkpoint mode: cpu, cuda, cuda:1 ... [default: cuda when available].")
@click.option("--dtype", help="Checkpoint mode: bfloat16, float16 or float32 [default: the task's].")
@click.option("--run-dir", type=click.Path(path_type=Path), help="Checkpoint mode: where the artifacts go.")
@click.option(
    "--official-env",
    is_flag=True,
    help="Checkpoint mode: evaluate and score in the organisers' environment (transformers 4.45.2; "
    "`unlearn-harness env official` creates it) with the exact path.",
)
@limit_option
@task_path_options(*SCORED_FIELDS)
@click.option("--no-write", is_flag=True, help="Generations mode: do not write the results into DIR.")
@click.option("--json", "as_json", is_flag=True, help="Print the official results object as JSON on stdout.")
def score(
    checkpoint: str | None,
    model: str | None,
    generations: Path | None,
    mmlu_metrics: Path | None,
    task_name: str | None,
    scoring_version: str,
    mmlu_threshold: float | None,
    exact: bool,
    batch_size: int | None,
    max_tokens: int | None,
    no_cache: bool,
    device: str | None,
    dtype: str | None,
    run_dir: Path | None,
    official_env: bool,
    limit: int | None,
    no_write: bool,
    as_json: bool,
    **paths: str | None,
) -> None:
    """Compute the official scores of generations (--generations DIR) or of a CHECKPOINT on --task.

    \b
    unlearn-harness score --generations runs/x/          # the official "compute metrics only" mode
    unlearn-harness score out/checkpoint --task tiny     # run the official inference, then score
    """
    if checkpoint is not None and model is not None:
        raise HarnessError("CHECKPOINT and --model name the model to score: give one of them")
    flag = "--model" if model is not None else "CHECKPOINT"
    checkpoint = checkpoint if model is None else model
    if (checkpoint is None) == (generations is None):
        raise HarnessError("give exactly one of CHECKPOINT or --generations DIR")
    if generations is not None:
        _refuse_with_generations(task_name, paths, limit)
        scores = score_directory(
            generations,
            mmlu_metrics=mmlu_metrics,
            version=scoring_version,
            mmlu_threshold=mmlu_threshold,
            write=not no_write,
        )
        where = generations
    else:
        _refuse_with_checkpoint(
            task_name, mmlu_metrics, official_env, batch_size, max_tokens, no_cache, limit
        )
        scores, where, source = _evaluate_checkpoint(
            checkpoint,
            flag,
            task_name,
            paths,
            run_dir,
            exact=exact,
            batch_size=batch_size,
            max_tokens=max_tokens,
            use_cache=not no_cache,
            device=device,
            dtype=dtype,
            progress=not as_json,
            official_env=official_env,
            limit=limit,
        )
        if scoring_version != "v3" or mmlu_threshold is not None:  # rescore the run's files as asked
            scores = score_directory(
                where,
                version=scoring_version,
                mmlu_threshold=mmlu_threshold if mmlu_threshold is not None else scores.mmlu_threshold,
                write=False,
            )
    if as_json:  # stdout is the official object alone; where its numbers come from goes to stderr
        click.echo(json.dumps(scores.results()))
        if generations is None:
            click.echo(source, err=True)
        if limit is not None:
            click.echo(limit_line(limit), err=True)
        return
    console = Console(highlight=False)
    render_scores(scores, console)
    console.print(f"artifacts: {where}", soft_wrap=True)
    if generations is None:
        console.print(source, soft_wrap=True)
    if limit is not None:
        console.print(f"[yellow]{limit_line(limit)}[/]", soft_wrap=True)
