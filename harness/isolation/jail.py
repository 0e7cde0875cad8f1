"""The jail: the sandbox's setup inside fresh namespaces, for machines without bubblewrap (and the drop of
privileges that both backends share). A script of the standard library only, run as

    unshare --mount --pid --net --ipc --uts --fork --kill-child [--user --map-root-user] -- \
        python3 -I -S jail.py jail SPEC.json          # the unshare backend: build the view, then run
    python3 -I -S jail.py drop UID GID -- COMMAND...   # inside bubblewrap, when the harness is root

`jail` mounts the view of harness/isolation/view.py on a private tmpfs (each bind read-only unless
writable, nosuid), mounts the PID namespace's /proc, brings the loopback interface up (torchrun's and
accelerate's rendezvous run on localhost), pivots into the new root and detaches the old one, so
nothing outside the view can be reached by any path, file descriptor or hard link. It stays as PID 1
(forwarding SIGTERM and reaping orphans); when the command ends, the namespace ends and every process
left in it (a double-forked daemon too) is killed by the kernel.

`drop` (and the jail, before it executes the command) gives the command no privilege: as root it
becomes the unprivileged UID/GID with no supplementary groups; in a user namespace it keeps its uid
but loses every capability (bounding, inheritable and ambient sets cleared, securebits locked so that
an exec cannot grant them back); no_new_privs always, so no setuid or file-capability binary helps.
"""

from __future__ import annotations

import ctypes
import fcntl
import json
import os
import platform
import signal
import socket
import struct
import sys

MS_RDONLY, MS_NOSUID, MS_NODEV, MS_NOEXEC = 1, 2, 4, 8
MS_REMOUNT, MS_BIND, MS_REC, MS_PRIVATE = 32, 4096, 16384, 1 << 18
MNT_DETACH = 2
AT_RECURSIVE, MOUNT_ATTR_RDONLY, MOUNT_ATTR_NOSUID = 0x8000, 0x1, 0x2
SYS_MOUNT_SETATTR = 442  # the same number on every architecture (the unified syscall table)
SYS_PIVOT_ROOT = {"x86_64": 155, "aarch64": 41}
PR_SET_NO_NEW_PRIVS, PR_CAPBSET_DROP, PR_SET_SECUREBITS, PR_CAP_AMBIENT = 38, 24, 28, 47
PR_CAP_AMBIENT_CLEAR_ALL = 4
#: noroot, no_setuid_fixup and keep_caps, each with its lock bit
SECUREBITS_LOCKED = 0x3F
SIOCGIFFLAGS, SIOCSIFFLAGS, IFF_UP = 0x8913, 0x8914, 0x1

_libc = ctypes.CDLL(None, use_errno=True)


def _check(result: int, what: str) -> None:
    if result != 0:
        error = ctypes.get_errno()
        raise OSError(error, f"{what}: {os.strerror(error)}")


def _mount(source: str | None, target: str, fstype: str | None, flags: int, data: str | None = None) -> None:
    enc = lambda s: s.encode() if s is not None else None  # noqa: E731
    _check(
        _libc.mount(enc(source), enc(target), enc(fstype), ctypes.c_ulong(flags), enc(data)),
        f"mount {target}",
    )


class _MountAttr(ctypes.Structure):
    _fields_ = [("attr_set", ctypes.c_uint64), ("attr_clr", ctypes.c_uint64),
                ("propagation", ctypes.c_uint64), ("userns_fd", ctypes.c_uint64)]  # fmt: skip


def _read_only(target: str) -> None:
    """Make the bind at `target` and every mount below it read-only (and nosuid)."""
    attr = _MountAttr(MOUNT_ATTR_RDONLY | MOUNT_ATTR_NOSUID, 0, 0, 0)
    result = _libc.syscall(SYS_MOUNT_SETATTR, -100, target.encode(), AT_RECURSIVE, ctypes.byref(attr),
                           ctypes.sizeof(attr))  # fmt: skip
    if result != 0:  # kernels before 5.12: the top mount only (flags it must keep come from statvfs)
        kept = os.statvfs(target).f_flag & (MS_NODEV | MS_NOEXEC)
        _mount(None, target, None, MS_REMOUNT | MS_BIND | MS_RDONLY | MS_NOSUID | kept)


def _prepare(target: str, directory: bool) -> None:
    if directory:
        os.makedirs(target, exist_ok=True)
        return
    os.makedirs(os.path.dirname(target), exist_ok=True)
    if not os.path.lexists(target):
        os.close(os.open(target, os.O_CREAT | os.O_WRONLY, 0o644))


def _build(root: str, mounts: list[dict]) -> None:
    for mount in mounts:
        kind, dest, source = mount["kind"], mount["dest"], mount.get("source", "")
        target = root + dest
        if kind in ("ro", "rw", "dev"):
            if not os.path.exists(source):
                continue
            _prepare(target, os.path.isdir(source))
            _mount(source, target, None, MS_BIND | MS_REC)
            if kind == "ro":
                _read_only(target)
        elif kind == "tmpfs":
            os.makedirs(target, exist_ok=True)
            size = f",size={mount['size']}" if mount.get("size") else ""
            _mount("tmpfs", target, "tmpfs", MS_NOSUID | MS_NODEV, f"mode=1777{size}")
        elif kind == "symlink":
            os.makedirs(os.path.dirname(target), exist_ok=True)
            if not os.path.lexists(target):
                os.symlink(source, target)
        elif kind == "proc":
            os.makedirs(target, exist_ok=True)
            _mount("proc", target, "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC)


def _loopback_up() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        request = struct.pack("16sH", b"lo", 0)
        flags = struct.unpack("16sH", fcntl.ioctl(sock, SIOCGIFFLAGS, request + b"\0" * 14)[:18])[1]
        fcntl.ioctl(sock, SIOCSIFFLAGS, struct.pack("16sH", b"lo", flags | IFF_UP) + b"\0" * 14)


def _pivot(root: str) -> None:
    old = os.path.join(root, ".old-root")
    os.makedirs(old, exist_ok=True)
    number = SYS_PIVOT_ROOT.get(platform.machine())
    if number is None:
        raise OSError(f"pivot_root: unsupported architecture {platform.machine()}")
    _check(_libc.syscall(number, root.encode(), old.encode()), "pivot_root")
    os.chdir("/")
    _check(_libc.umount2(b"/.old-root", MNT_DETACH), "umount the old root")
    os.rmdir("/.old-root")
    _mount(None, "/", None, MS_REMOUNT | MS_RDONLY | MS_NOSUID | MS_NODEV)


def drop_privileges(uid: int | None, gid: int | None) -> None:
    """Become `uid`/`gid` (when root) or lose every capability (in a user namespace); no new privileges."""
    if uid is not None and os.getuid() == 0:
        os.setgroups([])
        os.setresgid(gid, gid, gid)
        os.setresuid(uid, uid, uid)  # leaving uid 0 clears the permitted and effective capabilities
    else:
        _check(_libc.prctl(PR_SET_SECUREBITS, SECUREBITS_LOCKED, 0, 0, 0), "securebits")
        for cap in range(64):
            if _libc.prctl(PR_CAPBSET_DROP, cap, 0, 0, 0) != 0:
                break  # past the last capability this kernel knows
        _libc.prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0)
        header = struct.pack("II", 0x20080522, 0)  # _LINUX_CAPABILITY_VERSION_3, this process
        _check(_libc.capset(header, b"\0" * 24), "capset")
    _check(_libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0), "no_new_privs")


def _forward(child: int, number: int) -> None:
    try:
        os.kill(child, number)
    except ProcessLookupError:
        pass


def _supervise(child: int) -> int:
    """PID 1 of the namespace: forward termination to `child`, reap orphans, return the child's status."""
    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, lambda number, _frame: _forward(child, number))
    while True:
        try:
            pid, status = os.wait()
        except ChildProcessError:
            return 1
        except InterruptedError:
            continue
        if pid == child:
            code = os.waitstatus_to_exitcode(status)
            return code if code >= 0 else 128 - code


def jail(spec_path: str) -> int:
    with open(spec_path) as handle:
        spec = json.load(handle)
    root = spec["root"]
    _mount(None, "/", None, MS_REC | MS_PRIVATE)
    _mount("tmpfs", root, "tmpfs", MS_NOSUID | MS_NODEV, "mode=0755")
    _build(root, spec["mounts"])
    _loopback_up()
    _pivot(root)
    try:
        socket.sethostname("sandbox")
    except OSError:
        pass
    child = os.fork()
    if child == 0:
        try:
            os.chdir(spec["cwd"])
            drop_privileges(spec.get("uid"), spec.get("gid"))
            os.execvp(spec["command"][0], spec["command"])
        except BaseException as exc:  # noqa: BLE001 - nothing to return to: report and leave
            print(f"harness jail: cannot start {spec['command'][0]}: {exc}", file=sys.stderr)
        os._exit(127)
    return _supervise(child)


def main(argv: list[str]) -> int:
    if len(argv) >= 2 and argv[1] == "jail":
        try:
            return jail(argv[2])
        except OSError as exc:
            print(f"harness jail: setup failed: {exc}", file=sys.stderr)
            return 126
    if len(argv) >= 5 and argv[1] == "drop" and argv[4] == "--":
        drop_privileges(int(argv[2]), int(argv[3]))
        os.execvp(argv[5], argv[5:])
    print("usage: jail.py jail SPEC.json | jail.py drop UID GID -- COMMAND...", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv))
