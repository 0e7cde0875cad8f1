"""Token losses: the answer NLL of each forget/retain row and the per-document MIA loss.

Both are a mean next-token cross-entropy over a span of labelled positions of one token sequence
(official-scoring.md 2.3 and 2.7): the answer tokens of question+answer (the first len(question tokens)
positions are labelled -100), or every position but the first (labels = input ids). The exact path makes
the official call, ``model(ids, labels=labels).loss`` one sequence at a time; the fast path computes the
same means from a left-padded batch, with only the logits it needs.

For an answer item the fast pass also reads drafts of the row's generation off the same forward pass
(generation.accept_draft): the argmax of the logits at the last question position and at every answer
position is the greedy token after each prefix of the answer; and a second continuation of the question
(a ``branch``, e.g. the answer after a space) packed behind the answer in the same row, with a tree
attention mask, gives the greedy tokens along it without running the question again.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from harness.inference.batching import TREE_ATTENTION, Tree, attention_mask_for, pack_trees, run_batched

#: the most logits (rows x positions x vocabulary) held at once by the batched loss (float32: 1 GiB)
LOGITS_BUDGET = 1 << 28


@dataclass(frozen=True)
class LossItem:
    """A token sequence whose positions ``start..len-1`` are labelled (loss = their mean CE).

    ``draft``: ``ids[:start]`` are exactly the question's own tokens (the generation prompt), so the
    greedy token after each prefix of ``ids[start:]`` can be read off the forward pass. ``branch``
    (draft items only): another continuation of ``ids[:start]``, run in the same row behind ``ids``; it
    sees ``ids[:start]`` and itself only, at the positions it would have right after the question.
    """

    ids: tuple[int, ...]
    start: int
    draft: bool = False
    branch: tuple[int, ...] = ()


@dataclass(frozen=True)
class LossResult:
    """An item's mean CE and, for draft items, the greedy tokens along the answer and along the branch.

    ``greedy[i]`` is the argmax of the (float32) logits after ``ids[: start + i]``, i = 0 .. len(ids) -
    start; ``branch_greedy[i]`` the argmax after ``ids[:start] + branch[:i]``, i = 0 .. len(branch).
    """

    loss: float
    greedy: tuple[int, ...] | None = None
    branch_greedy: tuple[int, ...] | None = None


def answer_item(
    tokenizer: PreTrainedTokenizerBase, question: str, answer: str, prompt: Sequence[int] | None = None
) -> LossItem:
    """question+answer glued with no separator; labels only after the question's own token count.

    ``prompt`` is ``tokenizer(question).input_ids`` when the caller already has it.
    """
    prompt = tokenizer(question).input_ids if prompt is None else prompt
    return answer_tokens_item(prompt, tokenizer(question + answer).input_ids)


def answer_tokens_item(prompt: Sequence[int], ids: Sequence[int], branch: Sequence[int] = ()) -> LossItem:
    """The answer item of ``ids`` = tokens(question + answer) whose question has the tokens ``prompt``.

    It is a draft item when ``ids`` starts with ``prompt`` (a non-empty one); ``branch`` is kept on a
    draft item where it differs from the answer tokens.
    """
    ids, start = tuple(ids), len(prompt)
    draft = start >= 1 and ids[:start] == tuple(prompt)
    keep = tuple(branch) if draft and tuple(branch) != ids[start:] else ()
    return LossItem(ids, start, draft, keep)


def document_item(tokenizer: PreTrainedTokenizerBase, document: str) -> LossItem:
    """A whole MIA document, labels = input ids (no truncation)."""
    return LossItem(tuple(tokenizer(document).input_ids), 0)


@torch.inference_mode()
def loss_exact(model: PreTrainedModel, item: LossItem) -> float:
    """The official call: one sequence, no attention mask, ``.loss`` of the model with labels."""
    ids = torch.tensor([item.ids], device=model.device)
    labels = ids.clone()
    labels[:, : item.start] = -100
    return float(model(ids, labels=labels).loss.item())


@torch.inference_mode()
def _loss_batch(model: PreTrainedModel, items: Sequence[LossItem], pad_token_id: int) -> list[LossResult]:
    packed = pack_trees(
        [Tree(it.ids, it.start, (it.branch,) if it.branch else ()) for it in items], pad_token_id
    )
    # position q predicts token q+1: labelled tokens j >= max(start, 1) need logits at q = j - 1; the
    # logits at ids' last position and along the branch (each row's end) give greedy tokens
    firsts = [max(it.start, 1) for it in items]
    width = packed.input_ids.shape[1]
    keep = max(width - (spans[0][0] + first - 1) for spans, first in zip(packed.spans, firsts))
    device = model.device
    logits = model(
        packed.input_ids.to(device),
        attention_mask=attention_mask_for(model, packed.attention_mask),
        position_ids=packed.position_ids.to(device),
        logits_to_keep=keep,
    ).logits.float()  # the float32 copy, as the official loop's argmax (generation.generate_batch)
    tops_all = logits.argmax(-1).tolist() if any(it.draft for it in items) else []
    out: list[LossResult] = []
    for row, (it, first, spans) in enumerate(zip(items, firsts, packed.spans)):
        lo = spans[0][0] + first - 1 - (width - keep)  # kept index of position first - 1
        end = spans[0][1] - (width - keep)  # kept index just after ids' last position
        target = torch.tensor(it.ids[first:], device=logits.device)
        loss = float(F.cross_entropy(logits[row, lo : end - 1], target).item())
        if not it.draft:  # a draft item has start >= 1: lo is the last question position
            out.append(LossResult(loss))
            continue
        tops = tops_all[row][lo:]
        greedy = tuple(tops[: end - lo])
        branch = (greedy[0], *tops[end - lo :]) if it.branch else None
        out.append(LossResult(loss, greedy, branch))
    return out


def losses_with_drafts(
    model: PreTrainedModel,
    items: Sequence[LossItem],
    pad_token_id: int,
    batch_size: int,
    max_tokens: int | None = None,
    on_rows=None,
) -> list[LossResult]:
    """Batched mean CE per item (as `loss_exact` up to float rounding), with the draft items' greedy tokens."""
    vocab = model.config.vocab_size
    if model.config._attn_implementation not in TREE_ATTENTION:  # e.g. flash attention: no custom mask
        items = [LossItem(it.ids, it.start, it.draft) for it in items]

    def work(chunk: list[LossItem]) -> list[LossResult]:
        width = max(len(it.ids) + len(it.branch) for it in chunk)
        rows = max(1, LOGITS_BUDGET // (width * vocab))
        out: list[LossResult] = []
        for start in range(0, len(chunk), rows):
            out.extend(_loss_batch(model, chunk[start : start + rows], pad_token_id))
        return out

    def cost(it: LossItem) -> int:
        return len(it.ids) + len(it.branch)

    return run_batched(items, work, batch_size, cost=cost, max_tokens=max_tokens, on_rows=on_rows)


def losses_fast(
    model: PreTrainedModel,
    items: Sequence[LossItem],
    pad_token_id: int,
    batch_size: int,
    max_tokens: int | None = None,
    on_rows=None,
) -> list[float]:
    """Batched mean CE per item, the same values as `loss_exact` up to float rounding."""
    plain = [LossItem(it.ids, it.start) for it in items]  # no drafts: no argmax to take
    return [r.loss for r in losses_with_drafts(model, plain, pad_token_id, batch_size, max_tokens, on_rows)]
