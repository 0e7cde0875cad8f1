"""The evaluation cache: official artifacts of a finished evaluation, keyed by everything they depend on.

The key is a SHA-256 over the content of every file of the checkpoint directory (weights, config,
tokenizer), the content of every data file read, the settings that change results, and the harness,
torch and transformers versions. Content is hashed on every lookup (no size/mtime shortcut), so a changed
file can never hit a stale entry. Entries are written into a temporary folder and renamed into place.
Root: $UNLEARN_HARNESS_CACHE/eval, else the user cache folder of platformdirs.

Only the harness writes entries, and a hit must be impossible to plant: each entry carries an HMAC
(SHA-256) of its key and of every file's content under a secret made once per cache root
(`.secret`, mode 0600, in a folder of mode 0700). The cache is never in a sandboxed child's view; an
entry whose MAC does not verify (planted, edited, half copied) is discarded and recomputed.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import secrets
import shutil
import tempfile
from collections.abc import Iterable
from pathlib import Path

import torch
import transformers

import harness
from tasks.tiny.build import default_cache_root

_CHUNK = 1 << 20


def cache_root() -> Path:
    """<UNLEARN_HARNESS_CACHE or the platform user cache>/eval."""
    return default_cache_root() / "eval"


def _hash_file(path: Path, digest: hashlib._Hash) -> None:
    with path.open("rb") as handle:
        while block := handle.read(_CHUNK):
            digest.update(block)


def _files(path: Path) -> list[Path]:
    if path.is_dir():
        return sorted(p for p in path.rglob("*") if p.is_file())
    return [path] if path.is_file() else []


def eval_key(checkpoint_dir: Path, data_paths: Iterable[Path | None], settings: dict[str, object]) -> str:
    """The cache key of one evaluation (hex SHA-256)."""
    outer = hashlib.sha256()
    meta = {
        "harness": harness.__version__,
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "settings": settings,
    }
    outer.update(json.dumps(meta, sort_keys=True, default=str).encode())
    roots = [("checkpoint", Path(checkpoint_dir))] + [("data", Path(p)) for p in data_paths if p is not None]
    for label, root in roots:
        for path in _files(root):
            inner = hashlib.sha256()
            _hash_file(path, inner)
            name = path.relative_to(root) if root.is_dir() else path.name
            outer.update(f"{label}:{name}:{inner.hexdigest()}\n".encode())
    return outer.hexdigest()


MAC_NAME = "entry.mac"


def _secret(root: Path) -> bytes:
    """The cache root's HMAC key, made on first use (readable by the harness's user only)."""
    path = root / ".secret"
    try:
        return path.read_bytes()
    except FileNotFoundError:
        pass
    root.mkdir(parents=True, exist_ok=True)
    root.chmod(0o700)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:  # another process made it first
        return path.read_bytes()
    with os.fdopen(fd, "wb") as handle:
        handle.write(secrets.token_bytes(32))
    return path.read_bytes()


def _mac(root: Path, key: str, entry: Path) -> str:
    digest = hmac.new(_secret(root), key.encode() + b"\n", hashlib.sha256)
    for path in _files(entry):
        rel = path.relative_to(entry).as_posix()
        if rel == MAC_NAME:
            continue
        inner = hashlib.sha256()
        _hash_file(path, inner)
        digest.update(f"{rel}:{inner.hexdigest()}\n".encode())
    return digest.hexdigest()


def lookup(key: str) -> Path | None:
    """The entry folder for ``key`` when a complete, authentic one exists (a forged one is removed)."""
    root = cache_root()
    entry = root / key
    if not (entry / "timings.json").is_file() or entry.is_symlink():
        return None
    mac = entry / MAC_NAME
    if mac.is_file() and hmac.compare_digest(mac.read_text().strip(), _mac(root, key, entry)):
        return entry
    shutil.rmtree(entry, ignore_errors=True)
    return None


def restore(entry: Path, run_dir: Path) -> dict[str, float]:
    """Copy an entry's artifacts into ``run_dir``; return the timings recorded with it."""
    for path in _files(entry):
        rel = path.relative_to(entry)
        if rel.name in ("timings.json", MAC_NAME):
            continue
        (run_dir / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, run_dir / rel)
    return json.loads((entry / "timings.json").read_text())


def store(key: str, run_dir: Path, artifacts: Iterable[Path], timings: dict[str, float]) -> None:
    """Save ``artifacts`` (paths under ``run_dir``) as the entry for ``key`` (atomic; first writer wins)."""
    root = cache_root()
    root.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{key[:16]}-", dir=root))
    try:
        for path in artifacts:
            rel = path.relative_to(run_dir)
            (tmp / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(path, tmp / rel)
        (tmp / "timings.json").write_text(json.dumps(timings))
        (tmp / MAC_NAME).write_text(_mac(root, key, tmp))
        os.rename(tmp, root / key)
    except OSError:
        if (root / key).exists():  # another process stored the same entry first
            return
        raise
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
