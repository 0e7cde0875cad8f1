"""tasks.pandas_csv.read_csv_like_pandas: NA strings, dtype inference, float parsing, low_memory chunks.

The official scorer reads generations back with ``pandas.read_csv`` (official-scoring.md section 2.4)
under pandas 2.2.3. We emulate that explicitly, so results do not depend on the installed pandas:
- every case of tests/fixtures/scoring/pandas223_cells.json (recorded with pandas 2.2.3, including its
  inexact float parser and overflow paths) must come out the same;
- on the inputs where pandas 2.2 and 3.x agree, the emulation must equal the installed pandas.
"""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

import pandas as pd
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from tasks.pandas_csv import PANDAS_NA_VALUES, read_csv_like_pandas

HEADER = ["id", "task", "input", "expected_output", "model_output", "nll"]


def pandas_cells(path: Path, header: bool) -> list[list[str]]:
    frame = pd.read_csv(path) if header else pd.read_csv(path, header=None)
    return [[str(v) for v in frame[c]] for c in frame.columns]


def ours(path: Path, header: bool) -> list[list[str]]:
    return [[str(v) for v in col] for col in read_csv_like_pandas(path, header=header).columns]


def write_frame(path: Path, columns: dict[str, list[str]]) -> Path:
    pd.DataFrame(columns).to_csv(path, index=False)  # how the official script writes generations
    return path


def test_na_list_is_the_installed_pandas_list() -> None:
    from pandas._libs.parsers import STR_NA_VALUES

    assert PANDAS_NA_VALUES == set(STR_NA_VALUES)


@pytest.mark.parametrize(
    ("cells", "expected"),
    [
        (["7", ""], ["7.0", "nan"]),  # an int column with NA becomes float
        (["007", "1"], ["7", "1"]),  # all ints: leading zeros vanish
        (["9223372036854775807", "-9223372036854775808"], ["9223372036854775807", "-9223372036854775808"]),
        (["1e5", "2"], ["100000.0", "2.0"]),
        (["true", "False"], ["True", "False"]),  # all bools
        (["true", ""], ["True", "nan"]),
        (["true", "1"], ["true", "1"]),  # bool and number: strings kept
        (["None", "N/A", "hello"], ["nan", "nan", "hello"]),
        ([" ", "\n"], [" ", "\n"]),  # whitespace-only generations survive
        (["INF", "-Infinity", "1"], ["inf", "-inf", "1.0"]),
        (["NAN", "1"], ["NAN", "1"]),  # not an NA string and not a number for the C parser
        (["18446744073709551615", "+1"], ["18446744073709551615", "1"]),
        (["18446744073709551615", ""], ["18446744073709551615", ""]),  # uint64 + NA: raw text, even the NA
        (["a\rb", "c"], ["a", "b", "c"]),  # to_csv leaves a bare \r unquoted: it ends the record
        (["1_0", "2"], ["1_0", "2"]),
        (["１２", "3"], ["１２", "3"]),
        ([" 7 ", "\t1"], ["7", "1"]),
        (["", "nan", "NULL"], ["nan", "nan", "nan"]),
    ],
)
def test_hand_cases(tmp_path: Path, cells: list[str], expected: list[str]) -> None:
    path = write_frame(tmp_path / "g.csv", {"a": cells, "b": ["x"] * len(cells)})
    assert ours(path, True)[0] == expected
    assert pandas_cells(path, True)[0] == expected


_DECIMAL = re.compile(r"[ \t]*[+-]?[0-9]*\.?([0-9]*)(?:[eE]([+-]?[0-9]+))?[ \t]*")


def _scaled_exactly(text: str) -> bool:
    """Whether 2.2's parser, if ``text`` is a decimal number, scales its digits by a power of ten a double
    holds exactly (10**0 .. 10**22), so that its one multiplication or division is correctly rounded like
    3.x's parse (any other text: True, the premise does not concern it)."""
    match = _DECIMAL.fullmatch(text)
    return match is None or abs(int(match.group(2) or 0) - len(match.group(1))) <= 22


# Numbers where pandas 2.2 and 3.x agree: integers of at most 15 digits (longer ones next to a float
# go through 2.2's inexact float parser), and decimals of at most 15 digits scaled by at most 10**22
# (both parsers are exact there: `_scaled_exactly`; ".0030E-19" is 30 / 1e23 for 2.2, 3.0000000000000004e-22).
# The rest is pinned by the pandas 2.2.3 corpus.
NUMBERISH = st.one_of(
    st.integers(min_value=-(10**15), max_value=10**15).map(str),
    st.from_regex(r"\A[ \t]?[+-]?[0-9]{0,5}\.?[0-9]{0,5}([eE][+-]?1?[0-9])?[ \t]?\Z").filter(_scaled_exactly),
    st.sampled_from(["inf", "-inf", "Infinity", "+INF", "0x10", "1,000", "007", "-0", "1.", ".5", "."]),
)
CELL = st.one_of(
    st.sampled_from(sorted(PANDAS_NA_VALUES) + [" ", "\n", "True", "false", "TRUE", "None ", "nan\n"]),
    NUMBERISH,
    st.text(alphabet=st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=12),
    st.text(alphabet='ab ,"\n\r\t', max_size=6),
)
# a column is usually of one flavour, so that numeric/bool columns actually occur
COLUMN = st.integers(1, 6).flatmap(
    lambda n: st.one_of(
        st.lists(CELL, min_size=n, max_size=n),
        st.lists(NUMBERISH, min_size=n, max_size=n),
        st.lists(st.sampled_from(["", "True", "false", "nan", "1", "2.5"]), min_size=n, max_size=n),
    )
)


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(columns=st.lists(COLUMN, min_size=1, max_size=3))
def test_matches_pandas_on_generated_frames(tmp_path: Path, columns: list[list[str]]) -> None:
    # Like every scored file, the first column is a plain id: pandas would skip a whitespace-only line
    # of a one-column file, and drops a delimiter that follows a bare "\r" at the start of a record.
    # Known gap (see tasks.data): a record that a bare "\r" splits off and that holds only whitespace is
    # skipped by pandas as a blank line; the emulation keeps it. Generations never look like that.
    assume(not any(re.search(r"\r[ \t]*(,|\n|$)", cell) for col in columns for cell in col))
    # any cell may spell a number (the text strategies too): the comparison holds where 2.2 and 3 agree
    assume(all(_scaled_exactly(cell) for col in columns for cell in col))
    rows = min(len(c) for c in columns)
    frame = {"id": [f"r{i}" for i in range(rows)]} | {f"c{i}": col[:rows] for i, col in enumerate(columns)}
    path = write_frame(tmp_path / "h.csv", frame)
    assert ours(path, True) == pandas_cells(path, True)
    got = read_csv_like_pandas(path, header=True).columns
    want = pd.read_csv(path)
    for ours_col, name in zip(got, want.columns):
        for a, b in zip(ours_col, want[name]):
            assert type(a) is type(b.item() if hasattr(b, "item") else b) or (
                isinstance(a, float) and math.isnan(a)
            )


def test_matches_the_recorded_pandas_223_corpus(tmp_path: Path) -> None:
    corpus = json.loads((Path(__file__).parent / "fixtures" / "scoring" / "pandas223_cells.json").read_text())
    assert corpus["pandas"] == "2.2.3" and len(corpus["cases"]) > 600
    mismatches = []
    for case in corpus["cases"]:  # one column per file: pandas infers each column on its own
        path = write_frame(tmp_path / "one.csv", {"cell": case["cells"], "text": ["x"] * len(case["cells"])})
        got = [str(v) for v in read_csv_like_pandas(path, header=True).columns[0]]
        if got != case["str"]:
            mismatches.append((case["cells"], case["str"], got))
    assert max(len(case["cells"]) for case in corpus["cases"]) == 2000  # the MIA-like nll column
    assert mismatches == []


def test_pandas_22_float_parser_quirks(tmp_path: Path) -> None:
    # pandas 2.2.3 reads these differently from float(); the official numbers came from it (the last two
    # checked with pandas 2.2.3 in the official environment, 4 Dec 2026: digits scaled by 1e23, not exact)
    cells = ["10E31", "0.30000000000000004", "00000000000000000000001.5", ".0030E-19", "3E+23"]
    path = write_frame(tmp_path / "f.csv", {"a": cells})
    assert [repr(v) for v in read_csv_like_pandas(path, header=True).columns[0]] == [
        "9.999999999999999e+31",
        "0.3",
        "0.0",
        "3.0000000000000004e-22",
        "2.9999999999999997e+23",
    ]


@pytest.mark.filterwarnings("ignore::pandas.errors.DtypeWarning")
def test_low_memory_chunks_are_inferred_separately(tmp_path: Path) -> None:
    # 6 columns -> pandas reads 131072 rows per chunk; a numeric first chunk keeps its numbers (str "1")
    # next to the strings of the second chunk, and an int chunk joined with a float chunk becomes float.
    n = 131072
    frame = {name: ["x"] * (n + 2) for name in HEADER}
    frame["model_output"] = ["1"] * n + ["text", "2"]
    frame["expected_output"] = ["3"] * n + ["4.5", "5"]
    frame["input"] = [""] * n + ["a", "b"]
    path = write_frame(tmp_path / "big.csv", frame)
    got = read_csv_like_pandas(path, header=True)
    assert got.header == HEADER
    cols = dict(zip(HEADER, ([str(v) for v in c[n - 1 :]] for c in got.columns)))
    assert cols["model_output"] == ["1", "text", "2"]
    assert cols["expected_output"] == ["3.0", "4.5", "5.0"]
    assert cols["input"] == ["nan", "a", "b"]
    want = pd.read_csv(path)
    for name in ("model_output", "expected_output", "input"):
        assert cols[name] == [str(v) for v in want[name].iloc[n - 1 :]]


def test_very_long_cells(tmp_path: Path) -> None:
    path = write_frame(tmp_path / "long.csv", {"a": ["x" * 200_000, "y"], "b": ["1", "2"]})
    assert ours(path, True) == pandas_cells(path, True)


def test_mmlu_files_match_pandas(shared_data: Path) -> None:
    files = sorted((shared_data / "mmlu").glob("*/*.csv"))
    assert len(files) == 171
    for path in files:
        assert ours(path, False) == pandas_cells(path, False), path
