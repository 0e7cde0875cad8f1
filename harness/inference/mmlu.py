"""MMLU as open-instruct's eval/mmlu/run_eval.py scores it (official-scoring.md section 4).

Owns the prompt (the header with its double space after "about", k dev shots, the test item ending in
"Answer:"), the shot fallback (drop shots while the prompt is over the token limit, tokenised without
special tokens), the answer tokens (last token of " A".." D"), and the choice: softmax over the full
vocabulary at the last position, the four candidate probabilities, first argmax. The exact path runs one
prompt per forward (open-instruct's default eval_batch_size 1); the fast path batches with left padding
and explicit position ids, which gives the batch-1 result (open-instruct with a larger batch passes no
position ids, so its own numbers then depend on the padding; we reproduce the default).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import torch
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from harness.inference.batching import left_pad, run_batched
from tasks.data import MmluItem, MmluSubject

LETTERS = ("A", "B", "C", "D")


@dataclass(frozen=True)
class SubjectResult:
    """Per test item of one subject: correct (bool) and the four full-vocabulary choice probabilities."""

    name: str
    correct: list[bool]
    probs: list[list[float]]


def _example(item: MmluItem, include_answer: bool) -> str:
    text = item.question
    for letter, choice in zip(LETTERS, item.choices):
        text += f"\n{letter}. {choice}"
    text += "\nAnswer:"
    if include_answer:
        text += f" {item.answer}\n\n"
    return text


def _header(subject: str, dev: Sequence[MmluItem], k: int) -> str:
    # open-instruct's format_subject puts a space before every word: hence "about  word" (double space)
    words = "".join(" " + w for w in subject.split("_"))
    text = f"The following are multiple choice questions (with answers) about {words}.\n\n"
    return text + "".join(_example(item, include_answer=True) for item in dev[:k])


def build_prompts(
    subject: MmluSubject, tokenizer: PreTrainedTokenizerBase, shots: int, max_tokens: int
) -> list[str]:
    """One prompt per test item; shots are dropped one by one while the prompt has > max_tokens tokens."""
    dev = subject.dev[:shots]
    prompts = []
    for item in subject.test:
        end = _example(item, include_answer=False)
        k = shots
        prompt = _header(subject.name, dev, k) + end
        while k > 0 and len(tokenizer(prompt, add_special_tokens=False).input_ids) > max_tokens:
            k -= 1
            prompt = _header(subject.name, dev, k) + end
        prompts.append(prompt)
    return prompts


def answer_token_ids(tokenizer: PreTrainedTokenizerBase) -> list[int]:
    """The last token of " A", " B", " C", " D" (with the leading space), as open-instruct."""
    return [tokenizer.encode(" " + letter, add_special_tokens=False)[-1] for letter in LETTERS]


def _choose(last_logits: torch.Tensor, candidates: list[int]) -> tuple[list[int], list[list[float]]]:
    # transformers 4.45.2's OLMo returned float32 logits; softmax over the full vocabulary, then pick 4
    probs = torch.softmax(last_logits.float(), dim=-1)[:, candidates]
    return probs.argmax(-1).tolist(), probs.tolist()


@torch.inference_mode()
def choose_exact(
    model: PreTrainedModel, ids: Sequence[int], candidates: list[int]
) -> tuple[int, list[float]]:
    """open-instruct's get_next_word_predictions with batch size 1 (mask of ones, no padding)."""
    tensor = torch.tensor([list(ids)], device=model.device)
    logits = model(tensor, attention_mask=torch.ones_like(tensor)).logits[:, -1, :]
    preds, probs = _choose(logits, candidates)
    return preds[0], probs[0]


def choose_fast(
    model: PreTrainedModel,
    prompts: Sequence[Sequence[int]],
    candidates: list[int],
    pad_token_id: int,
    batch_size: int,
    max_tokens: int | None = None,
    on_rows=None,
) -> list[tuple[int, list[float]]]:
    """Batched (left padding, position ids) choices; the same as `choose_exact` up to float rounding."""

    @torch.inference_mode()
    def work(rows: list[Sequence[int]]) -> list[tuple[int, list[float]]]:
        batch = left_pad(rows, pad_token_id)
        mask = batch.attention_mask.to(model.device)
        positions = (mask.cumsum(-1) - 1).clamp(min=0)
        logits = model(
            batch.input_ids.to(model.device), attention_mask=mask, position_ids=positions, logits_to_keep=1
        ).logits[:, -1, :]
        preds, probs = _choose(logits, candidates)
        return list(zip(preds, probs))

    return run_batched(prompts, work, batch_size, cost=len, max_tokens=max_tokens, on_rows=on_rows)


def write_subject_csv(mmlu_dir: Path, result: SubjectResult, out_dir: Path) -> Path:
    """``<subject>.csv``: the test file as pandas reads it, then correct and choiceA..D_probs (open-instruct)."""
    frame = pd.read_csv(Path(mmlu_dir) / "test" / f"{result.name}_test.csv", header=None)
    frame["correct"] = result.correct
    for j, letter in enumerate(LETTERS):
        frame[f"choice{letter}_probs"] = [p[j] for p in result.probs]
    path = out_dir / f"{result.name}.csv"
    frame.to_csv(path, index=None)
    return path
