"""The plain record the leaderboard stores: one immutable row per run (it knows nothing of how runs happen)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

#: the four headline numbers, in display order
HEADLINES = ("final_score", "task_aggregate", "mia_score", "mmlu_average")

#: the official numbers a record copies from a scored run (besides the 12 terms)
SCORE_FIELDS = ("task_aggregate", "auc", "mia_score", "mmlu_average", "final_score", "eligible")

#: roles of a record: a submission's run, or one of the task's reference rows
ROLES = ("entry", "reference-target", "reference-gold")


def reference_group_id(task: str, role: str) -> str:
    """The group id of a task's reference rows of one role (one row per world, evaluated once each): the
    same on every board, so the rows of every world are one board row, e.g. ``reference-target:tiny``."""
    return f"{role}:{task}"


#: the names of the 12 terms, in the official order of `aggregated-terms` (spec section 2.6: forget, then
#: retain; Task1, Task2, Task3; regurgitation, then knowledge). A forget term is inverted: 1 - the mean score
TERM_LABELS = tuple(
    f"{split} Task{task} {kind}"
    for split in ("forget", "retain")
    for task in (1, 2, 3)
    for kind in ("regurgitation", "knowledge")
)


def term_labels(count: int) -> tuple[str, ...]:
    """The labels of `count` terms: `TERM_LABELS` for the official 12, else "term 1", "term 2", ..."""
    return TERM_LABELS if count == len(TERM_LABELS) else tuple(f"term {i + 1}" for i in range(count))


def labelled_terms(terms: tuple[float, ...] | list[float] | None) -> dict[str, float] | None:
    """The terms as a mapping label -> value, in their order (None stays None)."""
    return None if terms is None else dict(zip(term_labels(len(terms)), terms))


def term_column(label: str) -> str:
    """A term's CSV column: its label with underscores, e.g. forget_Task1_regurgitation."""
    return label.replace(" ", "_")


@dataclass(frozen=True)
class RunRecord:
    """One run of one submission variant on one task, with its official scores and provenance."""

    run_id: str
    created_at: str  # ISO 8601, UTC
    task: str
    submission_name: str
    submission_sha256: str
    variant: str = "default"
    params: dict[str, Any] = field(default_factory=dict)
    status: str = "OK"  # the runner's taxonomy: OK, SALVAGED, TIMEOUT, CRASHED, ...
    role: str = "entry"
    message: str = ""
    #: the 12 official terms in the official order (forget inverted, then retain); None when not scored
    terms: tuple[float, ...] | None = None
    task_aggregate: float | None = None
    auc: float | None = None
    mia_score: float | None = None
    mmlu_average: float | None = None
    final_score: float | None = None
    #: MMLU award eligibility (None when the task has no threshold)
    eligible: bool | None = None
    #: the checkpoint equals the input model (a no-op); still scored
    unchanged: bool = False
    #: 95% bootstrap intervals of the headline numbers: name -> (low, high)
    intervals: dict[str, tuple[float, float]] = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=dict)
    budget_s: float | None = None
    budget_used_s: float | None = None
    peak_rss_mb: float | None = None
    peak_gpu_mb: float | None = None
    run_dir: str = ""
    harness_version: str = ""
    #: the seed group this run belongs to (records sharing it are one board row); None: a group of its own
    group_id: str | None = None
    #: the run seed (passed as ``seed=k`` and used to seed Python, NumPy and torch); None when not set
    seed: int | None = None
    #: the seed of the world the task was built from (tiny task --world-seeds); None: the task's only world
    world_seed: int | None = None
    #: how the submission was isolated: bwrap, unshare (the jail) or none; None for rows made before it
    #: was recorded and for reference rows (no submission ran)
    isolation: str | None = None
    #: the robustness audit's headline (harness.audit: the worst forget score across its attacks); None: not audited
    robust_forget: float | None = None
    #: a partial evaluation (``--limit N``: the first N rows per split, MIA documents per side, MMLU
    #: questions per subject); not comparable with a full one, so the board ranks it apart. None: full
    limit: int | None = None

    @property
    def scored(self) -> bool:
        return self.final_score is not None

    @property
    def shared_group(self) -> str | None:
        """The group id this run shares with others: its own, or for a reference row recorded without one
        (an older board) the task's `reference_group_id` of its role; None for an entry's lone run."""
        if self.group_id is not None:
            return self.group_id
        return None if self.role == "entry" else reference_group_id(self.task, self.role)

    @property
    def group_key(self) -> str:
        """The id of this run's seed group: `shared_group`, or its own run id when it has none."""
        shared = self.shared_group
        return shared if shared is not None else self.run_id

    @property
    def unit(self) -> tuple[int | None, int | None]:
        """What pairs this run with another group's: (world seed, run seed)."""
        return (self.world_seed, self.seed)


def score_fields(scores: Any) -> dict[str, Any]:
    """The `RunRecord` fields of a scored run: the 12 terms and `SCORE_FIELDS` read off ``scores`` (any
    object with those attributes, e.g. harness.scoring's Scores); ``None`` (not scored) gives no fields."""
    if scores is None:
        return {}
    return {"terms": tuple(scores.terms), **{name: getattr(scores, name) for name in SCORE_FIELDS}}
