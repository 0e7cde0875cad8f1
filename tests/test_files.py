"""harness.files: atomic writes leave either the old file or the whole new one, and no temporary file."""

from __future__ import annotations

from pathlib import Path

import pytest

from harness.errors import HarnessError
from harness.files import (
    WriteError,
    make_folder,
    output_folder,
    write_atomic,
    write_bytes_atomic,
    write_text_atomic,
)


def test_text_is_written_whole_without_newline_translation(tmp_path: Path) -> None:
    path = tmp_path / "new" / "folder" / "a.csv"
    write_text_atomic(path, "id,x\r\n1,é\n")
    assert path.read_bytes() == "id,x\r\n1,é\n".encode()
    assert [p.name for p in path.parent.iterdir()] == ["a.csv"]


def test_bytes_replace_an_existing_file(tmp_path: Path) -> None:
    path = tmp_path / "b.bin"
    path.write_bytes(b"old")
    write_bytes_atomic(path, b"\x00new")
    assert path.read_bytes() == b"\x00new"


def test_a_failed_writer_keeps_the_old_file_and_leaves_no_temporary(tmp_path: Path) -> None:
    path = tmp_path / "c.txt"
    path.write_text("old")

    def broken(tmp: Path) -> None:
        tmp.write_text("half")
        raise RuntimeError("disk gone")

    with pytest.raises(RuntimeError, match="disk gone"):
        write_atomic(path, broken)
    assert path.read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.txt"]


def test_the_written_file_has_ordinary_permissions(tmp_path: Path) -> None:
    reference = tmp_path / "plain.txt"
    reference.write_text("x")
    path = tmp_path / "atomic.txt"
    write_text_atomic(path, "x")
    assert path.stat().st_mode == reference.stat().st_mode


def test_a_path_under_a_file_is_one_line_naming_the_file(tmp_path: Path) -> None:
    blocker = tmp_path / "results"
    blocker.write_text("a file where a folder should be")
    with pytest.raises(WriteError) as info:
        write_text_atomic(blocker / "run" / "a.csv", "x")
    assert (
        str(info.value) == f"{blocker / 'run'}: cannot create this folder: {blocker} is a file, not a folder"
    )
    assert isinstance(info.value, HarnessError) and isinstance(info.value, OSError)  # callers catch either
    with pytest.raises(WriteError, match=r"results: cannot create this folder: it is a file$"):
        make_folder(blocker)
    assert blocker.read_text() == "a file where a folder should be"


def test_an_os_error_while_writing_names_the_destination(tmp_path: Path) -> None:
    def full(tmp: Path) -> None:
        raise OSError(28, "No space left on device")

    with pytest.raises(WriteError, match=r"d\.csv: cannot write: No space left on device$"):
        write_atomic(tmp_path / "d.csv", full)
    assert list(tmp_path.iterdir()) == []


def test_an_output_folder_made_for_work_that_fails_is_removed(tmp_path: Path) -> None:
    made, kept = tmp_path / "new" / "run", tmp_path / "kept"
    kept.mkdir()
    for folder in (made, kept):
        with pytest.raises(RuntimeError), output_folder(folder):
            assert folder.is_dir()
            raise RuntimeError("the evaluation failed")
    assert not made.exists() and kept.is_dir()  # the folder it found stays
    assert not made.parent.exists()  # and the parent it made for it goes too (`score`'s runs/scores)
    with output_folder(made):
        (made / "x").write_text("x")
    assert (made / "x").exists()
    with pytest.raises(RuntimeError), output_folder(made):
        raise RuntimeError("a second run into the same folder")
    assert (made / "x").exists()  # never removed once it holds something
