"""Token losses: the answer NLL of each forget/retain row and the per-document MIA loss.

Both are a mean next-token cross-entropy over a span of labelled positions of one token sequence
(official-scoring.md 2.3 and 2.7): the answer tokens of question+answer (the first len(question tokens)
positions are labelled -100), or every position but the first (labels = input ids). The exact path makes
the official call, ``model(ids, labels=labels).loss`` one sequence at a time; the fast path reads the
same means off prefix-forest rows (forest.read), with only the logits it needs.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from harness.inference import forest


@dataclass(frozen=True)
class LossItem:
    """A token sequence whose positions ``start..len-1`` are labelled (loss = their mean CE)."""

    ids: tuple[int, ...]
    start: int

    @property
    def first(self) -> int:
        """The first position whose logits the loss needs (position q predicts token q + 1)."""
        return max(self.start, 1) - 1


def answer_item(
    tokenizer: PreTrainedTokenizerBase, question: str, answer: str, prompt: Sequence[int] | None = None
) -> LossItem:
    """question+answer glued with no separator; labels only after the question's own token count.

    ``prompt`` is ``tokenizer(question).input_ids`` when the caller already has it.
    """
    prompt = tokenizer(question).input_ids if prompt is None else prompt
    return LossItem(tuple(tokenizer(question + answer).input_ids), len(prompt))


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


def losses_fast(
    model: PreTrainedModel,
    items: Sequence[LossItem],
    pad_token_id: int,
    batch_size: int,
    max_tokens: int | None = None,
    on_rows=None,
) -> list[float]:
    """Batched mean CE per item, the same values as `loss_exact` up to float rounding."""
    readouts = forest.read(
        model,
        [it.ids for it in items],
        [it.first for it in items],
        pad_token_id,
        batch_size,
        max_tokens,
        on_rows=on_rows,
    )
    return [r.loss for r in readouts]
