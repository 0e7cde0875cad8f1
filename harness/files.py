"""Atomic file writes: the one place the harness writes a file so that a reader never sees half of it.

Each write goes to a temporary file in the destination's own folder (so the rename stays on one file
system), is flushed and fsynced, then ``os.replace``-d onto the destination. On any failure the
temporary file is removed and the destination keeps its old contents (or stays absent).
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Callable
from pathlib import Path

__all__ = ["write_atomic", "write_bytes_atomic", "write_text_atomic"]


def write_atomic(path: Path, write: Callable[[Path], None]) -> None:
    """Call ``write(tmp)`` on a temporary path beside `path`, fsync it, then rename it onto `path`.

    For writers that want a file name (``DataFrame.to_csv``, ``torch.save``); the parent folder is
    created when missing.
    """
    path = Path(path)
    folder = path.parent if str(path.parent) else Path(".")
    folder.mkdir(parents=True, exist_ok=True)
    tmp = _fresh_temp(folder, path.name)
    try:
        write(tmp)
        with open(tmp, "rb+") as handle:
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _fresh_temp(folder: Path, name: str) -> Path:
    """A new empty file ``.<name>.<random>.tmp`` in `folder`, with the umask's usual permissions.

    (``tempfile.mkstemp`` would make it 0600, and the renamed file would keep that.)
    """
    for _ in range(100):
        tmp = folder / f".{name}.{secrets.token_hex(4)}.tmp"
        try:
            os.close(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
        except FileExistsError:
            continue
        return tmp
    raise FileExistsError(f"{folder}: no free temporary name for {name}")


def write_bytes_atomic(path: Path, data: bytes) -> None:
    """Write `data` to `path` atomically (temporary file in the same folder, fsync, rename)."""
    write_atomic(path, lambda tmp: tmp.write_bytes(data))


def write_text_atomic(path: Path, text: str) -> None:
    """Write `text` as UTF-8 to `path` atomically; newlines are written as given (no translation)."""
    write_bytes_atomic(path, text.encode("utf-8"))
