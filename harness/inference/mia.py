"""The MIA stage: the loss of every member and non-member document, into mia_results/.

Each document's loss is the model's mean next-token CE with labels = input ids (official-scoring.md
2.7), written as ``mia_results/member_<process>.csv`` and ``nonmember_<process>.csv`` (columns id,
nll). The exact path reads the documents one at a time after the forget/retain splits, as the
official loop does; the fast path has already read them in the splits' forest pass
(FastEvaluator.answer_pass, where a member that begins with a row's question shares its prefix) and
hands those losses in.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from harness.inference import answers, distributed, losses
from harness.inference.evaluator import Evaluator
from harness.inference.outputs import cut_like, merge_write
from tasks.data import MiaDoc, read_mia
from tasks.spec import TaskSpec

FOLDER = "mia_results"
GROUPS = ("member", "nonmember")


def available(task: TaskSpec) -> bool:
    """Whether the task has both MIA files (a task without them skips the stage and the MIA score)."""
    paths = [task.mia_member, task.mia_nonmember]
    return all(p is not None and Path(p).exists() for p in paths)


def read_groups(task: TaskSpec, world: distributed.World, quirk: bool) -> dict[str, list[MiaDoc]]:
    """This process's share of the member and the non-member documents, in that order."""
    return {g: distributed.shard(read_mia(getattr(task, f"mia_{g}")), world, quirk) for g in GROUPS}


def documents(groups: dict[str, list[MiaDoc]]) -> list[MiaDoc]:
    """All documents of `groups`, members first: the order of the losses `run` takes."""
    return [d for group in groups.values() for d in group]


def document_losses(evaluator: Evaluator, docs: Sequence[MiaDoc]) -> list[float]:
    """The loss of each whole document (labels = input ids), through the evaluator's `loss` verb."""
    ids = answers.tokens(evaluator.tokenizer, [d.document for d in docs])
    items = [losses.LossItem(tuple(i), 0) for i in ids]
    return evaluator.loss("MIA: member + non-member losses", items)


def run(
    evaluator: Evaluator,
    groups: dict[str, list[MiaDoc]],
    run_dir: Path,
    world: distributed.World,
    quirk: bool,
    read: list[float] | None = None,
) -> list[Path]:
    """Write mia_results/ from the losses already `read` (fast path) or from `document_losses`."""
    nll = read if read is not None else document_losses(evaluator, documents(groups))
    artifacts = []
    for (group, part), part_nll in zip(groups.items(), cut_like(nll, groups.values())):
        records = [{"id": d.id, "nll": n} for d, n in zip(part, part_nll)]
        artifacts += merge_write(records, ["id", "nll"], run_dir / FOLDER, group, world, quirk)
    return artifacts
