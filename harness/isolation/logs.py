"""Bounded capture of the child's stdout and stderr.

Each stream is a pipe read by a thread: the first `head` bytes go to the log file as they come, the
last `tail` bytes are kept in memory and appended when the stream closes, after one line saying how
many bytes were cut between them. A child that prints without end costs the disk `head + tail` bytes,
never more. An optional callback sees every chunk as it arrives (a live view of the run).
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from pathlib import Path

HEAD_BYTES = 8 * 2**20
TAIL_BYTES = 8 * 2**20
CHUNK = 1 << 16


class BoundedLog(threading.Thread):
    """Drains one pipe into `path`, keeping its head and its tail."""

    def __init__(
        self,
        fd: int,
        path: Path,
        *,
        head: int | None = None,
        tail: int | None = None,
        on_chunk: Callable[[bytes], None] | None = None,
    ) -> None:
        super().__init__(daemon=True)
        self.fd, self.path = fd, Path(path)
        self.head = HEAD_BYTES if head is None else head
        self.tail_limit = TAIL_BYTES if tail is None else tail
        self.on_chunk = on_chunk
        self.total = 0
        self.cut = 0

    def run(self) -> None:
        tail = bytearray()
        with open(self.path, "wb") as out:
            while chunk := os.read(self.fd, CHUNK):
                if self.on_chunk is not None:
                    try:
                        self.on_chunk(chunk)
                    except Exception:  # noqa: BLE001 - a display problem must never stall the child
                        self.on_chunk = None
                room = max(0, self.head - self.total)
                self.total += len(chunk)
                if room:
                    out.write(chunk[:room])
                    out.flush()
                tail += chunk[room:]
                if len(tail) > self.tail_limit:
                    self.cut += len(tail) - self.tail_limit
                    del tail[: len(tail) - self.tail_limit]
            if self.cut:
                out.write(f"\n[... the harness cut {self.cut} bytes of this log here ...]\n".encode())
            out.write(tail)
        os.close(self.fd)


def capture(path: Path, **kwargs) -> tuple[int, BoundedLog]:
    """(write end for the child, started reader thread) of one stream logged to `path`."""
    read_fd, write_fd = os.pipe()
    reader = BoundedLog(read_fd, path, **kwargs)
    reader.start()
    return write_fd, reader
