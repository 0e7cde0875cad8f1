"""The board's reference rows: the untouched target ("did nothing") and the retain-only gold model ("ideal").

Each is one evaluation of a checkpoint the task provides (no submission runs), recorded once per task and
results folder through the runner's record builder (`harness.runner.build_record`), so a reference row
carries the same fields, derived the same way, as every submission's row. The evaluation cache makes a
second recording of the same checkpoint cost seconds. `demo`, `run` and `board --task` call
`ensure_reference_rows`; it adds only the rows that are missing.
"""

from __future__ import annotations

import uuid
from datetime import datetime, timezone
from pathlib import Path

from leaderboard.record import RunRecord
from leaderboard.status import Status
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
    )  # fmt: skip


def missing_roles(task: TaskSpec, results_root: Path) -> list[tuple[str, Path]]:
    """The references of `reference_checkpoints` that the board in ``results_root`` lacks for ``task``."""
    from leaderboard.store import Store, default_db

    present = {r.role for r in Store(default_db(results_root)).records(task=task.name)}
    return [(role, checkpoint) for role, checkpoint in reference_checkpoints(task) if role not in present]


def ensure_reference_rows(task: TaskSpec, results_root: Path, progress: bool = True) -> list[RunRecord]:
    """Add the reference-target (and, when the task has one, reference-gold) rows unless already there."""
    from leaderboard.store import Store, default_db

    added = []
    for role, checkpoint in missing_roles(task, results_root):
        record = reference_record(role, checkpoint, task, results_root, progress)
        Store(default_db(results_root)).add(record)
        added.append(record)
    return added
