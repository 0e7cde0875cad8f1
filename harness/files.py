"""Atomic file writes: the one place the harness writes a file so that a reader never sees half of it.

Each write goes to a temporary file in the destination's own folder (so the rename stays on one file
system), is flushed and fsynced, then ``os.replace``-d onto the destination. On any failure the
temporary file is removed and the destination keeps its old contents (or stays absent).
"""

from __future__ import annotations

import contextlib
import itertools
import os
import secrets
from collections.abc import Callable, Iterator
from pathlib import Path

from harness.errors import HarnessError

__all__ = [
    "WriteError",
    "make_folder",
    "output_folder",
    "write_atomic",
    "write_bytes_atomic",
    "write_text_atomic",
]


class WriteError(HarnessError, OSError):
    """A file or folder the harness could not write: one line naming it (still an OSError for callers)."""


def make_folder(folder: Path) -> None:
    """``mkdir -p`` `folder`; a failure is a `WriteError` naming it."""
    folder = Path(folder)
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        blocking = next((p for p in (folder, *folder.parents) if p.exists() and not p.is_dir()), None)
        why = (
            "it is a file"
            if blocking == folder
            else f"{blocking} is a file, not a folder"
            if blocking
            else exc.strerror or str(exc)
        )
        raise WriteError(f"{folder}: cannot create this folder: {why}") from exc


@contextlib.contextmanager
def output_folder(folder: Path) -> Iterator[Path]:
    """Make `folder` before long work writes into it, so that a path it cannot write fails at once; where
    the work fails, what was made here (`folder` and the parents it lacked) and is still empty is removed
    again."""
    folder = Path(folder)
    made = list(itertools.takewhile(lambda p: not p.exists(), (folder, *folder.parents)))
    make_folder(folder)
    try:
        yield folder
    except BaseException:
        for path in made:  # the deepest first; one that holds something stops the walk up
            try:
                path.rmdir()  # only while empty
            except OSError:
                break
        raise


def write_atomic(path: Path, write: Callable[[Path], None]) -> None:
    """Call ``write(tmp)`` on a temporary path beside `path`, fsync it, then rename it onto `path`.

    For writers that want a file name (``DataFrame.to_csv``, ``torch.save``); the parent folder is
    created when missing. An OSError on the way (a folder that cannot be made, no permission, a full
    disk) is a `WriteError` naming `path`.
    """
    path = Path(path)
    folder = path.parent if str(path.parent) else Path(".")
    make_folder(folder)
    try:
        tmp = _fresh_temp(folder, path.name)
    except OSError as exc:
        raise WriteError(f"{path}: cannot write: {exc.strerror or exc}") from exc
    try:
        write(tmp)
        with open(tmp, "rb+") as handle:
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException as exc:
        tmp.unlink(missing_ok=True)
        if isinstance(exc, OSError) and not isinstance(exc, WriteError):
            raise WriteError(f"{path}: cannot write: {exc.strerror or exc}") from exc
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
