"""Reading and writing task data: forget/retain rows, MIA documents, MMLU CSV folders.

Owns the on-disk layouts the official pipeline uses (official-scoring.md sections 2.1, 3, 4, 5) and
their validation: every problem a user can cause ends in one `DataError` line naming the file, the
line and the problem. Also owns `read_csv_like_pandas`, the explicit emulation of
``pandas.read_csv`` (default NA values, per-column dtype inference, ``str()`` of the cells) that both
the MMLU prompts (section 4) and the official scorer's CSV round trip (section 2.4) depend on.
"""

from __future__ import annotations

import csv
import json
import math
import os
import re
import tempfile
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from tasks.errors import DataError
from tasks.mmlu_categories import CATEGORIES, SUBCATEGORIES

__all__ = [
    "Cell",
    "CsvTable",
    "MMLU_CATEGORIES",
    "MiaDoc",
    "MmluCategories",
    "MmluItem",
    "MmluSubject",
    "PANDAS_NA_VALUES",
    "concat_kinds",
    "Row",
    "id_kind",
    "read_csv_like_pandas",
    "read_mia",
    "read_mmlu",
    "read_rows",
    "read_split",
    "unscored_ids",
    "write_split",
]

SPLIT_NAMES = ("forget", "retain")
ROW_FIELDS = ("id", "input", "output", "task")
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


def read_rows(path: str | os.PathLike[str]) -> list[Row]:
    """Rows of one .jsonl or .parquet file (fields id, input, output, task; optional split), validated.

    Parquet rows are numbered like lines (row 1 = line 1). Duplicate ids are an error.
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
    return rows


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


def read_mia(path: str | os.PathLike[str]) -> list[MiaDoc]:
    """Documents of member.jsonl / nonmember.jsonl: `id` and `document` strings required, rest ignored."""
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
    return docs


# --------------------------------------------------------------------------------------------
# The pandas.read_csv emulation (official-scoring.md sections 2.4 and 4)

#: pandas' default NA strings (``pandas._libs.parsers.STR_NA_VALUES``, pandas 2.2 and 3.x). A cell whose
#: whole text is one of these is read as NaN, whether or not it was quoted.
PANDAS_NA_VALUES = frozenset(
    {
        "", "#N/A", "#N/A N/A", "#NA", "-1.#IND", "-1.#QNAN", "-NaN", "-nan", "1.#IND", "1.#QNAN",
        "<NA>", "N/A", "NA", "NULL", "NaN", "None", "n/a", "nan", "null",
    }
)  # fmt: skip

# The C parser's number syntax: ASCII digits, C isspace() around, no thousands separator.
_SPACE = " \t\n\v\f\r"
_DIGITS = "0123456789"
_INT = re.compile(r"[ \t\n\v\f\r]*([+-]?)([0-9]+)[ \t\n\v\f\r]*")
_DIGIT_PREFIX = re.compile(r"[ \t\n\v\f\r]*([+-]?)([0-9]+)")
_INF = {"inf": math.inf, "+inf": math.inf, "-inf": -math.inf}
_INF.update({"infinity": math.inf, "+infinity": math.inf, "-infinity": -math.inf})
_TRUE, _FALSE = frozenset({"True", "TRUE", "true"}), frozenset({"False", "FALSE", "false"})
_INT64_MIN, _INT64_MAX, _UINT64_MAX = -(2**63), 2**63 - 1, 2**64 - 1
_NAN = float("nan")
_POW10 = [float(f"1e{i}") for i in range(309)]

#: one pandas cell after inference: text, a number, a bool, or NaN for NA
Cell = str | int | float | bool


def _xstrtod(text: str) -> float | None:
    """pandas 2.2's ``precise_xstrtod`` (the default float converter of the C parser), step for step.

    Up to 17 digits are accumulated in a double (leading zeros count), then scaled by one
    power of ten; the result is not always the correctly rounded value (e.g. "10E31" is
    9.999999999999999e+31, "0.30000000000000004" is 0.3). Returns None where pandas rejects the text.
    """
    p, n, max_digits = 0, len(text), 17
    while p < n and text[p] in _SPACE:
        p += 1
    negative = p < n and text[p] == "-"
    if p < n and text[p] in "+-":
        p += 1
    number, exponent, num_digits = 0.0, 0, 0
    while p < n and text[p] in _DIGITS:
        if num_digits < max_digits:
            number = number * 10.0 + (ord(text[p]) - 48)
            num_digits += 1
        else:
            exponent += 1
        p += 1
    if p < n and text[p] == ".":
        p += 1
        decimals = 0
        while num_digits < max_digits and p < n and text[p] in _DIGITS:
            number = number * 10.0 + (ord(text[p]) - 48)
            num_digits += 1
            decimals += 1
            p += 1
        while p < n and text[p] in _DIGITS:
            p += 1
        exponent -= decimals
    if num_digits == 0:
        return None
    if negative:
        number = -number
    if p < n and text[p] in "eE":
        q = p + 1
        exp_negative = q < n and text[q] == "-"
        if q < n and text[q] in "+-":
            q += 1
        value, exp_digits = 0, 0
        while exp_digits < max_digits and q < n and text[q] in _DIGITS:
            value = value * 10 + (ord(text[q]) - 48)
            exp_digits += 1
            q += 1
        if exp_digits:
            exponent += -value if exp_negative else value
            p = q
    if exponent > 308:
        return None  # ERANGE: the cell is not a number for pandas 2.2
    if exponent > 0:
        number *= _POW10[exponent]
    elif exponent < -616:
        number = 0.0
    elif exponent < -308:
        number = number / _POW10[-308 - exponent] / _POW10[308]
    else:
        number /= _POW10[-exponent]
    if math.isinf(number):
        return None
    while p < n and text[p] in _SPACE:
        p += 1
    return number if p == n else None


def _parse_float(text: str) -> float | None:
    value = _xstrtod(text)
    if value is None:
        value = _INF.get(text.strip(_SPACE).lower())
    return value


def _int_pass(raw: Sequence[str], na: Sequence[bool]) -> str:
    """pandas' int64 attempt, cell by cell: "ok", "invalid" (a non-integer first) or "overflow"
    (an integer digit run beyond int64 first, even one followed by other text such as ".5")."""
    for cell, missing in zip(raw, na):
        if missing:
            continue
        match = _DIGIT_PREFIX.match(cell)
        if match is None:
            return "invalid"
        if not _INT64_MIN <= int(match.group(1) + match.group(2)) <= _INT64_MAX:
            return "overflow"
        if match.end() != len(cell) and cell[match.end() :].strip(_SPACE):
            return "invalid"
    return "ok"


def _uint_pass(raw: Sequence[str], na: Sequence[bool]) -> str:
    """pandas' uint64 attempt after an int64 overflow: "ok", "invalid", "overflow" or "conflict"."""
    seen_uint = seen_sint = seen_null = False
    for cell, missing in zip(raw, na):
        if missing:
            seen_null = True
            continue
        if cell.lstrip(_SPACE).startswith("-"):  # pandas stops reading a cell at its minus sign
            seen_sint = True
            continue
        match = _DIGIT_PREFIX.match(cell)
        if match is None:
            return "invalid"
        if int(match.group(2)) > _UINT64_MAX:
            return "overflow"
        if match.end() != len(cell) and cell[match.end() :].strip(_SPACE):
            return "invalid"
        seen_uint = seen_uint or int(match.group(2)) > _INT64_MAX
    if seen_uint and (seen_sint or seen_null):
        return "conflict"
    return "overflow" if seen_sint else "ok"


def _infer_column(raw: Sequence[str]) -> tuple[str, list[Cell]]:
    """Infer one column chunk like pandas 2.2's C parser: int64, uint64, float64, bool, else object.

    Returns the numpy-like kind ("int64", "uint64", "float64", "bool", "object") and the values.
    The order is pandas': an int64 pass (ints with an NA become float64), on overflow a uint64 pass
    (its NA/sign conflict keeps the raw text, NA strings included), else float64 (`_xstrtod`), bool,
    object. pandas 3 differs from 2.2 in some of these corners; 2.2.3 is what the organisers ran.
    """
    na = [cell in PANDAS_NA_VALUES for cell in raw]
    if not all(na):
        state = _int_pass(raw, na)
        if state == "ok":
            ints = [None if missing else int(cell.strip(_SPACE)) for cell, missing in zip(raw, na)]
            if any(na):
                return "float64", [_NAN if i is None else float(i) for i in ints]
            return "int64", ints
        if state == "overflow":
            state = _uint_pass(raw, na)
            if state == "ok":
                return "uint64", [int(cell.strip(_SPACE)) for cell in raw]
            if state == "conflict":
                return "object", list(raw)
            if state == "overflow":  # integers beyond 64 bits: the column stays text
                return "object", [_NAN if missing else cell for cell, missing in zip(raw, na)]
    floats = [_NAN if missing else _parse_float(cell) for cell, missing in zip(raw, na)]
    if all(f is not None for f in floats):
        return "float64", floats
    if all(missing or cell in _TRUE or cell in _FALSE for cell, missing in zip(raw, na)):
        bools: list[Cell] = [_NAN if missing else cell in _TRUE for cell, missing in zip(raw, na)]
        return ("object" if any(na) else "bool"), bools
    return "object", [_NAN if missing else cell for cell, missing in zip(raw, na)]


def concat_kinds(kinds: Sequence[str]) -> str:
    """numpy's common type of column kinds: how pandas joins low_memory chunks, and how ``pd.concat``
    joins the per-process files of one split (ints joined with floats become floats)."""
    unique = set(kinds)
    if len(unique) == 1:
        return kinds[0]
    if unique <= {"int64", "uint64", "float64"}:
        return "float64"
    return "object"


def _low_memory_rows(width: int) -> int:
    """Rows per chunk of pandas' default low_memory reader: the largest 2**k with 2**(k+1) < 2**20 // width."""
    heuristic = 2**20 // max(width, 1)
    rows = 1
    while rows * 2 < heuristic:
        rows *= 2
    return rows


@dataclass(frozen=True)
class CsvTable:
    """A CSV read like pandas: `header` (None without one), `columns` of values, each column's numpy
    kind ("int64", "uint64", "float64", "bool" or "object") and the line each data row starts on."""

    header: list[str] | None
    columns: list[list[Cell]]
    kinds: list[str]
    lines: list[int]

    def rows(self) -> Iterable[tuple[Cell, ...]]:
        return zip(*self.columns)


def _csv_records(path: Path) -> list[tuple[int, list[str]]]:
    """(starting line, fields) of each non-blank CSV record."""
    csv.field_size_limit(max(csv.field_size_limit(), 2**31 - 1))  # pandas has no per-field limit
    try:
        with path.open(encoding="utf-8-sig", newline="") as handle:
            reader = csv.reader(handle, strict=True)
            records: list[tuple[int, list[str]]] = []
            start = 1
            for fields in reader:
                if fields:
                    records.append((start, fields))
                start = reader.line_num + 1
    except UnicodeDecodeError as exc:
        raise DataError(path, f"not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    except csv.Error as exc:
        raise DataError(path, f"not valid CSV ({exc})", reader.line_num) from None
    except OSError as exc:
        raise DataError(path, f"cannot read: {exc.strerror or exc}") from None
    return records


def read_csv_like_pandas(
    path: str | os.PathLike[str], *, header: bool, columns: int | None = None
) -> CsvTable:
    """Read a CSV as ``pandas.read_csv(path)`` (or with ``header=None``) does with default options.

    A cell whose whole text is a pandas NA string is ``nan``; a column whose every cell is a number
    (or NA) becomes ints or floats (ints with an NA become floats: "7" -> 7.0); an all-True/False
    column becomes bools; each is decided per chunk of the default low_memory reader and the chunks
    are joined with numpy's common type. ``str()`` of a value is then what the official code sees.
    Blank lines are skipped and a record with fewer fields than the first is padded with NaN, as in
    pandas; a longer one (or, with `columns`, any other width) is a DataError naming its line.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(path, "no such file")
    records = _csv_records(path)
    if not records:
        raise DataError(path, "empty file (no rows)")
    width = columns if columns is not None else len(records[0][1])
    for index, (line, fields) in enumerate(records):
        if len(fields) > width or (columns is not None and len(fields) != width):
            raise DataError(path, f"expected {width} fields, found {len(fields)}", line)
        if len(fields) < width:  # pandas pads a short record with NaN (a bare "\r" ends a record)
            records[index] = (line, fields + [""] * (width - len(fields)))
    names: list[str] | None = None
    if header:
        names = records[0][1]
        records = records[1:]
    chunk = _low_memory_rows(width)
    out: list[list[Cell]] = []
    kinds: list[str] = []
    for index in range(width):
        raw = [fields[index] for _, fields in records]
        parts = [_infer_column(raw[start : start + chunk]) for start in range(0, len(raw), chunk)]
        kind = concat_kinds([k for k, _ in parts]) if parts else "object"
        values = [v for _, vs in parts for v in vs]
        out.append([float(v) for v in values] if kind == "float64" else values)
        kinds.append(kind)
    return CsvTable(header=names, columns=out, kinds=kinds, lines=[line for line, _ in records])


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


def read_mmlu(folder: str | os.PathLike[str], subjects: Sequence[str] | None = None) -> list[MmluSubject]:
    """The MMLU subjects of `folder` (``dev/<s>_dev.csv``, ``test/<s>_test.csv``), sorted by name.

    `subjects` None means every ``test/*_test.csv`` (open-instruct's choice).
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
        out.append(MmluSubject(name=name, dev=_read_mmlu_csv(dev_path), test=test))
    return out
