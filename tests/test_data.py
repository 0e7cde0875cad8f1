"""tasks.data: the forget/retain, MIA and MMLU layouts, their validation, and the real public data."""

from __future__ import annotations

import json
import re
from collections import Counter
from pathlib import Path

import pytest

from tasks.data import (
    MMLU_CATEGORIES,
    MiaDoc,
    Row,
    id_kind,
    read_mia,
    read_mmlu,
    read_rows,
    read_split,
    unscored_ids,
    write_split,
)
from tasks.errors import DataError

ROWS = [
    Row('"8f24c511"sc1', "Once upon", " a time", "Task1"),
    Row('"8f24c511"qa0', "Who?", "Ann", "Task1", split="train"),
    Row("12345qa4", "When?", "1984-12-31", "Task3"),
]


def write_lines(path: Path, lines: list[str]) -> Path:
    path.write_text("\n".join(lines), encoding="utf-8")
    return path


def good_line(**overrides: object) -> str:
    record: dict[str, object] = {"id": "doc1sc1", "input": "in", "output": "out", "task": "Task1"}
    record.update(overrides)
    return json.dumps({k: v for k, v in record.items() if v is not ...})


# ------------------------------------------------------------------ rows


@pytest.mark.parametrize(
    ("row_id", "kind"),
    [
        ('"8f24c511-a319"sc1', "sc"),
        ("abcqa0", "qa"),
        ("abcqa4", "qa"),
        ("123456sc1", "sc"),
        ("abcsc", None),  # the kind is tested on id[:-1]: "abcs" does not end in sc
        ("abcqa10", None),  # "abcqa1" ends in a1
        ("abc", None),
        ("x", None),
    ],
)
def test_id_kind_drops_the_last_character(row_id: str, kind: str | None) -> None:
    assert id_kind(row_id) == kind
    assert Row(row_id, "", "", "Task1").kind == kind


def test_unscored_ids_lists_rows_that_are_neither_sc_nor_qa() -> None:
    rows = [*ROWS, Row("doc9xx1", "i", "o", "Task2"), Row("doc9", "i", "o", "Task2")]
    assert unscored_ids(rows) == ["doc9xx1", "doc9"]


def test_write_split_then_read_both_formats(tmp_path: Path) -> None:
    write_split(ROWS, tmp_path, "forget")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["forget.jsonl", "forget.parquet"]
    assert read_rows(tmp_path / "forget.jsonl") == ROWS
    assert read_rows(tmp_path / "forget.parquet") == ROWS
    assert read_split(tmp_path, "forget") == ROWS
    first = json.loads((tmp_path / "forget.jsonl").read_text().splitlines()[0])
    assert list(first) == ["id", "input", "output", "task"]  # no split key when the row has none


def test_write_split_is_atomic_on_failure(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import pyarrow.parquet as pq

    write_split(ROWS, tmp_path, "retain")
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}

    def broken(*args: object, **kwargs: object) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(pq, "write_table", broken)  # the jsonl is written, then the parquet fails
    with pytest.raises(OSError, match="disk full"):
        write_split(ROWS[:1], tmp_path, "retain")
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == before  # both old files, no temp left


def test_blank_lines_and_missing_final_newline_are_fine(tmp_path: Path) -> None:
    path = tmp_path / "f.jsonl"
    path.write_text(good_line() + "\n\n" + good_line(id="doc1qa0"), encoding="utf-8")
    assert [r.id for r in read_rows(path)] == ["doc1sc1", "doc1qa0"]


@pytest.mark.parametrize(
    ("lines", "message"),
    [
        ([good_line(), "{not json"], "f.jsonl:2: not valid JSON"),
        ([good_line(output=...)], "f.jsonl:1: missing field 'output'"),
        ([good_line(), good_line(id="x1", task=3)], "f.jsonl:2: field 'task' must be a string, got a number"),
        ([good_line(input=None)], "f.jsonl:1: field 'input' must be a string, got null"),
        ([good_line(split=1)], "f.jsonl:1: field 'split' must be a string"),
        ([good_line(), good_line(), good_line()], "f.jsonl:2: duplicate id 'doc1sc1' (first on line 1)"),
        (["[1, 2]"], "f.jsonl:1: expected a JSON object"),
        ([], "f.jsonl: empty file"),
        (["", "  "], "f.jsonl: empty file"),
    ],
)
def test_bad_jsonl_rows_name_file_line_and_problem(tmp_path: Path, lines: list[str], message: str) -> None:
    path = write_lines(tmp_path / "f.jsonl", lines)
    with pytest.raises(DataError) as info:
        read_rows(path)
    assert str(info.value).startswith(f"{tmp_path}/{message}")
    assert "\n" not in str(info.value)


def test_bad_parquet_and_unknown_suffix(tmp_path: Path) -> None:
    (tmp_path / "forget.parquet").write_bytes(b"PAR1 this is not parquet")
    with pytest.raises(DataError, match=r"forget\.parquet: not a readable parquet file"):
        read_rows(tmp_path / "forget.parquet")
    (tmp_path / "x.txt").write_text("hi")
    with pytest.raises(DataError, match="unknown file type"):
        read_rows(tmp_path / "x.txt")
    with pytest.raises(DataError, match="no such file"):
        read_rows(tmp_path / "absent.jsonl")


def test_parquet_rows_are_validated_like_lines(tmp_path: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pa.table(
        {"id": ["a sc1", "a sc1"], "input": ["i", "j"], "output": ["o", "p"], "task": ["T", "T"]}
    )
    pq.write_table(table, tmp_path / "retain.parquet")
    with pytest.raises(DataError, match=r"retain\.parquet:2: duplicate id"):
        read_split(tmp_path, "retain")
    pq.write_table(pa.table({"id": ["a"], "input": ["i"], "task": ["T"]}), tmp_path / "forget.parquet")
    with pytest.raises(DataError, match=r"forget\.parquet:1: missing field 'output'"):
        read_split(tmp_path, "forget")


def test_read_split_layouts(tmp_path: Path) -> None:
    train, validation = ROWS[:2], ROWS[2:]
    # jsonl train/ validation/ folders: train first, then validation
    write_split(train, tmp_path / "folders" / "train", "forget")
    write_split(validation, tmp_path / "folders" / "validation", "forget")
    (tmp_path / "folders" / "train" / "forget.parquet").unlink()
    assert read_split(tmp_path / "folders", "forget") == ROWS
    # hub layout: data/forget_train-00000-of-00001.parquet, data/forget_validation-...
    hub = tmp_path / "hub" / "data"
    hub.mkdir(parents=True)
    (tmp_path / "folders" / "train" / "forget.jsonl").unlink()
    (tmp_path / "folders" / "validation" / "forget.parquet").rename(
        hub / "forget_validation-00000-of-00001.parquet"
    )
    write_split(train, tmp_path / "tmp", "forget")
    (tmp_path / "tmp" / "forget.parquet").rename(hub / "forget_train-00000-of-00001.parquet")
    assert read_split(tmp_path / "hub", "forget") == ROWS
    assert read_split(hub, "forget") == ROWS  # the data/ folder itself
    assert read_split(hub, "forget_validation") == validation
    with pytest.raises(DataError, match="no retain data"):
        read_split(hub, "retain")
    with pytest.raises(DataError, match="no such directory"):
        read_split(tmp_path / "absent", "forget")


def test_duplicate_ids_across_train_and_validation(tmp_path: Path) -> None:
    write_split(ROWS[:1], tmp_path / "train", "retain")
    write_split(ROWS[:1], tmp_path / "validation", "retain")
    with pytest.raises(
        DataError, match=r"validation/retain\.jsonl: duplicate id .* \(also in .*train/retain\.jsonl\)"
    ):
        read_split(tmp_path, "retain")


# ------------------------------------------------------------------ MIA


def test_read_mia_needs_only_id_and_document(tmp_path: Path) -> None:
    path = write_lines(
        tmp_path / "member.jsonl",
        [
            json.dumps({"id": "123", "document": "Ann\n\nAnn was born", "extra": {"x": 1}}),
            json.dumps({"document": "d", "id": "9"}),
        ],
    )
    assert read_mia(path) == [MiaDoc("123", "Ann\n\nAnn was born"), MiaDoc("9", "d")]


@pytest.mark.parametrize(
    ("lines", "message"),
    [
        (['{"id": "1"}'], ":1: missing field 'document'"),
        (['{"id": 1, "document": "d"}'], ":1: field 'id' must be a string, got a number"),
        (['{"id": "1", "document": "d"}', '{"id": "1", "document": "e"}'], ":2: duplicate id '1'"),
        (['{"id": "1", "document": "d"', ""], ":1: not valid JSON"),
        ([""], ": empty file"),
    ],
)
def test_bad_mia_files(tmp_path: Path, lines: list[str], message: str) -> None:
    path = write_lines(tmp_path / "nonmember.jsonl", lines)
    with pytest.raises(DataError) as info:
        read_mia(path)
    assert str(info.value).startswith(f"{path}{message}")


# ------------------------------------------------------------------ MMLU


def make_mmlu(root: Path, subject: str, test_rows: str, dev_rows: str = "q,a,b,c,d,A\n") -> Path:
    for split, text in (("dev", dev_rows), ("test", test_rows)):
        (root / split).mkdir(parents=True, exist_ok=True)
        (root / split / f"{subject}_{split}.csv").write_bytes(text.encode())
    return root


def test_read_mmlu_cells_as_pandas_gives_them(tmp_path: Path) -> None:
    text = 'What is 1+1?,None,2,"3, maybe",NA,B\r\n"multi\nline",x,y,z,w,D\n'
    make_mmlu(tmp_path, "b_subject", text)
    make_mmlu(tmp_path, "a_subject", "q,1,2,3,4,C")
    subjects = read_mmlu(tmp_path)
    assert [s.name for s in subjects] == ["a_subject", "b_subject"]
    b = subjects[1]
    assert b.test[0].choices == ("nan", "2", "3, maybe", "nan")  # 'None' and 'NA' are NaN in pandas
    assert b.test[0].answer == "B"
    assert b.test[1].question == "multi\nline"
    assert subjects[0].test[0].choices == ("1", "2", "3", "4")
    assert [s.name for s in read_mmlu(tmp_path, ["b_subject"])] == ["b_subject"]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("q,a,b,c,d,A\nq,a,b,c,d,E\n", "_test.csv:2: answer must be one of A, B, C, D, got 'E'"),
        ("q,a,b,c,d,A\n\nq,a,b,c,d\n", "_test.csv:3: expected 6 fields, found 5"),
        ("q,a,b,c,d,A,extra\n", "_test.csv:1: expected 6 fields, found 7"),
        ("", "_test.csv: empty file"),
        ('q,"a,b,c,d,A\n', "_test.csv:1: not valid CSV"),
    ],
)
def test_bad_mmlu_files(tmp_path: Path, text: str, message: str) -> None:
    make_mmlu(tmp_path, "law", text)
    with pytest.raises(DataError) as info:
        read_mmlu(tmp_path)
    assert str(info.value).startswith(f"{tmp_path / 'test' / 'law'}{message}")


def test_mmlu_missing_parts(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="no test/ subfolder"):
        read_mmlu(tmp_path)
    make_mmlu(tmp_path, "law", "q,a,b,c,d,A\n")
    with pytest.raises(DataError, match="no test file for subject"):
        read_mmlu(tmp_path, ["physics"])
    (tmp_path / "dev" / "law_dev.csv").unlink()
    with pytest.raises(DataError, match=r"law_dev\.csv: no such file"):
        read_mmlu(tmp_path)


def test_mmlu_categories_order() -> None:
    assert len(MMLU_CATEGORIES.subcategories) == 57
    assert MMLU_CATEGORIES.subcategory_order()[:4] == ["math", "health", "physics", "business"]
    assert list(MMLU_CATEGORIES.categories) == [
        "STEM",
        "humanities",
        "social sciences",
        "other (business, health, misc.)",
    ]
    every = {s for subs in MMLU_CATEGORIES.categories.values() for s in subs}
    assert every == set(MMLU_CATEGORIES.subcategory_order())


# ------------------------------------------------------------------ the real public data


def counts(rows: list[Row]) -> dict[tuple[str, str | None], int]:
    return dict(Counter((row.task, row.kind) for row in rows))


def table(t1: tuple[int, int], t2: tuple[int, int], t3: tuple[int, int]) -> dict[tuple[str, str], int]:
    out = {}
    for task, (sc, qa) in zip(("Task1", "Task2", "Task3"), (t1, t2, t3)):
        out[(task, "sc")], out[(task, "qa")] = sc, qa
    return out


def test_real_lume_counts(shared_data: Path) -> None:
    # lume/SOURCE.md and official-scoring.md section 5.1
    forget, retain = (
        read_rows(shared_data / "lume" / "forget.jsonl"),
        read_rows(shared_data / "lume" / "retain.jsonl"),
    )
    assert counts(forget) == table((243, 243), (250, 1250), (373, 373))
    assert counts(retain) == table((246, 246), (250, 1250), (371, 371))
    assert (len(forget), len(retain)) == (2732, 2734)
    assert unscored_ids(forget + retain) == []
    assert sum('"' in row.id for row in forget) == 486


def test_real_semeval_splits_in_every_layout(shared_data: Path) -> None:
    # official-scoring.md section 5.2 and semeval25/SOURCE.md
    root = shared_data / "semeval25"
    expected = {
        "forget_train": table((83, 83), (107, 535), (152, 152)),
        "forget_validation": table((24, 24), (23, 115), (34, 34)),
        "retain_train": table((103, 103), (102, 510), (159, 159)),
        "retain_validation": table((27, 27), (25, 125), (37, 37)),
    }
    for name, want in expected.items():
        split, part = name.split("_")
        jsonl = read_rows(root / part / f"{split}.jsonl")
        assert counts(jsonl) == want
        assert read_split(root / "parquet", name) == jsonl
        assert {row.split for row in jsonl} == {split}  # the field says forget/retain
    for split in ("forget", "retain"):
        assert read_split(root, split) == read_split(root / "parquet", split)
    assert len(read_split(root, "forget")) == 1366 and len(read_split(root, "retain")) == 1414


def test_real_mia_files(shared_data: Path) -> None:
    members = read_mia(shared_data / "semeval25" / "mia_data" / "member.jsonl")
    nonmembers = read_mia(shared_data / "semeval25" / "mia_data" / "nonmember.jsonl")
    assert (len(members), len(nonmembers)) == (150, 150)  # section 3; the last line has no newline
    forget_ids = {row.id[:-3] for row in read_rows(shared_data / "semeval25" / "train" / "forget.jsonl")}
    assert all(doc.id in forget_ids for doc in members)


def test_real_mmlu(shared_data: Path) -> None:
    mmlu = shared_data / "mmlu"
    subjects = read_mmlu(mmlu)
    assert [s.name for s in subjects] == sorted(MMLU_CATEGORIES.subcategories)
    assert sum(len(s.test) for s in subjects) == 14042 and sum(len(s.dev) for s in subjects) == 285
    source = re.findall(r"^\| ([a-z_]+) \| (\d+) \| \d+ \| (\d+) \|$", (mmlu / "SOURCE.md").read_text(), re.M)
    assert {name: (int(dev), int(test)) for name, dev, test in source} == {
        s.name: (len(s.dev), len(s.test)) for s in subjects
    }  # the per-subject table of SOURCE.md
    nan_cells = Counter(
        s.name
        for s in subjects
        for item in s.test
        for cell in item.choices + (item.question,)
        if cell == "nan"
    )
    assert nan_cells == {
        "college_computer_science": 2,
        "college_mathematics": 3,
        "college_physics": 1,
        "electrical_engineering": 4,
    }
    categories = json.loads((mmlu / "categories.json").read_text())
    assert {k: list(v) for k, v in MMLU_CATEGORIES.subcategories.items()} == categories["subcategories"]
    assert list(MMLU_CATEGORIES.subcategories) == list(categories["subcategories"])
    assert {k: list(v) for k, v in MMLU_CATEGORIES.categories.items()} == categories["categories"]
    assert list(MMLU_CATEGORIES.categories) == list(categories["categories"])
