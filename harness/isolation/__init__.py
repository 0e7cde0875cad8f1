"""One sandbox design with two backends, and an explicit way to run without one.

A run's view (harness/isolation/view.py: what the child may see) is rendered by bubblewrap (`bwrap`,
the default wherever it works) or, on machines without it, by the harness's own jail (`unshare`:
util-linux's unshare and harness/isolation/jail.py). Both give the same guarantees: only the view is
reachable (the task's scored data, the results root with its leaderboard and run directories, the
caches and the user's home are absent from it), no network but a loopback of its own, a PID namespace
(the harness's processes cannot be seen, signalled or read through /proc; when the run ends every
process of it ends), no privilege (as root the child runs as the unprivileged uid 65534). Where
neither works, `auto` refuses to run a submission: `none` must be asked for, runs it as a plain child
and is recorded and shown as unisolated.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from functools import cache
from pathlib import Path

from harness.errors import HarnessError
from harness.isolation.bwrap import bwrap_args
from harness.isolation.view import Mount, View, build_view

ISOLATIONS = ("bwrap", "unshare", "none")
JAIL = Path(__file__).resolve().with_name("jail.py")
#: the uid/gid a root harness gives the child (nobody/nogroup on Debian)
SANDBOX_UID = SANDBOX_GID = 65534
INSTALL_HINT = "install bubblewrap (apt-get install bubblewrap)"

__all__ = ["ISOLATIONS", "JAIL", "Mount", "View", "build_view", "command", "detect_isolation", "sandbox_ids"]


def sandbox_ids() -> tuple[int, int] | None:
    """(uid, gid) the child runs as when the harness is root; None: it keeps the harness's own uid."""
    return (SANDBOX_UID, SANDBOX_GID) if os.getuid() == 0 else None


def _unshare_prefix() -> list[str]:
    prefix = ["unshare", "--mount", "--pid", "--net", "--ipc", "--uts", "--fork", "--kill-child"]
    return prefix + ([] if os.getuid() == 0 else ["--user", "--map-root-user"])


def command(mode: str, view: View, argv: list[str], control_dir: Path) -> list[str]:
    """The full command line that runs `argv` inside `view` under `mode`."""
    ids = sandbox_ids()
    drop = [sys.executable, "-I", "-S", str(JAIL), "drop", str(ids[0]), str(ids[1]), "--"] if ids else []
    if mode == "bwrap":
        return bwrap_args(view) + drop + argv
    if mode == "unshare":
        root = Path(control_dir) / "jail-root"
        root.mkdir(exist_ok=True)
        spec = {"root": str(root), "cwd": view.cwd, "mounts": view.to_json()["mounts"], "command": argv}
        if ids:
            spec.update(uid=ids[0], gid=ids[1])
        path = Path(control_dir) / "jail.json"
        path.write_text(json.dumps(spec))
        return [*_unshare_prefix(), "--", sys.executable, "-I", "-S", str(JAIL), "jail", str(path)]
    if mode == "none":
        return list(argv)
    raise HarnessError(f"unknown isolation '{mode}' (choose from auto, {', '.join(ISOLATIONS)})")


@cache
def _works(mode: str) -> bool:
    """Whether `mode` can start a trivial command in a minimal view on this machine (probed once)."""
    if mode == "none":
        return True
    if shutil.which("bwrap" if mode == "bwrap" else "unshare") is None:
        return False
    with tempfile.TemporaryDirectory(prefix="harness-probe-") as tmp:
        writable = Path(tmp) / "out"
        writable.mkdir()
        if sandbox_ids():
            os.chown(writable, SANDBOX_UID, SANDBOX_GID)
        view = build_view(readonly=[], writable=[writable], files=[JAIL], hidden=[], cwd=writable)
        argv = [sys.executable, "-I", "-S", "-c", f"open({str(writable / 'ok')!r}, 'w').write('ok')"]
        try:
            done = subprocess.run(command(mode, view, argv, Path(tmp)), capture_output=True, timeout=30)
        except (OSError, subprocess.SubprocessError):
            return False
        return done.returncode == 0 and (writable / "ok").is_file()


def detect_isolation(requested: str = "auto") -> str:
    """The isolation to use: the requested one (an error when it cannot work here) or, for `auto`, the
    best one that works; `auto` never falls back to `none`."""
    if requested == "auto":
        for mode in ("bwrap", "unshare"):
            if _works(mode):
                return mode
        raise HarnessError(
            "no sandbox works on this machine (bubblewrap is missing and unshare cannot create namespaces): "
            f"{INSTALL_HINT}, or pass --isolation none to run the submission unisolated (trusted code only)"
        )
    if requested not in ISOLATIONS:
        raise HarnessError(f"unknown isolation '{requested}' (choose from auto, {', '.join(ISOLATIONS)})")
    if not _works(requested):
        hint = INSTALL_HINT if requested == "bwrap" else "it needs root or unprivileged user namespaces"
        raise HarnessError(f"isolation '{requested}' does not work on this machine ({hint})")
    return requested


def describe(mode: str) -> str:
    """One line for the manifest and the board: what this isolation gave the run."""
    who = f"uid {SANDBOX_UID}" if sandbox_ids() else "the user's uid, no capabilities"
    return {
        "bwrap": f"bubblewrap: allowlisted view, no network, PID namespace, {who}",
        "unshare": f"unshare jail: allowlisted view, no network, PID namespace, {who}",
        "none": "none: a plain child that sees the whole file system and the network",
    }[mode]
