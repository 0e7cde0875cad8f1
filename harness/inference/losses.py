"""Token losses: the answer NLL of each forget/retain row and the per-document MIA loss.

Both are a mean next-token cross-entropy over a span of labelled positions of one token sequence
(official-scoring.md 2.3 and 2.7): the answer tokens of question+answer (the first len(question tokens)
positions are labelled -100), or every position but the first (labels = input ids). The exact path makes
the official call, ``model(ids, labels=labels).loss`` one sequence at a time; the fast path computes the
same means from a left-padded batch, with only the logits it needs.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from harness.inference.batching import left_pad, run_batched

#: the most logits (rows x positions x vocabulary) held at once by the batched loss (float32: 1 GiB)
LOGITS_BUDGET = 1 << 28


@dataclass(frozen=True)
class LossItem:
    """A token sequence whose positions ``start..len-1`` are labelled (loss = their mean CE)."""

    ids: tuple[int, ...]
    start: int


def answer_item(tokenizer: PreTrainedTokenizerBase, question: str, answer: str) -> LossItem:
    """question+answer glued with no separator; labels only after the question's own token count."""
    prompt_len = len(tokenizer(question).input_ids)
    return LossItem(tuple(tokenizer(question + answer).input_ids), prompt_len)


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
def _loss_batch(model: PreTrainedModel, items: Sequence[LossItem], pad_token_id: int) -> list[float]:
    batch = left_pad([it.ids for it in items], pad_token_id)
    width = batch.input_ids.shape[1]
    # position q predicts token q+1; labelled tokens j >= max(start, 1) need logits at q = pad + j - 1
    firsts = [max(it.start, 1) for it in items]
    keep = max(len(it.ids) - f + 1 for it, f in zip(items, firsts))
    mask = batch.attention_mask.to(model.device)
    positions = (mask.cumsum(-1) - 1).clamp(min=0)
    logits = model(
        batch.input_ids.to(model.device), attention_mask=mask, position_ids=positions, logits_to_keep=keep
    ).logits.float()
    out: list[float] = []
    for row, (it, first) in enumerate(zip(items, firsts)):
        pad = width - len(it.ids)
        lo = pad + first - 1 - (width - keep)
        hi = width - 1 - (width - keep)
        target = torch.tensor(it.ids[first:], device=logits.device)
        out.append(float(F.cross_entropy(logits[row, lo:hi], target).item()))
    return out


def losses_fast(
    model: PreTrainedModel,
    items: Sequence[LossItem],
    pad_token_id: int,
    batch_size: int,
    on_rows=None,
) -> list[float]:
    """Batched mean CE per item, the same values as `loss_exact` up to float rounding."""
    vocab = model.config.vocab_size

    def work(chunk: list[LossItem]) -> list[float]:
        width = max(len(it.ids) for it in chunk)
        rows = max(1, LOGITS_BUDGET // (width * vocab))
        out: list[float] = []
        for start in range(0, len(chunk), rows):
            out.extend(_loss_batch(model, chunk[start : start + rows], pad_token_id))
        return out

    return run_batched(items, work, batch_size, cost=lambda it: len(it.ids), on_rows=on_rows)
