"""Batching for the fast path: left padding, length-sorted batches under a row and a token cap, halving on OOM.

`run_batched` sorts work items by cost (their length in tokens; longest first, so an out-of-memory error
shows up on the first batch) and cuts the sorted list into batches of at most ``batch_size`` rows and,
when a token budget is given, at most ``max_tokens`` padded tokens (rows x the batch's longest row).
Within those caps the cut points are chosen to waste little on padding without running many small
batches (`plan_batches`): a set of short and long prompts is not padded to its longest one. On
out-of-memory both caps are halved and the rest re-planned; results come back in the caller's order.
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


#: with a token budget, one batch is taken to cost as much as max_tokens // BATCH_COST_SHARE more padded
#: tokens (a forward pass's fixed cost); it weighs fewer, fuller batches against less padding
BATCH_COST_SHARE = 16


def plan_batches(costs: Sequence[int], batch_size: int, max_tokens: int) -> list[int]:
    """Sizes of consecutive batches of ``costs`` (sorted longest first) within both caps.

    A batch of k items starting at item i pads them to ``costs[i]``; the plan minimises the padded tokens
    plus ``max_tokens // BATCH_COST_SHARE`` per batch over all cuts (dynamic programming from the end).
    A batch holds at most ``batch_size`` items and ``max_tokens`` padded tokens, or a single item.
    """
    n, fixed = len(costs), max_tokens // BATCH_COST_SHARE
    best = [0] * (n + 1)  # best[i]: cost of the best plan for items i..n-1
    size = [0] * (n + 1)
    for i in range(n - 1, -1, -1):
        width, best[i] = max(1, costs[i]), -1
        for k in range(1, min(batch_size, n - i) + 1):
            if k > 1 and k * width > max_tokens:
                break
            total = k * width + fixed + best[i + k]
            if best[i] < 0 or total < best[i]:
                best[i], size[i] = total, k
    plan, i = [], 0
    while i < n:
        plan.append(size[i])
        i += size[i]
    return plan


def run_batched(
    items: Sequence[T],
    work: Callable[[list[T]], list[R]],
    batch_size: int,
    *,
    cost: Callable[[T], int],
    max_tokens: int | None = None,
    on_rows: Callable[[int], None] | None = None,
) -> list[R]:
    """Apply ``work`` to length-sorted batches of ``items``; results come back in the order of ``items``.

    A batch holds at most ``batch_size`` items and, if ``max_tokens`` is given, at most ``max_tokens``
    padded tokens (its item count times the largest ``cost`` in it; a single longer item still runs),
    cut as `plan_batches` plans; without ``max_tokens``, consecutive runs of ``batch_size`` items.
    """
    order = sorted(range(len(items)), key=lambda i: (-cost(items[i]), i))
    results: list[R | None] = [None] * len(items)
    start, size, tokens = 0, max(1, batch_size), max_tokens
    plan: list[int] = []
    while start < len(order):
        if not plan:
            rest = [cost(items[i]) for i in order[start:]]
            plan = plan_batches(rest, size, tokens) if tokens is not None else [size] * -(-len(rest) // size)
        chunk = order[start : start + plan[0]]
        try:
            out = work([items[i] for i in chunk])
        except Exception as error:  # noqa: BLE001 - only out-of-memory is retried, the rest re-raised
            if not is_out_of_memory(error) or len(chunk) == 1:
                raise
            size = len(chunk) // 2
            tokens = None if tokens is None else max(1, tokens // 2)
            plan = []
            if torch.cuda.is_available():
                torch.cuda.empty_cache()
            continue
        for i, r in zip(chunk, out):
            results[i] = r
        start += len(chunk)
        plan.pop(0)
        if on_rows is not None:
            on_rows(len(chunk))
    return results  # type: ignore[return-value]
