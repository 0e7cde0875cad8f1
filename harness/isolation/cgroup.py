"""A memory cgroup per run, where this machine lets the harness make one (cgroup v2 or v1, as root).

The cgroup holds the child's whole process tree (it is entered before the child's first instruction),
so its charge counts what RSS polling cannot see: memfd and shared-memory pages, tmpfs files, kernel
memory of the tree. With a cap, `memory.max` (v2) or `memory.limit_in_bytes` (v1) makes the kernel's
OOM killer end the run at the cap; at the end every process still in it is
killed, whatever it did to leave its process group. Where no cgroup can be made, `create` returns None
and the sandbox polls the tree instead.
"""

from __future__ import annotations

import os
import signal
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path("/sys/fs/cgroup")


def _own_memory_cgroup() -> tuple[Path, int] | None:
    """(folder of this process's memory cgroup, cgroup version), or None."""
    try:
        lines = Path("/proc/self/cgroup").read_text().splitlines()
    except OSError:
        return None
    for line in lines:
        number, controllers, path = line.split(":", 2)
        if "memory" in controllers.split(",") and (ROOT / "memory" / path.lstrip("/")).is_dir():
            return ROOT / "memory" / path.lstrip("/"), 1
    for line in lines:
        number, controllers, path = line.split(":", 2)
        folder = ROOT / path.lstrip("/")
        if number == "0" and (folder / "cgroup.controllers").is_file():
            if "memory" in (folder / "cgroup.subtree_control").read_text().split():
                return folder, 2
    return None


@dataclass
class RunCgroup:
    """The cgroup of one run."""

    path: Path
    version: int

    def _file(self, v1: str, v2: str) -> Path:
        return self.path / (v1 if self.version == 1 else v2)

    def enter(self) -> None:
        """Move the calling process in (meant for Popen's preexec_fn: the child, before its exec)."""
        (self.path / "cgroup.procs").write_text(str(os.getpid()))

    def oom_killed(self) -> bool:
        name = "memory.oom_control" if self.version == 1 else "memory.events"
        try:
            lines = (self.path / name).read_text().splitlines()
        except OSError:
            return False
        counts = dict(line.split()[:2] for line in lines if len(line.split()) >= 2)
        return counts.get("oom_kill", "0") not in ("0", "")

    def pids(self) -> list[int]:
        try:
            return [int(p) for p in (self.path / "cgroup.procs").read_text().split()]
        except (OSError, ValueError):
            return []

    def kill_all(self) -> int:
        """SIGKILL every process still in the cgroup; returns how many there were."""
        pids = self.pids()
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                continue
        return len(pids)

    def remove(self) -> None:
        for _ in range(50):
            if not self.pids():
                break
            self.kill_all()
            time.sleep(0.02)
        try:
            self.path.rmdir()
        except OSError:
            pass


def create(name: str, cap_mb: float | None) -> RunCgroup | None:
    """A fresh memory cgroup below this process's own, limited to `cap_mb` when given; None if impossible."""
    found = _own_memory_cgroup()
    if found is None:
        return None
    parent, version = found
    path = parent / f"unlearn-harness-{name}"
    try:
        path.mkdir()
        group = RunCgroup(path, version)
        if cap_mb is not None:
            limit = str(int(cap_mb * 2**20))
            group._file("memory.limit_in_bytes", "memory.max").write_text(limit)
            if version == 1 and (path / "memory.memsw.limit_in_bytes").is_file():
                try:  # no swapping past the cap either (where swap accounting is on)
                    (path / "memory.memsw.limit_in_bytes").write_text(limit)
                except OSError:
                    pass
            elif version == 2 and (path / "memory.swap.max").is_file():
                (path / "memory.swap.max").write_text("0")
        return group
    except OSError:
        try:
            path.rmdir()
        except OSError:
            pass
        return None
