"""Data parallelism over processes started by torchrun or accelerate (WORLD_SIZE > 1).

Each process takes a contiguous shard of every list (accelerate's split_between_processes split) and rank
0 gathers the shards back in rank order, which is file order. With ``quirk=True`` the shards are padded as
the official multi-process run pads them (official-scoring.md 2.12): each shard is filled up to
floor(n / P) + 1 rows by repeating its last row, and the duplicates are kept.
"""

from __future__ import annotations

import atexit
import os
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import TypeVar

import torch
import torch.distributed as dist

T = TypeVar("T")


@dataclass(frozen=True)
class World:
    """This process's rank and the number of processes (1 when not launched data-parallel)."""

    rank: int
    size: int

    @property
    def main(self) -> bool:
        return self.rank == 0


def init_world(device: torch.device) -> World:
    """Join the process group when launched with WORLD_SIZE > 1 (gloo on CPU, nccl on CUDA)."""
    size = int(os.environ.get("WORLD_SIZE", "1"))
    if size <= 1:
        return World(0, 1)
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
        atexit.register(_leave)
    return World(dist.get_rank(), dist.get_world_size())


def _leave() -> None:
    """At exit, leave the process group together: a rank that exits while gloo's threads still serve its
    peer can end in std::terminate (SIGABRT), which torchrun reports as a failed run."""
    if not dist.is_initialized():
        return
    try:
        if dist.get_backend() == "gloo":
            dist.monitored_barrier(timeout=timedelta(seconds=120))
        else:
            dist.barrier()
    except RuntimeError:  # a peer is gone: nothing left to wait for
        pass
    finally:
        dist.destroy_process_group()


def shard(items: Sequence[T], world: World, quirk: bool = False) -> list[T]:
    """This rank's contiguous share of ``items`` (padded like the official run when ``quirk``)."""
    if world.size == 1:
        return list(items)
    per, extra = divmod(len(items), world.size)
    start = world.rank * per + min(world.rank, extra)
    end = start + per + (1 if world.rank < extra else 0)
    if not quirk:
        return list(items[start:end])
    # accelerate 1.0.0 split_between_processes(apply_padding=True) on a datasets.Dataset
    start = min(start, len(items) - 1)
    end = min(end, len(items))
    indices = list(range(start, end))
    indices += [end - 1] * (per + 1 - len(indices))
    return [items[i] for i in indices]


def gather(part: list[T], world: World) -> list[list[T]] | None:
    """Every rank's part, in rank order, on rank 0 (None elsewhere)."""
    if world.size == 1:
        return [part]
    parts: list[list[T]] | None = [None] * world.size if world.main else None  # type: ignore[list-item]
    dist.gather_object(part, parts, dst=0)
    return parts


def broadcast(value: T, world: World) -> T:
    """Rank 0's ``value`` on every rank."""
    if world.size == 1:
        return value
    box = [value]
    dist.broadcast_object_list(box, src=0)
    return box[0]
