"""The child entry point: imports a submission and calls its `unlearn(...)` inside the sandbox.

Run as a script (``python entry.py SPEC.json``, also under torchrun / accelerate launch), so it imports
nothing of the harness and only the standard library before the submission. It reports what happened
to ``<result_dir>/result-<RANK>.json`` (phase reached, error, blocked sandbox violations, peak GPU
memory); the runner turns that into a status. Guards installed before the submission is imported:

- an audit hook that blocks (and records) Python-level connections to the network (under isolation,
  the loopback is the sandbox's own and stays open: torchrun and accelerate rendezvous there) and, when
  the harness names them (only an unisolated run, `--isolation none`), opens of task paths that were not
  handed to the submission: there, the only guard;
- an optional address-space cap (RLIMIT_AS) so that allocating past the memory cap fails fast.
"""

from __future__ import annotations

import importlib.util
import inspect
import json
import os
import resource
import socket
import sys
import time
import traceback
from pathlib import Path

#: substrings of an exception's type or message that mean the process ran out of memory
_OOM_MARKERS = ("out of memory", "can't allocate memory", "cannot allocate memory", "outofmemoryerror")

_violations: list[str] = []


def _is_oom(exc: BaseException) -> bool:
    if isinstance(exc, MemoryError):
        return True
    text = f"{type(exc).__name__} {exc}".lower()
    return any(marker in text for marker in _OOM_MARKERS)


def _loopback(address: object) -> bool:
    host = address[0] if isinstance(address, tuple) and address else None
    return isinstance(host, str) and (host.startswith("127.") or host in ("::1", "localhost"))


def _install_guards(forbidden: list[str], allowed: list[str], block_loopback: bool = True) -> None:
    """Block inet socket connections (but the loopback, unless `block_loopback`) and reads under
    `forbidden` (but not under `allowed`)."""
    forbidden_roots = [os.path.realpath(p) for p in forbidden]
    allowed_roots = [os.path.realpath(p) for p in allowed]

    def under(path: str, roots: list[str]) -> bool:
        return any(path == root or path.startswith(root.rstrip(os.sep) + os.sep) for root in roots)

    def hook(event: str, args: tuple) -> None:
        if event == "socket.connect" or event == "socket.sendto":
            sock, address = args[0], args[1]
            inet = getattr(sock, "family", None) in (socket.AF_INET, socket.AF_INET6)
            if inet and (block_loopback or not _loopback(address)):
                _violations.append(f"network: connect to {address!r} blocked (no network in the sandbox)")
                raise PermissionError(f"network access is disabled in the harness sandbox ({address!r})")
        elif event in ("open", "os.listdir", "os.scandir") and forbidden_roots:
            target = args[0] if args else None
            if isinstance(target, bytes):
                target = os.fsdecode(target)
            if not isinstance(target, (str, os.PathLike)):
                return
            path = os.path.realpath(os.fspath(target))
            if under(path, forbidden_roots) and not under(path, allowed_roots):
                _violations.append(f"file: access to {path} blocked (a task path not given to unlearn())")
                raise FileNotFoundError(2, "No such file or directory", os.fspath(target))

    sys.addaudithook(hook)


def _peak_gpu_mb() -> float | None:
    torch = sys.modules.get("torch")
    if torch is None or not torch.cuda.is_available() or not torch.cuda.is_initialized():
        return None
    return max(torch.cuda.max_memory_allocated(i) for i in range(torch.cuda.device_count())) / 2**20


def _write_result(result_dir: Path, result: dict) -> None:
    rank = os.environ.get("RANK", "0")
    result["rank"] = int(rank) if rank.isdigit() else rank
    result["violations"] = list(_violations)
    result["peak_gpu_mb"] = _peak_gpu_mb()
    path = result_dir / f"result-{rank}.json"
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(result))
    os.replace(tmp, path)


def _failure(phase: str, exc: BaseException) -> dict:
    traceback.print_exception(exc, file=sys.stderr)
    return {
        "phase": phase,
        "ok": False,
        "error_type": type(exc).__name__,
        "error": str(exc).splitlines()[0][:500] if str(exc) else "",
        "oom": _is_oom(exc),
    }


def _seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch (the ones the submission can import) before it is imported."""
    import random

    random.seed(seed)
    for name in ("numpy", "torch"):
        try:
            module = importlib.import_module(name)
        except ImportError:
            continue
        if name == "numpy":
            module.random.seed(seed)
        else:
            module.manual_seed(seed)


def main(argv: list[str]) -> int:
    spec = json.loads(Path(argv[1]).read_text())
    result_dir = Path(spec["result_dir"])
    _install_guards(spec.get("forbidden", []), spec.get("allowed", []), spec.get("block_loopback", True))
    cap = spec.get("memory_cap_bytes")
    if cap:
        resource.setrlimit(resource.RLIMIT_AS, (int(cap), int(cap)))
    submission = Path(spec["submission"])
    sys.path.insert(0, str(submission.parent))
    sys.argv = [str(submission)]
    if spec.get("seed") is not None:
        _seed_everything(int(spec["seed"]))
    started = time.time()

    try:
        module_spec = importlib.util.spec_from_file_location(submission.stem, submission)
        module = importlib.util.module_from_spec(module_spec)
        sys.modules[submission.stem] = module
        module_spec.loader.exec_module(module)
    except BaseException as exc:  # noqa: BLE001 - whatever the submission raises is reported
        _write_result(result_dir, _failure("import", exc))
        return 3

    try:
        fn = module.unlearn
        bound = inspect.signature(fn).bind(*spec["args"], **spec.get("kwargs", {}))
    except (AttributeError, TypeError, ValueError) as exc:
        _write_result(result_dir, _failure("signature", exc))
        return 4

    try:
        fn(*bound.args, **bound.kwargs)
    except SystemExit as exc:
        if exc.code not in (None, 0):
            _write_result(result_dir, _failure("run", exc))
            return 5
    except BaseException as exc:  # noqa: BLE001
        _write_result(result_dir, _failure("run", exc))
        return 5
    sys.stdout.flush()
    _write_result(result_dir, {"phase": "done", "ok": True, "duration_s": time.time() - started})
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
