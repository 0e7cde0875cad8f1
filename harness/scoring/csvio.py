"""The files of an official scorer output directory: reading generations and MIA losses, writing results.

Layout (official-scoring.md sections 2.1-2.4, 2.7): ``forget_<process>.csv`` and ``retain_<process>.csv``
(columns id, task, input, expected_output, model_output, nll) and ``mia_results/member_<process>.csv``,
``mia_results/nonmember_<process>.csv`` (columns id, nll). Each file goes through the pandas
``read_csv`` emulation of `tasks.data` (section 2.4: NA-like generations become NaN, then "nan"; a
column that is all numbers becomes numbers), and the per-process files of one split are joined like
``pd.concat`` (numpy's common column type). Everything written here is written atomically.
"""

from __future__ import annotations

import csv
import io
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from harness.errors import HarnessError
from harness.files import write_text_atomic
from tasks.errors import DataError
from tasks.pandas_csv import Cell, concat_kinds, read_csv_like_pandas

__all__ = [
    "GenerationRow",
    "RowScore",
    "read_generations",
    "read_mia_losses",
    "split_files",
    "write_row_scores",
    "write_text_atomic",
]

GENERATION_COLUMNS = ("id", "task", "expected_output", "model_output")
_PROCESS = re.compile(r"_(\d+)\.csv$")


@dataclass(frozen=True)
class GenerationRow:
    """One row of a split after the CSV round trip; `expected` and `generated` are ``str()`` of the cells.

    `task` is the pandas cell (text, or NaN when the cell was empty: such rows join no task group).
    """

    id: str
    task: Cell
    expected: str
    generated: str
    file: Path
    line: int


@dataclass(frozen=True)
class RowScore:
    """One scored row for row_scores.csv (the leaderboard's bootstrap resamples these)."""

    split: str
    task: str
    kind: str
    id: str
    score: float


def split_files(directory: Path, prefix: str) -> list[Path]:
    """``<prefix>_*.csv`` in `directory` (the official glob), ordered by process index, then by name.

    The official script takes the glob's file-system order; with one process there is one file.
    """
    files = [p for p in directory.glob(f"{prefix}_*.csv") if p.is_file()]

    def order(path: Path) -> tuple[int, int, str]:
        match = _PROCESS.search(path.name)
        return (0, int(match.group(1)), path.name) if match else (1, 0, path.name)

    return sorted(files, key=order)


def _columns(
    paths: Sequence[Path], names: Sequence[str]
) -> tuple[dict[str, list[Cell]], list[tuple[Path, int]]]:
    """The named columns of several CSVs joined like ``pd.concat``, and each row's (file, line)."""
    per_file = []
    for path in paths:
        table = read_csv_like_pandas(path, header=True)
        header = table.header or []
        missing = [name for name in names if name not in header]
        if missing:
            raise DataError(path, f"missing column(s) {', '.join(missing)} (header: {', '.join(header)})", 1)
        per_file.append((path, table, {name: header.index(name) for name in names}))
    joined: dict[str, list[Cell]] = {}
    for name in names:
        kind = concat_kinds([table.kinds[index[name]] for _, table, index in per_file])
        values: list[Cell] = []
        for _, table, index in per_file:
            column = table.columns[index[name]]
            values.extend([float(v) for v in column] if kind == "float64" else column)
        joined[name] = values
    origin = [(path, line) for path, table, _ in per_file for line in table.lines]
    return joined, origin


def read_generations(directory: Path, split: str) -> list[GenerationRow]:
    """The rows of ``<split>_*.csv`` in `directory`, as the official ``compute_metrics`` sees them."""
    paths = split_files(directory, split)
    if not paths:
        raise HarnessError(
            f"{directory}: no {split}_*.csv generations (the official scorer stops: 'Missing inference files')"
        )
    columns, origin = _columns(paths, GENERATION_COLUMNS)
    rows = []
    for position, (path, line) in enumerate(origin):
        row_id = columns["id"][position]
        if not isinstance(row_id, str):
            problem = (
                "empty id"
                if isinstance(row_id, float) and math.isnan(row_id)
                else f"id {row_id!r} is not text"
            )
            raise DataError(path, f"{problem} (the official scorer fails on it: it slices the id)", line)
        rows.append(
            GenerationRow(
                id=row_id,
                task=columns["task"][position],
                expected=str(columns["expected_output"][position]),
                generated=str(columns["model_output"][position]),
                file=path,
                line=line,
            )
        )
    return rows


def _losses(paths: Sequence[Path]) -> list[float]:
    columns, origin = _columns(paths, ("nll",))
    losses = []
    for value, (path, line) in zip(columns["nll"], origin):
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise DataError(path, f"nll {value!r} is not a number", line)
        if math.isnan(value):
            raise DataError(path, "nll is NaN (the official scorer stops with an AssertionError)", line)
        losses.append(float(value))
    return losses


def read_mia_losses(directory: Path) -> tuple[list[float], list[float]] | None:
    """Member and non-member losses from ``mia_results/``; None when there are no MIA files at all."""
    folder = directory / "mia_results"
    member, nonmember = split_files(folder, "member"), split_files(folder, "nonmember")
    if not member and not nonmember:
        return None
    if not member or not nonmember:
        absent = "member" if not member else "nonmember"
        raise HarnessError(f"{folder}: no {absent}_*.csv (the official scorer stops: 'Missing mia files')")
    losses = _losses(member), _losses(nonmember)
    for name, values in zip(("member", "nonmember"), losses):
        if not values:
            raise HarnessError(f"{folder}: the {name}_*.csv files have no rows")
    return losses


def write_row_scores(path: Path, rows: Sequence[RowScore]) -> None:
    """row_scores.csv: split, task, kind, id, score (repr of the float: exact) in file order."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["split", "task", "kind", "id", "score"])
    writer.writerows([row.split, row.task, row.kind, row.id, repr(float(row.score))] for row in rows)
    write_text_atomic(path, buffer.getvalue())
