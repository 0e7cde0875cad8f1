"""harness.files: atomic writes leave either the old file or the whole new one, and no temporary file."""

from __future__ import annotations

from pathlib import Path

import pytest

from harness.files import write_atomic, write_bytes_atomic, write_text_atomic


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
