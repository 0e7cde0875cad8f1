"""The MIA stage: the loss of every member and non-member document, into mia_results/.

Each document's loss is the model's mean next-token CE with labels = input ids (official-scoring.md
2.7), written as ``mia_results/member_<process>.csv`` and ``nonmember_<process>.csv`` (columns id,
nll). The exact path reads the documents one at a time after the forget/retain splits, as the
official loop does; the fast path has already read them in the splits' forest pass
(FastEvaluator.answer_pass, where a member that begins with a row's question shares its prefix) and
hands those losses in.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path

from harness.inference import answers, distributed, losses, ties
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


def read_groups(
    task: TaskSpec, world: distributed.World, quirk: bool, limit: int | None = None
) -> dict[str, list[MiaDoc]]:
    """This process's share of the member and the non-member documents, in that order (the first `limit`
    of each side, taken before sharding, for a partial evaluation)."""
    return {
        g: distributed.shard(read_mia(getattr(task, f"mia_{g}"), limit=limit), world, quirk) for g in GROUPS
    }


def documents(groups: dict[str, list[MiaDoc]]) -> list[MiaDoc]:
    """All documents of `groups`, members first: the order of the losses `run` takes."""
    return [d for group in groups.values() for d in group]


def document_losses(evaluator: Evaluator, docs: Sequence[MiaDoc]) -> list[float]:
    """The loss of each whole document (labels = input ids), through the evaluator's `loss` verb."""
    ids = answers.tokens(evaluator.tokenizer, [d.document for d in docs])
    items = [losses.LossItem(tuple(i), 0) for i in ids]
    return evaluator.loss("MIA: member + non-member losses", items)


def settle(evaluator: Evaluator, docs: Sequence[MiaDoc], nll: list[float], members: int) -> list[float]:
    """The fast losses, with every member/non-member pair closer than the dtype's loss tolerance (ties.py)
    computed again by the exact loop: their order, all the AUC reads, is then the exact path's.

    ``docs[:members]`` are the members. A pair stays open while one of its two losses is a fast one, so
    the loop ends (each round makes at least one more loss exact).
    """
    tol = ties.loss_tolerance(evaluator.model.dtype)
    nll, exact = list(nll), set()
    while True:
        order = sorted(range(len(nll)), key=nll.__getitem__)
        near = set()
        for k, a in enumerate(order):
            for b in order[k + 1 :]:
                if nll[b] - nll[a] >= tol * max(1.0, abs(nll[b])):  # relative, as ties.py
                    break
                if (a < members) != (b < members):
                    near |= {a, b} - exact
        if not near:
            return nll
        started = time.perf_counter()
        ids = answers.tokens(evaluator.tokenizer, [docs[i].document for i in sorted(near)])
        for i, tokens in zip(sorted(near), ids):
            nll[i] = losses.loss_exact(evaluator.model, losses.LossItem(tuple(tokens), 0))
        exact |= near
        evaluator.count_exact("MIA losses", len(near), seconds=time.perf_counter() - started)


def run(
    evaluator: Evaluator,
    groups: dict[str, list[MiaDoc]],
    run_dir: Path,
    world: distributed.World,
    quirk: bool,
    read: list[float] | None = None,
) -> list[Path]:
    """Write mia_results/ from the losses already `read` (fast path, near ties settled: `settle`) or from
    `document_losses`."""
    docs = documents(groups)
    if read is not None:
        nll = settle(evaluator, docs, read, len(next(iter(groups.values()), [])))
    else:
        nll = document_losses(evaluator, docs)
    artifacts = []
    for (group, part), part_nll in zip(groups.items(), cut_like(nll, groups.values())):
        records = [{"id": d.id, "nll": n} for d, n in zip(part, part_nll)]
        artifacts += merge_write(records, ["id", "nll"], run_dir / FOLDER, group, world, quirk)
    return artifacts
