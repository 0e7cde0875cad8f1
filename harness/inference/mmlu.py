"""MMLU as open-instruct's eval/mmlu/run_eval.py scores it (official-scoring.md section 4).

Owns the prompt (the header with its double space after "about", k dev shots, the test item ending in
"Answer:"), the shot fallback (drop shots while the prompt is over the token limit, tokenised without
special tokens), the answer tokens (last token of " A".." D"), and the choice: softmax over the full
vocabulary at the last position, the four candidate probabilities, first argmax. The exact path runs one
prompt per forward (open-instruct's default eval_batch_size 1); the fast path batches with left padding
and explicit position ids, which gives the batch-1 result (open-instruct with a larger batch passes no
position ids, so its own numbers then depend on the padding; we reproduce the default), and runs the
prefix that a subject's prompts share (header and shots) once for all of them (forest.read).
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import torch
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from harness.files import write_atomic
from harness.inference import forest, ties
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
    ends = [_example(item, include_answer=False) for item in subject.test]
    prompts = [_header(subject.name, dev, shots) + end for end in ends]
    if not prompts:
        return []
    lengths = [len(ids) for ids in tokenizer(prompts, add_special_tokens=False).input_ids]  # one batch
    for i, (end, length) in enumerate(zip(ends, lengths)):
        k = shots
        while k > 0 and length > max_tokens:
            k -= 1
            prompts[i] = _header(subject.name, dev, k) + end
            length = len(tokenizer(prompts[i], add_special_tokens=False).input_ids)
    return prompts


def answer_token_ids(tokenizer: PreTrainedTokenizerBase) -> list[int]:
    """The last token of " A", " B", " C", " D" (with the leading space), as open-instruct."""
    return [tokenizer.encode(" " + letter, add_special_tokens=False)[-1] for letter in LETTERS]


def _choose(last_logits: torch.Tensor, candidates: list[int]) -> tuple[list[int], list[list[float]]]:
    # transformers 4.45.2's OLMo returned float32 logits; softmax over the full vocabulary, then pick 4
    probs = forest.candidate_probs(last_logits, candidates)
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


#: the most tokens of one row of MMLU prompts (a subject's header and shots run once for the row)
ROW_TOKENS = 2048


def choose_fast(
    model: PreTrainedModel,
    prompts: Sequence[Sequence[int]],
    candidates: list[int],
    pad_token_id: int,
    batch_size: int,
    max_tokens: int | None = None,
    on_rows=None,
    on_exact=None,
) -> list[tuple[int, list[float]]]:
    """Batched choices: the same picks as `choose_exact`, probabilities up to float rounding.

    The prompts are sequences of a prefix forest (forest.read): those of a subject share its header and
    shots, which run once per row; only each prompt's last position goes through the output layer. A
    pick that leads the runner-up letter by less than the dtype's tolerance (ties.py) is made again by
    `choose_exact`; ``on_exact(n, seconds)`` counts those prompts and the time they took.
    """
    readouts = forest.read(
        model,
        prompts,
        [len(p) - 1 for p in prompts],
        pad_token_id,
        batch_size,
        max_tokens,
        ROW_TOKENS,
        candidates=candidates,
        on_rows=on_rows,
    )
    tol = ties.tolerance(model.dtype)
    out = []
    exact, seconds = 0, 0.0
    for ids, r in zip(prompts, readouts):
        lead = math.inf if r.choice_margin is None else r.choice_margin
        if not lead >= tol:
            started = time.perf_counter()
            out.append(choose_exact(model, ids, candidates))
            exact, seconds = exact + 1, seconds + time.perf_counter() - started
        else:
            out.append((r.probs.index(max(r.probs)), list(r.probs)))  # the first argmax
    if on_exact is not None and exact:
        on_exact(exact, seconds)
    return out


def write_subject_csv(mmlu_dir: Path, result: SubjectResult, out_dir: Path, limit: int | None = None) -> Path:
    """``<subject>.csv``: the test file as pandas reads it, then correct and choiceA..D_probs (open-instruct);
    ``limit``: its first rows only (a partial evaluation)."""
    frame = pd.read_csv(Path(mmlu_dir) / "test" / f"{result.name}_test.csv", header=None)
    if limit is not None:
        frame = frame.head(limit)
    frame["correct"] = result.correct
    for j, letter in enumerate(LETTERS):
        frame[f"choice{letter}_probs"] = [p[j] for p in result.probs]
    path = out_dir / f"{result.name}.csv"
    write_atomic(path, lambda tmp: frame.to_csv(tmp, index=None))
    return path
