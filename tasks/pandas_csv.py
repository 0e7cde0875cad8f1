"""An emulation of pandas 2.2's ``read_csv`` with default options (official-scoring.md 2.4 and 4).

The official scorer writes its generations with ``DataFrame.to_csv`` and reads them back with
``pd.read_csv`` before scoring (section 2.4, "CSV round trip"); the MMLU prompts are built from
``pd.read_csv(..., header=None)`` cells (section 4). That round trip is part of the metric: NA-like
generations become NaN (then the text "nan"), a column that is all numbers becomes numbers, and the
C parser's float converter is not always correctly rounded. This module reproduces those rules
without pandas at run time (tests compare it with pandas itself): default NA strings, per-column
dtype inference per low_memory chunk, numpy's common type when chunks or files are joined.
"""

from __future__ import annotations

import csv
import math
import os
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from tasks.errors import DataError

__all__ = ["Cell", "CsvTable", "PANDAS_NA_VALUES", "concat_kinds", "read_csv_like_pandas"]


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
_DIGIT_PREFIX = re.compile(r"[ \t\n\v\f\r]*([+-]?)([0-9]+)")
_INF = {"inf": math.inf, "+inf": math.inf, "-inf": -math.inf}
_INF.update({"infinity": math.inf, "+infinity": math.inf, "-infinity": -math.inf})
_TRUE, _FALSE = frozenset({"True", "TRUE", "true"}), frozenset({"False", "FALSE", "false"})
_INT64_MIN, _INT64_MAX, _UINT64_MAX = -(2**63), 2**63 - 1, 2**64 - 1
_NAN = float("nan")
_POW10 = [float(f"1e{i}") for i in range(309)]

#: one pandas cell after inference: text, a number, a bool, or NaN for NA
Cell = str | int | float | bool


# Stays whole (64 lines): a step-for-step port of pandas' C function, read side by side with it.
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
