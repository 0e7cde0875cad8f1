"""Reading and writing task data: forget/retain rows, MIA documents, MMLU CSV folders.

Owns the on-disk layouts the official pipeline uses (official-scoring.md sections 2.1, 3, 4, 5) and
their validation: every problem a user can cause ends in one `DataError` line naming the file, the
line and the problem. The MMLU CSVs are read through `tasks.pandas_csv`, the emulation of
``pandas.read_csv`` that the MMLU prompts (section 4) and the official CSV round trip (2.4) depend on.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from tasks.errors import DataError
from tasks.mmlu_categories import CATEGORIES, SUBCATEGORIES
from tasks.pandas_csv import read_csv_like_pandas

__all__ = [
    "MMLU_CATEGORIES",
    "MiaDoc",
    "MmluCategories",
    "MmluItem",
    "MmluSubject",
    "Row",
    "id_kind",
    "read_mia",
    "read_mmlu",
    "read_rows",
    "read_split",
    "unscored_ids",
    "write_split",
]

ROW_FIELDS = ("id", "input", "output", "task")
T = TypeVar("T")
MMLU_ANSWERS = frozenset("ABCD")


# --------------------------------------------------------------------------------------------
# forget / retain rows


def id_kind(row_id: str) -> str | None:
    """The official kind of a row: drop the id's last character, then test the suffix (section 2.5)."""
    stem = row_id[:-1]
    if stem.endswith("sc"):
        return "sc"
    if stem.endswith("qa"):
        return "qa"
    return None


@dataclass(frozen=True)
class Row:
    """One forget/retain row. ``kind`` is "sc" (sentence completion), "qa" or None (not scored)."""

    id: str
    input: str
    output: str
    task: str
    split: str | None = None

    @property
    def kind(self) -> str | None:
        return id_kind(self.id)

    def to_json(self) -> dict[str, str]:
        out = {"id": self.id, "input": self.input, "output": self.output, "task": self.task}
        if self.split is not None:
            out["split"] = self.split
        return out


def unscored_ids(rows: Iterable[Row]) -> list[str]:
    """Ids whose kind is neither sc nor qa: the official scorer silently ignores them; we report them."""
    return [row.id for row in rows if row.kind is None]


def _row_from_record(record: object, path: Path, line: int) -> Row:
    if not isinstance(record, dict):
        raise DataError(path, f"expected a JSON object, got {type(record).__name__}", line)
    values: dict[str, str] = {}
    for name in ROW_FIELDS:
        if name not in record:
            raise DataError(path, f"missing field {name!r}", line)
        value = record[name]
        if not isinstance(value, str):
            raise DataError(path, f"field {name!r} must be a string, got {_json_type(value)}", line)
        values[name] = value
    if values["id"] == "":
        raise DataError(path, "field 'id' is empty", line)
    split = record.get("split")
    if split is not None and not isinstance(split, str):
        raise DataError(path, f"field 'split' must be a string, got {_json_type(split)}", line)
    return Row(split=split, **values)


def _json_type(value: object) -> str:
    names = {bool: "a boolean", int: "a number", float: "a number", list: "a list", dict: "an object"}
    return "null" if value is None else names.get(type(value), type(value).__name__)


def _iter_jsonl(path: Path) -> Iterable[tuple[int, object]]:
    """(line number, parsed value) for each non-blank line; DataError on undecodable or non-JSON lines."""
    try:
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as exc:
        raise DataError(path, f"not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    except OSError as exc:
        raise DataError(path, f"cannot read: {exc.strerror or exc}") from None
    seen_any = False
    for number, line in enumerate(text.split("\n"), start=1):
        if not line.strip():
            continue
        seen_any = True
        try:
            yield number, json.loads(line)
        except json.JSONDecodeError as exc:
            raise DataError(path, f"not valid JSON ({exc.msg}, column {exc.colno})", number) from None
    if not seen_any:
        raise DataError(path, "empty file (no rows)")


def _read_parquet_records(path: Path) -> list[dict[str, object]]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        table = pq.read_table(path)
    except (OSError, pa.ArrowException) as exc:
        raise DataError(path, f"not a readable parquet file ({str(exc).splitlines()[0]})") from None
    if table.num_rows == 0:
        raise DataError(path, "empty file (no rows)")
    return table.to_pylist()


def first(items: list[T], limit: int | None) -> list[T]:
    """The first `limit` of `items` (all of them for None): a partial evaluation's share (``--limit``) of
    a file that was read and validated whole."""
    return items if limit is None else items[:limit]


def read_rows(path: str | os.PathLike[str], *, limit: int | None = None) -> list[Row]:
    """Rows of one .jsonl or .parquet file (fields id, input, output, task; optional split), validated.

    Parquet rows are numbered like lines (row 1 = line 1). Duplicate ids are an error. `limit` keeps the
    first rows only (the whole file is still validated).
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(path, "no such file")
    if path.suffix == ".parquet":
        numbered: Iterable[tuple[int, object]] = enumerate(_read_parquet_records(path), start=1)
    elif path.suffix in (".jsonl", ".json"):
        numbered = _iter_jsonl(path)
    else:
        raise DataError(path, "unknown file type (expected .jsonl or .parquet)")
    rows: list[Row] = []
    first_line: dict[str, int] = {}
    for line, record in numbered:
        row = _row_from_record(record, path, line)
        if row.id in first_line:
            raise DataError(path, f"duplicate id {row.id!r} (first on line {first_line[row.id]})", line)
        first_line[row.id] = line
        rows.append(row)
    return first(rows, limit)


def _split_files(directory: Path, name: str) -> list[Path]:
    """The files that make up split `name` in `directory`, in reading order (see `read_split`)."""
    for suffix in (".jsonl", ".parquet"):
        if (directory / f"{name}{suffix}").is_file():
            return [directory / f"{name}{suffix}"]
    for hub in (directory / "data", directory):
        shards = sorted(hub.glob(f"{name}-*-of-*.parquet")) or sorted(hub.glob(f"{name}_*-*-of-*.parquet"))
        if shards:
            return shards
    folders = [directory / sub / f"{name}.jsonl" for sub in ("train", "validation")]
    return [path for path in folders if path.is_file()]


def read_split(directory: str | os.PathLike[str], name: str) -> list[Row]:
    """The rows of split `name` ("forget", "retain", or a hub split such as "forget_train") in `directory`.

    Looked up in this order: ``<name>.jsonl``, ``<name>.parquet``; the hub layout
    ``[data/]<name>-*-of-*.parquet``, else every ``[data/]<name>_<part>-*-of-*.parquet`` (for "forget":
    forget_train then forget_validation); the jsonl folders ``train/<name>.jsonl`` then
    ``validation/<name>.jsonl``. Several files are concatenated; an id may not repeat across them.
    """
    directory = Path(directory)
    if not directory.is_dir():
        raise DataError(directory, "no such directory")
    files = _split_files(directory, name)
    if not files:
        raise DataError(
            directory,
            f"no {name} data (looked for {name}.jsonl, {name}.parquet, data/{name}_*.parquet, "
            f"train/{name}.jsonl, validation/{name}.jsonl)",
        )
    rows: list[Row] = []
    origin: dict[str, Path] = {}
    for path in files:
        for row in read_rows(path):
            if row.id in origin:
                raise DataError(path, f"duplicate id {row.id!r} (also in {origin[row.id]})")
            origin[row.id] = path
            rows.append(row)
    return rows


def _write_all_atomically(writers: dict[Path, Callable[[Path], None]]) -> None:
    """Write every file to a temporary path beside it, then rename them all into place.

    Nothing is renamed unless every file was written, so a failure leaves the old files as they were.
    """
    temps: dict[Path, Path] = {}
    try:
        for path, write in writers.items():
            path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
            os.close(fd)
            temps[path] = Path(tmp)
            write(temps[path])
        for path, tmp in temps.items():
            os.replace(tmp, path)
    finally:
        for tmp in temps.values():
            tmp.unlink(missing_ok=True)


def write_split(rows: Sequence[Row], directory: str | os.PathLike[str], name: str) -> None:
    """Write `rows` as ``<name>.jsonl`` and ``<name>.parquet`` in `directory` (both, or neither)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    directory = Path(directory)
    records = [row.to_json() for row in rows]

    def write_jsonl(tmp: Path) -> None:
        with tmp.open("w", encoding="utf-8") as handle:
            for record in records:
                handle.write(json.dumps(record, ensure_ascii=False) + "\n")

    def write_parquet(tmp: Path) -> None:
        columns = {field: pa.array([getattr(r, field) for r in rows], pa.string()) for field in ROW_FIELDS}
        if any(row.split is not None for row in rows):
            columns["split"] = pa.array([row.split for row in rows], pa.string())
        pq.write_table(pa.table(columns), tmp)

    _write_all_atomically(
        {directory / f"{name}.jsonl": write_jsonl, directory / f"{name}.parquet": write_parquet}
    )


# --------------------------------------------------------------------------------------------
# MIA documents


@dataclass(frozen=True)
class MiaDoc:
    """One membership-inference document (only id and document are read, as in the official script)."""

    id: str
    document: str


def read_mia(path: str | os.PathLike[str], *, limit: int | None = None) -> list[MiaDoc]:
    """Documents of member.jsonl / nonmember.jsonl: `id` and `document` strings required, rest ignored;
    `limit` keeps the first documents only (the whole file is still validated)."""
    path = Path(path)
    if not path.is_file():
        raise DataError(path, "no such file")
    docs: list[MiaDoc] = []
    first_line: dict[str, int] = {}
    for line, record in _iter_jsonl(path):
        if not isinstance(record, dict):
            raise DataError(path, f"expected a JSON object, got {_json_type(record)}", line)
        for name in ("id", "document"):
            if name not in record:
                raise DataError(path, f"missing field {name!r}", line)
            if not isinstance(record[name], str):
                raise DataError(
                    path, f"field {name!r} must be a string, got {_json_type(record[name])}", line
                )
        if record["id"] in first_line:
            raise DataError(
                path, f"duplicate id {record['id']!r} (first on line {first_line[record['id']]})", line
            )
        first_line[record["id"]] = line
        docs.append(MiaDoc(id=record["id"], document=record["document"]))
    return first(docs, limit)


# --------------------------------------------------------------------------------------------
# MMLU


@dataclass(frozen=True)
class MmluItem:
    """One MMLU question; each cell is what ``str()`` of the pandas cell gives (a 'None' cell is 'nan')."""

    question: str
    a: str
    b: str
    c: str
    d: str
    answer: str

    @property
    def choices(self) -> tuple[str, str, str, str]:
        return (self.a, self.b, self.c, self.d)


@dataclass(frozen=True)
class MmluSubject:
    """One MMLU subject: its dev items (the shots, in file order) and test items."""

    name: str
    dev: list[MmluItem]
    test: list[MmluItem]


@dataclass(frozen=True)
class MmluCategories:
    """open-instruct's MMLU grouping: subject -> subcategories, category -> subcategories, in its order."""

    subcategories: dict[str, tuple[str, ...]]
    categories: dict[str, tuple[str, ...]]

    def subcategory_order(self) -> list[str]:
        """Subcategories in order of first appearance walking the subjects (metrics.json subcat_acc)."""
        return list(dict.fromkeys(s for subs in self.subcategories.values() for s in subs))


MMLU_CATEGORIES = MmluCategories(subcategories=SUBCATEGORIES, categories=CATEGORIES)


def _read_mmlu_csv(path: Path) -> list[MmluItem]:
    table = read_csv_like_pandas(path, header=False, columns=6)
    items: list[MmluItem] = []
    for line, cells in zip(table.lines, table.rows()):
        texts = [str(cell) for cell in cells]
        if texts[5] not in MMLU_ANSWERS:
            raise DataError(path, f"answer must be one of A, B, C, D, got {texts[5]!r}", line)
        items.append(MmluItem(*texts))
    return items


def read_mmlu(
    folder: str | os.PathLike[str], subjects: Sequence[str] | None = None, *, limit: int | None = None
) -> list[MmluSubject]:
    """The MMLU subjects of `folder` (``dev/<s>_dev.csv``, ``test/<s>_test.csv``), sorted by name.

    `subjects` None means every ``test/*_test.csv`` (open-instruct's choice). `limit` keeps the first
    test questions of each subject (the dev split, the shots, stays whole).
    """
    folder = Path(folder)
    if not (folder / "test").is_dir():
        raise DataError(folder, "not an MMLU folder (no test/ subfolder)")
    found = sorted(p.name[: -len("_test.csv")] for p in (folder / "test").glob("*_test.csv"))
    if subjects is None:
        names = found
        if not names:
            raise DataError(folder / "test", "no <subject>_test.csv files")
    else:
        names = sorted(subjects)
        unknown = [s for s in names if s not in found]
        if unknown:
            raise DataError(folder / "test", f"no test file for subject(s) {', '.join(unknown)}")
    out: list[MmluSubject] = []
    for name in names:
        dev_path = folder / "dev" / f"{name}_dev.csv"
        if not dev_path.is_file():
            raise DataError(dev_path, "no such file (the dev split gives the few-shot examples)")
        test = _read_mmlu_csv(folder / "test" / f"{name}_test.csv")
        out.append(MmluSubject(name=name, dev=_read_mmlu_csv(dev_path), test=first(test, limit)))
    return out
