"""Batching for the fast path: left padding, length-sorted batches and batch-size halving on out-of-memory.

`run_batched` sorts work items by cost (longest first, so an out-of-memory error shows up on the first
batch), cuts them into batches of at most ``batch_size`` items, halves the size when the device runs out of
memory, and returns results in the caller's order.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TypeVar

import torch

T = TypeVar("T")
R = TypeVar("R")


@dataclass(frozen=True)
class Batch:
    """Left-padded token ids (rows, max_len) and the matching 0/1 attention mask."""

    input_ids: torch.Tensor
    attention_mask: torch.Tensor


def left_pad(rows: Sequence[Sequence[int]], pad_token_id: int) -> Batch:
    """Left-pad token id lists to one length (as open-instruct's tokenizer with padding_side='left')."""
    width = max(len(r) for r in rows)
    ids = torch.full((len(rows), width), pad_token_id, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, row in enumerate(rows):
        if row:
            ids[i, width - len(row) :] = torch.tensor(list(row), dtype=torch.long)
            mask[i, width - len(row) :] = 1
    return Batch(ids, mask)


def is_out_of_memory(error: BaseException) -> bool:
    """Whether an exception means the device (or host) ran out of memory for this batch."""
    if isinstance(error, (torch.cuda.OutOfMemoryError, MemoryError)):
        return True
    return isinstance(error, RuntimeError) and "out of memory" in str(error).lower()


def run_batched(
    items: Sequence[T],
    work: Callable[[list[T]], list[R]],
    batch_size: int,
    *,
    cost: Callable[[T], int],
    on_rows: Callable[[int], None] | None = None,
) -> list[R]:
    """Apply ``work`` to length-sorted batches of ``items``; results come back in the order of ``items``."""
    order = sorted(range(len(items)), key=lambda i: (-cost(items[i]), i))
    results: list[R | None] = [None] * len(items)
    start, size = 0, max(1, batch_size)
    while start < len(order):
        chunk = order[start : start + size]
        try:
            out = work([items[i] for i in chunk])
        except Exception as error:  # noqa: BLE001 - only out-of-memory is retried, the rest re-raised
            if not is_out_of_memory(error) or size == 1:
                raise
            size //= 2
            if torch.cuda.is_available():
                torch.cuda.empty_cache()
            continue
        for i, r in zip(chunk, out):
            results[i] = r
        start += len(chunk)
        if on_rows is not None:
            on_rows(len(chunk))
    return results  # type: ignore[return-value]
