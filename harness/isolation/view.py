"""What a sandboxed run may see: one list of mounts, rendered by bubblewrap or by the unshare jail.

The view is an allowlist. The child's file system holds the operating system's read-only trees
(/usr and its /bin, /lib symlinks, the world-readable part of /etc, /sys), the interpreter and its
site-packages wherever they live (also under /tmp), harness/entry.py, and the pieces of the work
directory handed to `unlearn()` at their own paths: model/, forget/, retain/ and the submission's code
read-only, out/, the private home and the entry module's result folder writable. /proc is the PID
namespace's own, /dev a minimal one (plus GPUs), /tmp and /dev/shm private tmpfs. Everything else is
absent: the user's home, the task's scored data, the results root and its leaderboard, the caches, the
run directory around the work directory. A hidden path that lies inside a bound tree (an odd layout,
e.g. a cache inside the virtual environment) is covered by an empty tmpfs.
"""

from __future__ import annotations

import os
import site
import stat
import sys
from dataclasses import asdict, dataclass
from functools import cache
from pathlib import Path

#: the kinds of mount: read-only bind, writable bind, tmpfs, symbolic link, device node, proc
KINDS = ("ro", "rw", "tmpfs", "symlink", "dev", "proc")
SYSTEM_TREES = ("usr", "bin", "sbin", "lib", "lib32", "lib64", "libx32")
DEVICES = ("null", "zero", "full", "random", "urandom", "tty")
#: the sandbox's /etc/hosts: its hostname is its loopback (torchrun's rendezvous resolves it)
HOSTS = Path(__file__).resolve().with_name("hosts")


@dataclass(frozen=True)
class Mount:
    """One entry of the view: `dest` in the child's file system, made from `source` as `kind` says."""

    kind: str
    dest: str
    source: str = ""
    #: tmpfs size in bytes (None: the kernel's default, half of RAM)
    size: int | None = None


@dataclass(frozen=True)
class View:
    """The whole file system of a sandboxed child, in mount order, and its working directory."""

    mounts: tuple[Mount, ...]
    cwd: str

    def to_json(self) -> dict:
        return {"cwd": self.cwd, "mounts": [asdict(m) for m in self.mounts]}

    def paths(self, kind: str) -> list[str]:
        return [m.dest for m in self.mounts if m.kind == kind]


def _world_readable(path: Path) -> bool:
    """True when `path` and, for a folder, everything below it can be read by any user."""
    try:
        mode = path.lstat().st_mode
    except OSError:
        return False
    if stat.S_ISLNK(mode):
        return True
    if not mode & stat.S_IROTH or (stat.S_ISDIR(mode) and not mode & stat.S_IXOTH):
        return False
    if stat.S_ISDIR(mode):
        try:
            return all(_world_readable(child) for child in path.iterdir())
        except OSError:
            return False
    return stat.S_ISREG(mode)


@cache
def system_mounts() -> tuple[Mount, ...]:
    """/usr and friends, the world-readable entries of /etc, and /sys, as this machine has them."""
    mounts: list[Mount] = []
    for name in SYSTEM_TREES:
        path = Path("/") / name
        if path.is_symlink():
            mounts.append(Mount("symlink", str(path), os.readlink(path)))
        elif path.is_dir():
            mounts.append(Mount("ro", str(path), str(path)))
    for entry in sorted(Path("/etc").iterdir()):
        if entry.name in ("hosts", "hostname"):
            continue
        if entry.is_symlink():
            mounts.append(Mount("symlink", str(entry), os.readlink(entry)))
        elif _world_readable(entry):  # secrets (shadow, ssh host keys, sudoers) stay out of the view
            mounts.append(Mount("ro", str(entry), str(entry)))
    mounts.append(Mount("ro", "/etc/hosts", str(HOSTS)))
    if Path("/sys").is_dir():
        mounts.append(Mount("ro", "/sys", "/sys"))
    return tuple(mounts)


def _device_mounts() -> list[Mount]:
    mounts = [
        Mount("dev", f"/dev/{name}", f"/dev/{name}") for name in DEVICES if Path(f"/dev/{name}").exists()
    ]
    for device in sorted(Path("/dev").glob("nvidia*")):
        if device.is_char_device() or device.is_dir():
            mounts.append(Mount("dev", str(device), str(device)))
    mounts += [
        Mount("symlink", "/dev/fd", "/proc/self/fd"),
        Mount("symlink", "/dev/stdin", "/proc/self/fd/0"),
    ]
    mounts += [
        Mount("symlink", "/dev/stdout", "/proc/self/fd/1"),
        Mount("symlink", "/dev/stderr", "/proc/self/fd/2"),
    ]
    return mounts


@cache
def python_paths() -> tuple[str, ...]:
    """The interpreter's prefixes and site folders: what the child's python needs, wherever it lives."""
    candidates = [sys.prefix, sys.base_prefix, sys.exec_prefix, sys.base_exec_prefix]
    candidates += list(site.getsitepackages())
    if site.ENABLE_USER_SITE:
        candidates.append(site.getusersitepackages())
    candidates += [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]
    paths: list[Path] = []
    for candidate in candidates:
        path = Path(candidate).absolute()
        if path.is_dir() and not any(p == path or p in path.parents for p in paths):
            paths = [p for p in paths if path not in p.parents] + [path]
    return tuple(sorted(str(p) for p in paths))


def _inside(path: Path, roots: list[Path]) -> bool:
    return any(path == root or root in path.parents for root in roots)


def build_view(
    *,
    readonly: list[tuple[Path, Path]],
    writable: list[Path],
    files: list[Path],
    hidden: list[Path],
    cwd: Path,
    tmp_size: int | None = None,
) -> View:
    """The view of one run: `readonly` (source, dest) pairs, `writable` folders, `files` bound read-only
    at their own paths (the entry module...), and `hidden` paths that must stay out of it."""
    mounts = list(system_mounts())
    mounts.append(Mount("proc", "/proc"))
    mounts += _device_mounts()
    mounts += [Mount("tmpfs", "/tmp", size=tmp_size), Mount("tmpfs", "/dev/shm", size=tmp_size)]
    bound = [Path(m.dest) for m in mounts if m.kind == "ro"]
    for path in python_paths():
        if not _inside(Path(path), bound):
            mounts.append(Mount("ro", path, str(Path(path).resolve())))
            bound.append(Path(path))
    for path in files:
        if not _inside(Path(path), bound):
            mounts.append(Mount("ro", str(path), str(Path(path).resolve())))
    for path in sorted({Path(p).resolve() for p in hidden}):
        if path.is_dir() and _inside(path, bound):  # before the work directory's pieces, which it may hold
            mounts.append(Mount("tmpfs", str(path), size=1 << 20))
    for source, dest in readonly:
        mounts.append(Mount("ro", str(dest), str(Path(source).resolve())))
    for folder in writable:
        mounts.append(Mount("rw", str(folder), str(Path(folder).resolve())))
    return View(mounts=tuple(mounts), cwd=str(cwd))
