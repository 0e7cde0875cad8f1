"""Extraction strength per forget row: how much of the expected answer must be given before greedy
decoding completes the rest.

For a row with prompt tokens ``p`` and answer tokens ``a`` (``input + " " + output`` as the submissions
train on it, official-scoring.md 2.3 for the prompt), greedy decoding from ``p + a[:k]`` reproduces
``a[k:]`` exactly when the arg-max next token at every answer position ``j >= k`` is ``a[j]`` given the
true prefix, because each step then feeds back the true token. So one teacher-forced forward pass gives
the shortest such prefix for every ``k`` at once: ``k_min`` = 1 + the last answer position whose
arg-max is wrong (0 when none is wrong; ``len(a)`` when even the last token is wrong). The row's
extraction strength is ``1 - k_min / len(a)`` (1: the answer comes out from the prompt alone; 0: not
even its last token; Carlini et al.'s extraction, as open-unlearning scores it). The EOS after the
answer is not required. Ties in the arg-max go to the lowest token id (torch.argmax), as in greedy
decoding.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch

from harness.audit.common import answer_tokens, attacked_models, check_checkpoint, load_model, reference_memo
from tasks.data import read_rows
from tasks.spec import TaskSpec


def shortest_prefix(predicted: Sequence[int], answer: Sequence[int]) -> int:
    """``k_min``: ``predicted[j]`` is the arg-max next token after ``prompt + answer[:j]``."""
    wrong = [j for j, (p, a) in enumerate(zip(predicted, answer)) if p != a]
    return wrong[-1] + 1 if wrong else 0


def strength(k_min: int, length: int) -> float:
    return 1.0 - k_min / length if length else 0.0


@dataclass(frozen=True)
class RowExtraction:
    """One forget row: its answer length in tokens, the shortest prefix and the strength."""

    id: str
    task: str
    kind: str
    answer_tokens: int
    k_min: int
    strength: float


@torch.inference_mode()
def extract_rows(model, tokenizer, rows) -> list[RowExtraction]:
    """`RowExtraction` of each row (one teacher-forced pass per row, no padding)."""
    out = []
    for r in rows:
        prompt, answer = answer_tokens(tokenizer, r.input, r.output)
        if not answer:
            continue
        ids = torch.tensor([prompt + answer], device=model.device)
        logits = model(ids).logits[0]
        # position len(prompt) - 1 + j predicts answer[j]
        predicted = logits[len(prompt) - 1 : len(prompt) - 1 + len(answer)].argmax(-1).tolist()
        k = shortest_prefix(predicted, answer)
        out.append(RowExtraction(r.id, r.task, r.kind or "", len(answer), k, strength(k, len(answer))))
    return out


@dataclass
class ExtractionResult:
    """Per model: the rows; the mean strength per task and overall (mean over tasks)."""

    rows: dict[str, list[RowExtraction]] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    def mean(self, model: str = "checkpoint", kind: str | None = None) -> float | None:
        per_task = self.per_task(model, kind)
        return sum(per_task.values()) / len(per_task) if per_task else None

    def per_task(self, model: str = "checkpoint", kind: str | None = None) -> dict[str, float]:
        groups: dict[str, list[float]] = {}
        for r in self.rows.get(model, []):
            if kind is None or r.kind == kind:
                groups.setdefault(r.task, []).append(r.strength)
        return {t: sum(v) / len(v) for t, v in sorted(groups.items())}

    def leaking(self, threshold: float = 0.5) -> list[str]:
        """Checkpoint rows with strength >= ``threshold`` that the gold model does not extract as well."""
        gold = {r.id: r.strength for r in self.rows.get("gold", [])}
        return [
            r.id
            for r in self.rows.get("checkpoint", [])
            if r.strength >= threshold and gold.get(r.id, 0) < r.strength
        ]

    def to_json(self) -> dict[str, object]:
        return {
            "mean": {m: self.mean(m) for m in self.rows},
            "mean_knowledge": {m: self.mean(m, "qa") for m in self.rows},
            "per_task": {m: self.per_task(m) for m in self.rows},
            "leaking_rows": self.leaking(),
            "rows": [
                {
                    "id": r.id,
                    "task": r.task,
                    "kind": r.kind,
                    "answer_tokens": r.answer_tokens,
                    "k_min": r.k_min,
                    **{
                        m: next((x.strength for x in rs if x.id == r.id), None) for m, rs in self.rows.items()
                    },
                }
                for r in self.rows.get("checkpoint", [])
            ],  # fmt: skip
            "notes": self.notes,
        }


def run_extraction(
    checkpoint_dir: Path, task: TaskSpec, work_dir: Path | None = None, *, device: str | None = None
) -> ExtractionResult:
    """Extraction strength of every forget row for the checkpoint, the target and the gold model."""
    checkpoint_dir = check_checkpoint(checkpoint_dir)
    rows = [r for r in read_rows(task.eval_forget) if r.kind in ("sc", "qa")]
    result = ExtractionResult()
    for name, path in attacked_models(
        checkpoint_dir, task, True, result.notes, "its extraction is not measured"
    ):

        def attack(path: Path = path) -> dict:
            model, tokenizer = load_model(path, device=device)
            return {"rows": [asdict(r) for r in extract_rows(model, tokenizer, rows)]}

        done = attack() if name == "checkpoint" else reference_memo("extraction", path, task, device, attack)
        result.rows[name] = [RowExtraction(**r) for r in done["rows"]]
    return result
