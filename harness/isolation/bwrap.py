"""The bubblewrap backend: a view rendered as bwrap's arguments.

bwrap builds the view on a fresh tmpfs root with new mount, PID, network (loopback up), IPC and UTS
namespaces, a new session (no TIOCSTI into the terminal) and --die-with-parent; when its PID 1 ends,
every process of the run ends with it. As root, bwrap runs privileged (no user namespace: a user
namespace would map the child back to uid 0, which may write host sysctls) and the command starts
under `jail.py drop`, which makes it the unprivileged sandbox uid; as another user, bwrap's user
namespace keeps the user's uid and grants no capability, and nested user namespaces are disabled.
"""

from __future__ import annotations

import os
from pathlib import PurePosixPath

from harness.isolation.view import View

NAMESPACES = ("--unshare-pid", "--unshare-net", "--unshare-ipc", "--unshare-uts", "--unshare-cgroup-try")


def bwrap_args(view: View) -> list[str]:
    """`bwrap ... --`: everything before the command."""
    args = ["bwrap"]
    binds: list[PurePosixPath] = []  # host trees in the view: their folders exist already
    made: set[PurePosixPath] = set()  # folders bwrap creates (0755: bwrap's own default is 0700)
    for mount in view.mounts:
        dest = PurePosixPath(mount.dest)
        for parent in reversed(dest.parents[:-1]):
            if parent not in made and not any(b == parent or b in parent.parents for b in binds):
                args += ["--perms", "0755", "--dir", str(parent)]
                made.add(parent)
        if mount.kind in ("ro", "rw", "dev"):
            flag = {"ro": "--ro-bind", "rw": "--bind", "dev": "--dev-bind"}[mount.kind]
            args += [flag, mount.source, mount.dest]
            binds.append(dest)
        elif mount.kind == "tmpfs":
            args += (
                ["--perms", "1777"]
                + (["--size", str(mount.size)] if mount.size else [])
                + ["--tmpfs", mount.dest]
            )
            made.add(dest)
        elif mount.kind == "symlink":
            args += ["--symlink", mount.source, mount.dest]
        elif mount.kind == "proc":
            args += ["--proc", mount.dest]
            binds.append(dest)
    args += [*NAMESPACES, "--hostname", "sandbox", "--new-session", "--die-with-parent"]
    if os.getuid() != 0:
        args += ["--unshare-user", "--disable-userns"]
    return [*args, "--chdir", view.cwd, "--"]
