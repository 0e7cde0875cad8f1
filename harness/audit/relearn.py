"""Relearning attack: fine-tune a copy on a fixed half of the forget documents, score the other half.

Knowledge that is only suppressed comes back after a short fine-tuning on related data; knowledge that is
gone has to be learnt again. The forget rows are split by document (a document's sc and qa rows stay
together), per task, with a seeded shuffle: the same split and the same recipe (`RECIPES`, one per task,
fixed in advance and never tuned per checkpoint) for every checkpoint of a task. The copy learns
``input + " " + output + EOS`` with the loss on the answer, as the reference submissions encode a row,
and is scored on the held-out documents. The gold model, which never saw the forget set, gets the same
attack: what it gains is what relearning alone teaches about the held-out rows. The checkpoint's
recovery above the gold model's gain is the number reported.
"""

from __future__ import annotations

import random
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch

from harness.audit.common import (
    Measure,
    answer_tokens,
    attacked_models,
    check_checkpoint,
    load_model,
    measure_from_json,
    measure_run,
    reference_memo,
    save_model,
    summarize,
)
from harness.inference.threads import cpu_threads, eval_threads
from tasks.data import Row, read_rows
from tasks.spec import TaskSpec


@dataclass(frozen=True)
class Recipe:
    """One fixed relearning recipe: AdamW, constant learning rate, shuffled batches, so many epochs."""

    lr: float
    epochs: int = 1
    batch_size: int = 2
    seed: int = 0
    max_length: int = 256


#: per task name: fixed before any audit was run (tiny: a quarter of the target's peak training rate);
#: everything else (the 1B/7B tasks) takes the default
RECIPES: dict[str, Recipe] = {"tiny": Recipe(lr=1e-3)}
DEFAULT_RECIPE = Recipe(lr=1e-5, batch_size=4)


def document_key(row_id: str) -> str:
    """The document a row belongs to: its id without the trailing kind and index (``...sc1``, ``...qa0``)."""
    return row_id[:-3] if row_id[-3:-1] in ("sc", "qa") else row_id


def split_documents(rows: list[Row], seed: int = 0) -> tuple[list[Row], list[Row]]:
    """(train half, held-out half) of ``rows``: per task, a seeded shuffle of the sorted document keys,
    the first floor(n/2) documents train, the rest are held out."""
    train, held = [], []
    for task in sorted({r.task for r in rows}):
        keys = sorted({document_key(r.id) for r in rows if r.task == task})
        random.Random(f"{seed}:{task}").shuffle(keys)
        chosen = set(keys[: len(keys) // 2])
        for r in rows:
            if r.task == task:
                (train if document_key(r.id) in chosen else held).append(r)
    return train, held


def _batches(tokenizer, rows: list[Row], recipe: Recipe, epoch: int):
    encoded = []
    for r in rows:
        prompt, answer = answer_tokens(tokenizer, r.input, r.output)
        answer = answer[: recipe.max_length - 1] + [tokenizer.eos_token_id]
        prompt = prompt[-(recipe.max_length - len(answer)) :]
        encoded.append((prompt + answer, [-100] * len(prompt) + answer))
    random.Random(recipe.seed * 1000 + epoch).shuffle(encoded)
    for start in range(0, len(encoded), recipe.batch_size):
        part = encoded[start : start + recipe.batch_size]
        width = max(len(ids) for ids, _ in part)
        ids = torch.full((len(part), width), tokenizer.pad_token_id)
        labels = torch.full((len(part), width), -100)
        mask = torch.zeros((len(part), width), dtype=torch.long)
        for i, (row_ids, row_labels) in enumerate(part):
            ids[i, : len(row_ids)], labels[i, : len(row_ids)] = (
                torch.tensor(row_ids),
                torch.tensor(row_labels),
            )
            mask[i, : len(row_ids)] = 1
        yield ids, mask, labels


def relearned_copy(checkpoint_dir: Path, rows: list[Row], recipe: Recipe, out_dir: Path, device=None) -> Path:
    """Fine-tune a copy of ``checkpoint_dir`` on ``rows`` with ``recipe``; save it to ``out_dir``."""
    torch.manual_seed(recipe.seed)
    model, tokenizer = load_model(checkpoint_dir, device=device)
    model.train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=recipe.lr, weight_decay=0.0)
    with cpu_threads(eval_threads(model, model.device)):  # one thread for a small model (threads.py)
        for epoch in range(recipe.epochs):
            for ids, mask, labels in _batches(tokenizer, rows, recipe, epoch):
                ids, mask, labels = ids.to(model.device), mask.to(model.device), labels.to(model.device)
                logits = model(input_ids=ids, attention_mask=mask).logits[:, :-1].float()
                loss = torch.nn.functional.cross_entropy(
                    logits.transpose(1, 2), labels[:, 1:], ignore_index=-100
                )
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
                optimizer.step()
    model.eval()
    return save_model(model, tokenizer, out_dir)


def share_of_hidden(target: float | None, before: float | None, recovered: float | None) -> float | None:
    """Of the held-out forget knowledge a checkpoint hides (the untouched target's, ``target``, minus its
    own before relearning, ``before``), the share relearning brought back (``recovered``: its gain above
    the gold model's). None when a value is missing or the checkpoint hides nothing there."""
    if target is None or before is None or recovered is None or target - before <= 0:
        return None
    return recovered / (target - before)


@dataclass
class RelearnResult:
    """Held-out forget scores before and after relearning, per model; the gold-relative recovery."""

    recipe: Recipe
    train_rows: int
    heldout_rows: int
    before: dict[str, Measure] = field(default_factory=dict)
    after: dict[str, Measure] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    def gain(self, model: str, key: str = "forget_knowledge") -> float | None:
        if model not in self.before or model not in self.after:
            return None
        b, a = getattr(self.before[model], key), getattr(self.after[model], key)
        return None if a is None or b is None else a - b

    def recovery_above_gold(self, key: str = "forget_knowledge") -> float | None:
        """The checkpoint's gain minus the gold model's (0 when it has none: relearning alone taught it)."""
        mine, gold = self.gain("checkpoint", key), self.gain("gold", key)
        if mine is None:
            return None
        return mine - max(0.0, gold) if gold is not None else mine

    def share_of_hidden(self, key: str = "forget_knowledge") -> float | None:
        """`share_of_hidden` of the checkpoint's held-out measures (None without the target's)."""
        target, mine = self.before.get("target"), self.before.get("checkpoint")
        if target is None or mine is None:
            return None
        return share_of_hidden(getattr(target, key), getattr(mine, key), self.recovery_above_gold(key))

    def to_json(self) -> dict[str, object]:
        keys = ("forget_knowledge", "forget_regurgitation")
        return {
            "recipe": asdict(self.recipe),
            "train_rows": self.train_rows,
            "heldout_rows": self.heldout_rows,
            "gain": {m: {k: self.gain(m, k) for k in keys} for m in self.before},
            "recovery_above_gold": {k: self.recovery_above_gold(k) for k in keys},
            "share_of_hidden": {k: self.share_of_hidden(k) for k in keys},
            "before": {m: v.to_json() for m, v in self.before.items()},
            "after": {m: v.to_json() for m, v in self.after.items()},
            "notes": self.notes,
        }


def run_relearn(
    checkpoint_dir: Path,
    task: TaskSpec,
    work_dir: Path,
    *,
    recipe: Recipe | None = None,
    device: str | None = None,
    references: bool = True,
) -> RelearnResult:
    """The relearning attack on ``checkpoint_dir`` (and, with ``references``, the target and gold)."""
    checkpoint_dir = check_checkpoint(checkpoint_dir)
    recipe = recipe or RECIPES.get(task.name, DEFAULT_RECIPE)
    train, held = split_documents(read_rows(task.eval_forget), recipe.seed)
    held_ids = {r.id for r in held}
    result = RelearnResult(recipe, len(train), len(held))
    work_dir = Path(work_dir)
    for model, path in attacked_models(
        checkpoint_dir, task, references, result.notes, "recovery is not measured against it"
    ):

        def attack(path: Path = path, model: str = model) -> dict:
            rows, _ = measure_run(
                path, task, work_dir / f"{model}-before", device=device
            )  # the official settings
            before = summarize(rows, held_ids).to_json()
            with tempfile.TemporaryDirectory(prefix="audit-relearn-") as tmp:
                copy = relearned_copy(path, train, recipe, Path(tmp) / "model", device)
                rows, _ = measure_run(copy, task, work_dir / f"{model}-after", mia=False, device=device)
            return {"before": before, "after": summarize(rows, held_ids).to_json()}

        settings = {"recipe": asdict(recipe), "device": device}
        done = attack() if model == "checkpoint" else reference_memo("relearn", path, task, settings, attack)
        result.before[model], result.after[model] = (
            measure_from_json(done["before"]),
            measure_from_json(done["after"]),
        )
    return result
