"""harness.inference.batching: left padding, batch plans within both caps, halving on out-of-memory."""

from __future__ import annotations

import pytest
import torch

from harness.inference import batching


def test_left_pad_puts_padding_on_the_left() -> None:
    batch = batching.left_pad([[5, 6, 7], [8]], pad_token_id=0)
    assert batch.input_ids.tolist() == [[5, 6, 7], [0, 0, 8]]
    assert batch.attention_mask.tolist() == [[1, 1, 1], [0, 0, 1]]


def test_run_batched_sorts_by_length_keeps_order_and_halves_on_oom() -> None:
    seen: list[list[str]] = []

    def work(chunk: list[str]) -> list[str]:
        if len(chunk) > 2:
            raise RuntimeError("CUDA out of memory. Tried to allocate 1 GiB")
        seen.append(chunk)
        return [s.upper() for s in chunk]

    items = ["aa", "b", "cccc", "ddd", "e"]
    assert batching.run_batched(items, work, 8, cost=len) == ["AA", "B", "CCCC", "DDD", "E"]
    assert seen == [["cccc", "ddd"], ["aa", "b"], ["e"]]  # longest first, ties in input order


def test_run_batched_reraises_other_errors() -> None:
    def work(chunk: list[int]) -> list[int]:
        raise ValueError("boom")

    with pytest.raises(ValueError, match="boom"):
        batching.run_batched([1, 2], work, 2, cost=lambda x: x)


def _check_caps(chunks: list[list[str]], batch_size: int, max_tokens: int) -> None:
    for chunk in chunks:
        assert len(chunk) <= batch_size
        assert len(chunk) == 1 or len(chunk) * max(len(s) for s in chunk) <= max_tokens


def test_run_batched_token_budget_respects_both_caps_and_keeps_order() -> None:
    # short and long items: a row cap alone would pad the short ones to the longest
    items = [("x" * n) for n in (3, 40, 5, 38, 4, 41, 6, 39, 2, 60, 5, 3, 37, 4)]
    seen: list[list[str]] = []

    def work(chunk: list[str]) -> list[int]:
        seen.append(chunk)
        return [len(s) for s in chunk]

    assert batching.run_batched(items, work, 4, cost=len, max_tokens=120) == [len(s) for s in items]
    _check_caps(seen, 4, 120)
    assert sorted(s for chunk in seen for s in chunk) == sorted(items)
    # longest first, and no batch mixes the long items (37-60) with the short ones (2-6)
    assert seen[0][0] == "x" * 60
    assert all(max(map(len, c)) < 10 or min(map(len, c)) > 30 for c in seen)
    # without a budget: consecutive runs of batch_size, as before
    seen.clear()
    batching.run_batched(items, work, 4, cost=len)
    assert [len(c) for c in seen] == [4, 4, 4, 2]


def test_plan_batches_stays_within_both_caps() -> None:
    costs = sorted(
        [97, 90, 88, 71, 70, 70, 64, 33, 30, 24, 20, 19, 17, 15, 12, 12, 11, 9, 9, 8], reverse=True
    )
    for batch_size, max_tokens in ((64, 2048), (4, 2048), (64, 150), (3, 60), (64, 1)):
        plan = batching.plan_batches(costs, batch_size, max_tokens)
        assert sum(plan) == len(costs)
        start = 0
        for k in plan:
            assert 1 <= k <= batch_size
            assert k == 1 or k * costs[start] <= max_tokens
            start += k


def test_run_batched_token_budget_halves_on_oom() -> None:
    items = [("x" * n) for n in (30, 31, 29, 8, 9, 7, 30, 6)]
    seen: list[list[str]] = []

    def work(chunk: list[str]) -> list[str]:
        if len(chunk) * max(len(s) for s in chunk) > 64:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 1 GiB")
        seen.append(chunk)
        return [s.upper() for s in chunk]

    assert batching.run_batched(items, work, 8, cost=len, max_tokens=256) == [s.upper() for s in items]
    _check_caps(seen, 8, 64)
