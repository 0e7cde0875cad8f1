"""harness.inference.distributed: contiguous shards and the official multi-process padding quirk."""

from __future__ import annotations

from harness.inference import distributed


def test_shards_are_contiguous_and_the_quirk_pads_like_accelerate() -> None:
    items = list(range(10))
    plain = [distributed.shard(items, distributed.World(r, 3)) for r in range(3)]
    assert plain == [[0, 1, 2, 3], [4, 5, 6], [7, 8, 9]]
    quirk = [distributed.shard(items, distributed.World(r, 3), quirk=True) for r in range(3)]
    # floor(10/3) + 1 = 4 rows each, the last row repeated
    assert quirk == [[0, 1, 2, 3], [4, 5, 6, 6], [7, 8, 9, 9]]
    # even when P divides n, every shard gets one duplicate (official-scoring.md 2.12)
    assert [distributed.shard([0, 1, 2, 3], distributed.World(r, 2), quirk=True) for r in range(2)] == [
        [0, 1, 1],
        [2, 3, 3],
    ]
