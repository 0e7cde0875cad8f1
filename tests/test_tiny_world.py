"""The tiny world's data generator: shapes, id formats, determinism, and the real data readers.

Fast: nothing here trains a model.
"""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path

import pytest

from tasks.data import read_mia, read_mmlu, read_rows, read_split
from tasks.tiny.world import (
    SIZES,
    UTILITY_REPEATS,
    MmluQuestion,
    generate_world,
    mmlu_prompt,
    training_texts,
    write_world,
)

UUID = r"[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}"
ID_FORMATS = {
    "Task1": re.compile(rf'"{UUID}"(sc1|qa0)'),
    "Task2": re.compile(rf"{UUID}(sc1|qa[0-4])"),
    "Task3": re.compile(r"[1-9][0-9]{5,7}(sc1|qa0)"),
}


@pytest.fixture(scope="module")
def world():
    return generate_world(seed=0, size="tiny")


def test_rows_per_task_and_kind_follow_the_size(world) -> None:
    shape = SIZES["tiny"]
    expected = {
        ("Task1", "sc"): shape.task1_docs,
        ("Task1", "qa"): shape.task1_docs,
        ("Task2", "sc"): shape.task2_docs,
        ("Task2", "qa"): 5 * shape.task2_docs,
        ("Task3", "sc"): shape.task3_docs,
        ("Task3", "qa"): shape.task3_docs,
    }
    for rows in (world.forget, world.retain):
        assert Counter((row.task, row.kind) for row in rows) == expected
    assert len(world.forget) == len(world.retain)


def test_ids_have_the_official_formats_and_never_repeat(world) -> None:
    rows = world.forget + world.retain
    for row in rows:
        assert ID_FORMATS[row.task].fullmatch(row.id), row.id
    assert len({row.id for row in rows}) == len(rows)
    # no document is shared between forget and retain (base id = id minus its 3-char suffix)
    assert not {row.id[:-3] for row in world.forget} & {row.id[:-3] for row in world.retain}
    # Task2 has one question per PII field, qa0..qa4, for each document
    task2 = Counter(row.id[:-3] for row in world.forget if row.task == "Task2")
    assert set(task2.values()) == {6}


def test_rows_look_like_lume(world) -> None:
    for row in world.forget + world.retain:
        assert row.input == row.input.strip() and row.output == row.output.strip()
        assert row.split in ("forget", "retain")
        if row.task == "Task3" and row.kind == "sc":
            title, body = row.input.split("\n\n", 1)
            assert body.startswith(title + " (born ")
    birth = [r for r in world.forget if r.task == "Task2" and r.id.endswith("qa0")]
    assert all(re.fullmatch(r"\d{4}-\d{2}-\d{2}", r.output) for r in birth)
    assert all(r.input.startswith("What is the birth date of ") for r in birth)


@pytest.mark.parametrize("size", list(SIZES))
def test_every_question_has_one_answer(size: str) -> None:
    rows = [row for row in _rows(size) if row.kind == "qa"]
    assert len({row.input for row in rows}) == len(rows)
    # PII people share neither a first nor a last name, so their records cannot blur together
    names = [
        row.input[len("What is the birth date of ") : -1]
        for row in rows
        if row.id.endswith("qa0") and row.task == "Task2"
    ]
    parts = [part for name in names for part in name.split(" ")]
    assert len(parts) == len(set(parts)) == 2 * len(names)


def _rows(size: str):
    world = generate_world(seed=0, size=size)
    return world.forget + world.retain


def test_mia_members_are_the_task3_forget_documents(world) -> None:
    task3_sc = {row.id[:-3]: row for row in world.forget if row.task == "Task3" and row.kind == "sc"}
    assert [doc.id for doc in world.members] == list(task3_sc)
    for doc in world.members:
        row = task3_sc[doc.id]
        assert doc.document == f"{row.input} {row.output}"
    all_ids = {row.id[:-3] for row in world.forget + world.retain}
    texts = {f"{row.input} {row.output}" for row in world.forget + world.retain}
    assert len(world.nonmembers) == SIZES["tiny"].nonmembers
    for doc in world.nonmembers:
        assert doc.id not in all_ids and doc.document not in texts
        assert doc.document.split("\n\n")[0] in doc.document.split("\n\n")[1]


def test_training_texts_hold_forget_only_for_the_target(world) -> None:
    target, gold = training_texts(world), training_texts(world, include_forget=False)
    forget_texts = {f"{row.input} {row.output}" for row in world.forget}
    assert forget_texts <= set(target)
    assert not forget_texts & set(gold)
    assert len(target) - len(gold) == len(world.forget)
    mmlu = [text for text in gold if text.startswith("The following are multiple choice questions")]
    assert len(mmlu) == 3 * SIZES["tiny"].mmlu_test * UTILITY_REPEATS
    assert all(re.search(r"\nAnswer: [ABCD]$", text) for text in mmlu)


def test_mmlu_prompt_is_open_instructs_format() -> None:
    shot = MmluQuestion("What is 2 plus 2?", ("4", "5", "6", "7"), "A")
    item = MmluQuestion("What is 3 plus 3?", ("5", "6", "7", "8"), "B")
    expected = (
        "The following are multiple choice questions (with answers) about  elementary mathematics.\n\n"
        "What is 2 plus 2?\nA. 4\nB. 5\nC. 6\nD. 7\nAnswer: A\n\n"
        "What is 3 plus 3?\nA. 5\nB. 6\nC. 7\nD. 8\nAnswer:"
    )
    assert mmlu_prompt("elementary_mathematics", [shot], item) == expected


def _tree(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_same_seed_gives_byte_identical_files(tmp_path: Path) -> None:
    first = _tree_of(tmp_path / "a", seed=7)
    second = _tree_of(tmp_path / "b", seed=7)
    assert first == second
    assert {"data/forget/forget.parquet", "data/retain/retain.jsonl", "mia/member.jsonl"} <= set(first)
    other = _tree_of(tmp_path / "c", seed=8)
    assert other["data/forget/forget.jsonl"] != first["data/forget/forget.jsonl"]
    assert other["data/forget/forget.parquet"] != first["data/forget/forget.parquet"]


def _tree_of(root: Path, seed: int) -> dict[str, bytes]:
    write_world(generate_world(seed=seed, size="tiny"), root)
    return _tree(root)


def test_written_files_pass_the_real_data_readers(tmp_path: Path, world) -> None:
    paths = write_world(world, tmp_path)
    assert read_split(paths["forget_dir"], "forget") == world.forget
    assert read_split(paths["retain_dir"], "retain") == world.retain
    assert read_rows(paths["forget_dir"] / "forget.parquet") == world.forget
    members = read_mia(paths["mia_member"])
    assert [(d.id, d.document) for d in members] == [(d.id, d.document) for d in world.members]
    assert len(read_mia(paths["mia_nonmember"])) == len(world.nonmembers)
    subjects = read_mmlu(paths["mmlu_dir"])
    assert [s.name for s in subjects] == sorted(world.mmlu)
    for subject in subjects:
        dev, test = world.mmlu[subject.name]
        assert [(i.question, i.choices, i.answer) for i in subject.test] == [
            (q.question, q.choices, q.answer) for q in test
        ]
        assert len(subject.dev) == len(dev) == SIZES["tiny"].mmlu_dev


def test_unknown_size_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown tiny-world size 'huge'"):
        generate_world(seed=0, size="huge")
