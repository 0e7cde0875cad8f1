"""The board's reference rows: the untouched target ("did nothing") and the retain-only gold model ("ideal").

Each is one evaluation of a checkpoint the task provides (no submission runs), recorded once per task, world
and results folder through the runner's record builder (`harness.runner.build_record`), so a reference row
carries the same fields, derived the same way, as every submission's row (its world seed among them). The
evaluation cache makes a second recording of the same checkpoint cost seconds. `demo` calls
`ensure_reference_rows`, `run` (for each world of `--world-seeds`) and `board --task` (for each built world
the board has runs on) call `record_missing_rows`; both add only the rows that are missing. The rows of one
role share a group id per task (`leaderboard.record.reference_group_id`): the board shows them as one row,
the mean over the worlds, and `board compare` pairs them with a group by world.
"""

from __future__ import annotations

import uuid
from datetime import datetime, timezone
from pathlib import Path

from rich.console import Console
from rich.markup import escape

from harness.errors import USER_ERRORS
from leaderboard.record import RunRecord, reference_group_id
from leaderboard.status import Status
from leaderboard.store import default_db
from tasks.spec import TaskSpec

#: role -> the reference row's submission name on the board
NAMES = {"reference-target": "untouched-target", "reference-gold": "gold-retain-only"}


def reference_checkpoints(task: TaskSpec) -> list[tuple[str, Path]]:
    """(role, checkpoint) of each reference the task has on disk: its target, then its gold model."""
    found = []
    for role, checkpoint in (("reference-target", task.model_dir), ("reference-gold", task.gold_model_dir)):
        if checkpoint is not None and Path(checkpoint).is_dir():
            found.append((role, Path(checkpoint)))
    return found


def reference_record(
    role: str, checkpoint: Path, task: TaskSpec, results_root: Path, progress: bool
) -> RunRecord:
    """Evaluate ``checkpoint`` (the untouched target or the gold model) and build its leaderboard record."""
    from harness.inference import evaluate
    from harness.runner import build_record
    from leaderboard.bootstrap import bootstrap_run

    created = datetime.now(timezone.utc)
    run_id = uuid.uuid4().hex[:8]
    name = NAMES[role]
    run_dir = (results_root / task.name / f"{created:%Y%m%dT%H%M%SZ}-{name}-{run_id}").resolve()
    run_dir.mkdir(parents=True)
    result = evaluate(checkpoint, task, run_dir, progress=progress)
    return build_record(
        task, run_id=run_id, created=created, run_dir=run_dir, submission_name=name, status=Status.OK,
        message=f"reference row: {checkpoint}", scores=result.scores, timings=result.timings,
        variant="reference", role=role, unchanged=role == "reference-target", intervals=bootstrap_run(run_dir),
        group_id=reference_group_id(task.name, role),
    )  # fmt: skip


def missing_roles(task: TaskSpec, db: Path) -> list[tuple[str, Path]]:
    """The references of `reference_checkpoints` that the board ``db`` lacks for ``task``'s world: a row
    counts for the world it was evaluated on (its world seed; None for a task of one world). A tiny-task row
    of no known world (recorded before world seeds were) counts for none: the default world's row is
    recorded again, with its seed, and the board shows that one (`leaderboard.groups`)."""
    from harness.runner import world_seed
    from leaderboard.store import Store

    world = world_seed(task)
    present = {r.role for r in Store(db).records(task=task.name) if r.world_seed == world}
    return [(role, checkpoint) for role, checkpoint in reference_checkpoints(task) if role not in present]


def _label(task: TaskSpec) -> str:
    from harness.runner import world_seed

    world = world_seed(task)
    return task.name if world is None else f"{task.name} (world {world})"


def ensure_reference_rows(
    task: TaskSpec, results_root: Path, progress: bool = True, db: Path | None = None
) -> list[RunRecord]:
    """Add the reference-target (and, when the task has one, reference-gold) rows unless already there.
    The board is ``db``, else ``results_root``'s; the rows' run directories go under ``results_root``."""
    from leaderboard.store import Store

    db = db if db is not None else default_db(results_root)
    added = []
    for role, checkpoint in missing_roles(task, db):
        record = reference_record(role, checkpoint, task, results_root, progress)
        Store(db).add(record)
        added.append(record)
    return added


def record_missing_rows(
    tasks: list[TaskSpec], results_root: Path, *, progress: bool, db: Path | None = None
) -> list[RunRecord]:
    """`ensure_reference_rows` for the commands that add them on the side (`run`, `board --task`): a line on
    stderr per row added (nothing with ``progress`` off, as under --json), and a failure is one warning line
    on stderr, never the command's error (the run or board it comes with stands)."""
    console = Console(stderr=True, highlight=False, quiet=not progress)
    added: list[RunRecord] = []
    for task in tasks:
        try:
            if missing := missing_roles(task, db if db is not None else default_db(results_root)):
                names = " and ".join(NAMES[role] for role, _ in missing)
                console.print(
                    f"[bold]reference rows[/] {_label(task)}: evaluating {names} once (cached: seconds)"
                )
            for record in ensure_reference_rows(task, results_root, progress, db):
                console.print(f"  {record.submission_name}: final {record.final_score:.4f}")
                added.append(record)
        except (*USER_ERRORS, Exception) as exc:  # noqa: BLE001 - reference rows are extra, never the failure
            first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
            Console(stderr=True, highlight=False).print(
                f"[yellow]warning:[/] the reference rows of {_label(task)} were not recorded: {escape(first)}",
                soft_wrap=True,
            )
    return added


def board_tasks(name: str, records: list[RunRecord]) -> list[TaskSpec]:
    """The tasks whose missing reference rows `board --task NAME` records: a registered task with runs on
    this board, once per world its runs were on (the tiny task's world seeds; a run of no known world: the
    default world), each only where its target is on disk (never built: a board is read, and a world is
    built by `run`)."""
    from tasks.registry import describe_task, list_tasks

    runs = [r for r in records if r.task == name]
    if name not in list_tasks() or not runs:
        return []
    worlds = sorted({r.world_seed for r in runs if r.world_seed is not None}) if name == "tiny" else []
    overrides = [{"seed": str(w)} for w in worlds] if worlds else [None]
    if any(r.world_seed is None for r in runs) and worlds:
        overrides.insert(0, None)  # the default world, for the runs of an older board
    found: dict[str, TaskSpec] = {}
    for override in overrides:
        try:
            task = describe_task(name, override)
        except USER_ERRORS:
            continue
        if not task.missing():
            found.setdefault(str(task.model_dir), task)
    return list(found.values())
