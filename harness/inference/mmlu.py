"""MMLU as open-instruct's eval/mmlu/run_eval.py scores it (official-scoring.md section 4).

Owns the prompt (the header with its double space after "about", k dev shots, the test item ending in
"Answer:"), the shot fallback (drop shots while the prompt is over the token limit, tokenised without
special tokens), the answer tokens (last token of " A".." D"), and the choice: softmax over the full
vocabulary at the last position, the four candidate probabilities, first argmax. The exact path runs one
prompt per forward (open-instruct's default eval_batch_size 1); the fast path batches with left padding
and explicit position ids, which gives the batch-1 result (open-instruct with a larger batch passes no
position ids, so its own numbers then depend on the padding; we reproduce the default), and runs the
prefix that a subject's prompts share (header and shots) once for all of them (a tree per group).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import torch
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from harness.inference.batching import TREE_ATTENTION, Tree, attention_mask_for, pack_trees, run_batched
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


def _common_prefix(a: Sequence[int], b: Sequence[int]) -> int:
    n = 0
    for x, y in zip(a, b):
        if x != y:
            break
        n += 1
    return n


def shared_prefix_trees(prompts: Sequence[Sequence[int]], limit: int) -> list[tuple[list[int], Tree]]:
    """Prompts grouped into trees: a shared token prefix as the trunk, each prompt's tail a branch.

    The prompts of a subject share its header and shots, so the prefix runs once per tree instead of
    once per prompt. Sorted by their tokens, prompts with a common prefix are neighbours, and a run's
    common prefix is that of its first and last prompt. A prompt joins the current tree while the tree
    stays within ``limit`` tokens and sharing costs no more tokens than running the prompt apart (with k
    prompts in the tree: the shared length keeps at least (k - 1) / k of itself). Every branch keeps at
    least one token: the logits at its last token choose the answer. Returns (prompt indices, tree).
    """
    order = sorted(range(len(prompts)), key=lambda i: tuple(prompts[i]))
    groups: list[tuple[list[int], int, int]] = []  # members, shared length, total tokens
    for i in order:
        prompt = prompts[i]
        if groups:
            members, shared, total = groups[-1]
            common = min(shared, _common_prefix(prompts[members[0]], prompt), len(prompt) - 1)
            joined = sum(len(prompts[m]) for m in members) + len(prompt) - len(members) * common
            if joined <= limit and len(members) * common >= (len(members) - 1) * shared:
                groups[-1] = (members + [i], common, joined)
                continue
        groups.append(([i], len(prompt) - 1, len(prompt)))
    trees = []
    for members, shared, _ in groups:
        branches = tuple(tuple(prompts[m][shared:]) for m in members)
        trees.append((members, Tree(tuple(prompts[members[0]][:shared]), shared, branches)))
    return trees


#: the most tokens of one tree of MMLU prompts (its attention is dense over the tree's tokens)
TREE_TOKENS = 2048


def choose_fast(
    model: PreTrainedModel,
    prompts: Sequence[Sequence[int]],
    candidates: list[int],
    pad_token_id: int,
    batch_size: int,
    max_tokens: int | None = None,
    on_rows=None,
) -> list[tuple[int, list[float]]]:
    """Batched choices, the same as `choose_exact` up to float rounding.

    Prompts sharing a prefix run as one tree (`shared_prefix_trees`), trees are left padded with
    position ids; with an attention implementation that takes no custom mask, each prompt is one row.
    """
    if model.config._attn_implementation in TREE_ATTENTION:
        trees = shared_prefix_trees(prompts, min(TREE_TOKENS, max_tokens or TREE_TOKENS))
    else:
        trees = [([i], Tree(tuple(p), len(p))) for i, p in enumerate(prompts)]

    @torch.inference_mode()
    def work(rows: list[tuple[list[int], Tree]]) -> list[list[tuple[int, list[float]]]]:
        packed = pack_trees([tree for _, tree in rows], pad_token_id)
        # the last token of each prompt: the trunk's end for a tree without branches, else each branch's
        ends = [[hi - 1 for _, hi in (spans[1:] or spans)] for spans in packed.spans]
        columns = sorted({c for row in ends for c in row})
        index = {c: k for k, c in enumerate(columns)}
        logits = model(
            packed.input_ids.to(model.device),
            attention_mask=attention_mask_for(model, packed.attention_mask),
            position_ids=packed.position_ids.to(model.device),
            logits_to_keep=torch.tensor(columns, device=model.device),
        ).logits
        out = []
        for row, row_ends in enumerate(ends):
            preds, probs = _choose(logits[row, [index[c] for c in row_ends]], candidates)
            out.append(list(zip(preds, probs)))
        if on_rows is not None:  # progress counts prompts, not trees
            on_rows(sum(len(members) for members, _ in rows))
        return out

    results = run_batched(trees, work, batch_size, cost=lambda t: len(t[1]), max_tokens=max_tokens)
    chosen: list[tuple[int, list[float]] | None] = [None] * len(prompts)
    for (members, _), picks in zip(trees, results):
        for i, pick in zip(members, picks):
            chosen[i] = pick
    return chosen  # type: ignore[return-value]


def write_subject_csv(mmlu_dir: Path, result: SubjectResult, out_dir: Path) -> Path:
    """``<subject>.csv``: the test file as pandas reads it, then correct and choiceA..D_probs (open-instruct)."""
    frame = pd.read_csv(Path(mmlu_dir) / "test" / f"{result.name}_test.csv", header=None)
    frame["correct"] = result.correct
    for j, letter in enumerate(LETTERS):
        frame[f"choice{letter}_probs"] = [p[j] for p in result.probs]
    path = out_dir / f"{result.name}.csv"
    frame.to_csv(path, index=None)
    return path
