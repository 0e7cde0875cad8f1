"""The official per-process output CSVs: merged shards as ``<name>_0.csv``, or one file per process.

The official scorer (official-scoring.md 2.1, 2.7) writes each split's rows with ``DataFrame.to_csv``
from every process as ``<name>_<process_index>.csv``; the harness merges the shards into one
``<name>_0.csv`` in file order unless the multi-process quirk is asked for. Every file is atomic.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from harness.files import write_atomic
from harness.inference import distributed


def write_csv(frame: pd.DataFrame, path: Path) -> None:
    """``frame.to_csv(path, index=False)``, atomically."""
    write_atomic(path, lambda tmp: frame.to_csv(tmp, index=False))


def cut_like(values: Sequence, parts) -> list[list]:
    """``values`` (the parts' results, concatenated in order) cut back into one list per part."""
    out, start = [], 0
    for part in parts:
        out.append(list(values[start : start + len(part)]))
        start += len(part)
    return out


def merge_write(
    records: list[dict], columns: list[str], folder: Path, name: str, world: distributed.World, quirk: bool
) -> list[Path]:
    """Write ``<name>_0.csv`` (all shards merged in file order) or, with the quirk, one file per rank."""
    parts = distributed.gather(records, world)
    if not world.main:
        return []
    if quirk:  # the official multi-process run: each process writes <split>_<process_index>.csv
        paths = [folder / f"{name}_{rank}.csv" for rank in range(world.size)]
        for part, path in zip(parts, paths):
            write_csv(pd.DataFrame(part, columns=columns), path)
        return paths
    path = folder / f"{name}_0.csv"
    write_csv(pd.DataFrame([r for part in parts for r in part], columns=columns), path)
    return [path]
