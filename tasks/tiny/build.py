"""Building the tiny world into the cache: data files, tokenizer, target model and (on request) gold model.

A build lives in ``<cache root>/tiny-<size>-seed<seed>-<key>/`` where ``key`` hashes the generator
version, seed, size and training settings; the cache root is the ``cache_root`` argument, else
``$UNLEARN_HARNESS_CACHE``, else the platform's user cache dir. A build is made in a temporary folder
and renamed into place, under a file lock, so concurrent builders never see or leave a half-written
build; with the same inputs, `build_tiny` returns the existing build at once. ``gold=True`` on an
existing build adds the retain-only gold model the same way.

The models train in child processes under `tasks.determinism.reproducible_cpu_env` (`tasks.tiny.trainer`),
so on x86_64 a build is the same whatever the CPU's vector ISA. The canonical worlds' file hashes are
pinned in ``canonical.json`` by cache key; each build is compared with them (``canonical`` in
build.json, a warning on stderr where it differs) and `canonical_differences` checks a build at any time.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import shutil
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

from tasks.determinism import cpu_vendor, reproducible_cpu_env
from tasks.spec import TaskSpec
from tasks.tiny.model import TrainSettings
from tasks.tiny.trainer import finish, read_reports
from tasks.tiny.trainer import start as start_training
from tasks.tiny.world import SIZES, WORLD_VERSION

#: bump when the model recipe changes: part of the cache key (5: trained in a child under fixed kernels;
#: 6: config and tokenizer files that transformers 4.45.2 loads too, tasks/portable.py; same weights)
MODEL_VERSION = 6
#: the generator version recorded in the cache key and build.json
GENERATOR_VERSION = f"world{WORLD_VERSION}-model{MODEL_VERSION}"

#: training settings per world size
SETTINGS: dict[str, TrainSettings] = {"tiny": TrainSettings(), "small": TrainSettings()}

#: generation budget of the tiny task: the longest tiny output is far shorter (checked by a test)
TINY_MAX_NEW_TOKENS = 48
#: the submission's time budget on the tiny task (seconds)
TINY_BUDGET_S = 180.0


@dataclass(frozen=True)
class TinyBuild:
    """Paths of one tiny-world build (``gold_model_dir`` is None until a gold model is built)."""

    root: Path
    model_dir: Path
    gold_model_dir: Path | None
    forget_dir: Path
    retain_dir: Path
    mia_member: Path
    mia_nonmember: Path
    mmlu_dir: Path
    seed: int = 0
    size: str = "tiny"

    @property
    def complete(self) -> bool:
        """The data and target model are in place (the build finished)."""
        return (self.root / "build.json").is_file()

    def to_json(self) -> dict[str, str | int | None]:
        out: dict[str, str | int | None] = {"seed": self.seed, "size": self.size}
        for name in ("root", "model_dir", "gold_model_dir", "forget_dir", "retain_dir"):
            value = getattr(self, name)
            out[name] = None if value is None else str(value)
        for name in ("mia_member", "mia_nonmember", "mmlu_dir"):
            out[name] = str(getattr(self, name))
        return out


def default_cache_root() -> Path:
    """``$UNLEARN_HARNESS_CACHE``, else the platform's user cache dir for unlearn-harness."""
    env = os.environ.get("UNLEARN_HARNESS_CACHE")
    if env:
        return Path(env).expanduser()
    from platformdirs import user_cache_path

    return user_cache_path("unlearn-harness")


def cache_key(seed: int, size: str) -> str:
    """A short hash of everything that determines a build's content."""
    _check(seed, size)
    payload = {
        "generator": GENERATOR_VERSION,
        "seed": seed,
        "size": size,
        "settings": SETTINGS[size].as_dict(),
        "kernels": reproducible_cpu_env(SETTINGS[size].threads),
    }
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:12]


def _check(seed: int, size: str) -> None:
    if size not in SIZES:
        raise ValueError(f"unknown tiny-world size {size!r} (known: {', '.join(SIZES)})")
    if not isinstance(seed, int) or isinstance(seed, bool) or seed < 0:
        raise ValueError(f"the tiny-world seed must be a non-negative integer, got {seed!r}")


def tiny_paths(seed: int = 0, size: str = "tiny", cache_root: Path | str | None = None) -> TinyBuild:
    """Where the build for (seed, size) lives or would live; builds nothing."""
    root = Path(cache_root) if cache_root is not None else default_cache_root()
    root = root.expanduser().resolve() / f"tiny-{size}-seed{seed}-{cache_key(seed, size)}"
    gold = root / "gold"
    return TinyBuild(
        root=root,
        model_dir=root / "model",
        gold_model_dir=gold if gold.is_dir() else None,
        forget_dir=root / "data" / "forget",
        retain_dir=root / "data" / "retain",
        mia_member=root / "mia" / "member.jsonl",
        mia_nonmember=root / "mia" / "nonmember.jsonl",
        mmlu_dir=root / "mmlu",
        seed=seed,
        size=size,
    )


class _Reporter:
    """Rich progress for the build stages, or nothing."""

    def __init__(self, enabled: bool) -> None:
        self.progress = None
        if enabled:
            from rich.console import Console
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

            self.progress = Progress(  # on stderr: stdout carries only a command's result (--json)
                TextColumn("{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("{task.fields[note]}"),
                TimeElapsedColumn(),
                console=Console(stderr=True),
            )

    def __enter__(self) -> _Reporter:
        if self.progress is not None:
            self.progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self.progress is not None:
            self.progress.stop()

    def stage(self, description: str, total: int):
        """Returns ``advance(done, note)`` for a new progress line."""
        if self.progress is None:
            return lambda done, note="": None
        task = self.progress.add_task(description, total=total, note="")
        return lambda done, note="": self.progress.update(task, completed=done, note=note)


def _scratch(parent: Path, name: str) -> Path:
    path = parent / f".{name}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    path.mkdir(parents=True)
    return path


def _build_base(paths: TinyBuild, reporter: _Reporter, gold: bool) -> None:
    """Data, tokenizer and target model; with ``gold`` the gold model trains at the same time in a second
    child (each training is single-threaded, so the two share a 2-core machine without slowing down)."""
    from tasks.tiny.model import train_tokenizer
    from tasks.tiny.world import generate_world, training_texts, write_world

    settings = SETTINGS[paths.size]
    tmp = _scratch(paths.root.parent, paths.root.name)
    children: list[subprocess.Popen] = []
    try:
        timings: dict[str, float] = {}
        start = time.perf_counter()
        step = reporter.stage("tiny world: data", 1)
        world = generate_world(paths.seed, paths.size)
        write_world(world, tmp)
        step(1)
        timings["data_s"] = time.perf_counter() - start
        start = time.perf_counter()
        step = reporter.stage("tiny world: tokenizer", 1)
        corpus = training_texts(world) + [doc.document for doc in world.nonmembers]
        train_tokenizer(corpus, settings, tmp / _TOKENIZER)
        step(1)
        timings["tokenizer_s"] = time.perf_counter() - start
        start = time.perf_counter()
        if gold:
            children.append(_start_training(paths, tmp, "gold"))
        children.append(_start_training(paths, tmp, "model"))
        step = reporter.stage("tiny world: target model", settings.epochs)
        kernels = read_reports(children[-1].stdout, lambda e, loss: step(e, f"loss {loss:.3f}"))
        finish(children[-1], "target", tmp / ".model.log")
        timings["model_s"] = time.perf_counter() - start
        if gold:
            step = reporter.stage("tiny world: gold model (in parallel)", 1)
            _finish_gold(children[0], tmp)
            step(1)
        shutil.rmtree(tmp / _TOKENIZER)
        canonical = _check_canonical(tmp, paths, ("model", "data", "gold") if gold else ("model", "data"))
        manifest = {
            "generator": GENERATOR_VERSION,
            "seed": paths.seed,
            "size": paths.size,
            "key": cache_key(paths.seed, paths.size),
            "settings": settings.as_dict(),
            "rows": {"forget": len(world.forget), "retain": len(world.retain)},
            "kernels": kernels,
            "canonical": canonical,
            "timings": {k: round(v, 2) for k, v in timings.items()},
        }
        (tmp / "build.json").write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
        if paths.root.exists():  # a stale, incomplete folder (no build.json): replace it
            shutil.rmtree(paths.root)
        os.rename(tmp, paths.root)
    finally:
        for child in children:  # a failure on the way: stop the children too
            if child.poll() is None:
                child.kill()
                child.wait()
        shutil.rmtree(tmp, ignore_errors=True)


#: where the builder keeps the trained tokenizer for the training children (removed once they finish)
_TOKENIZER = ".tokenizer"


def _start_training(paths: TinyBuild, tmp: Path, which: str) -> subprocess.Popen:
    """Start the child that trains ``which`` ("model": the target, "gold") into ``tmp / which``.

    The target's reports come on a pipe (progress); the gold's stdout and both stderrs go to a log.
    """
    log = open(tmp / f".{which}.log", "wb")  # noqa: SIM115 (the child writes it; closed below)
    try:
        return start_training(
            paths.seed,
            paths.size,
            SETTINGS[paths.size],
            include_forget=which == "model",
            tokenizer_dir=tmp / _TOKENIZER,
            out_dir=tmp / which,
            stdout=subprocess.PIPE if which == "model" else log,
            stderr=log,
        )
    finally:
        log.close()


def _finish_gold(child: subprocess.Popen, tmp: Path) -> None:
    log = tmp / ".gold.log"
    finish(child, "gold", log)
    kernels = read_reports(log.read_text(encoding="utf-8").splitlines())
    record = json.loads((tmp / "gold" / "gold.json").read_text(encoding="utf-8"))
    (tmp / "gold" / "gold.json").write_text(json.dumps({**record, "kernels": kernels}) + "\n", "utf-8")
    log.unlink()


def _build_gold(paths: TinyBuild, reporter: _Reporter) -> None:
    """Add the gold model to an existing build (trained in a child, from the build's own tokenizer)."""
    tmp = _scratch(paths.root, "gold")
    try:
        step = reporter.stage("tiny world: gold model", 1)
        shutil.copytree(paths.model_dir, tmp / _TOKENIZER, ignore=shutil.ignore_patterns("*.safetensors"))
        _finish_gold(_start_training(paths, tmp, "gold"), tmp)
        step(1)
        canonical = _check_canonical(tmp, paths, ("gold",))
        record = json.loads((tmp / "gold" / "gold.json").read_text(encoding="utf-8"))
        (tmp / "gold" / "gold.json").write_text(
            json.dumps({**record, "canonical": canonical}) + "\n", "utf-8"
        )
        os.rename(tmp / "gold", paths.root / "gold")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


#: the pinned file hashes of the canonical worlds, by cache key (`benchmarks/tiny_build.py --pin` writes it)
CANONICAL_FILE = Path(__file__).with_name("canonical.json")


def _canonical_files(root: Path, parts: tuple[str, ...]) -> list[str]:
    """The files whose bytes define a world (relative paths): weights, tokenizer and the text data.

    Left out: parquet (its bytes carry the writer's version), config / generation config (they carry
    the transformers version), tokenizer_config.json, and build.json / gold.json (timings).
    """
    files = []
    if "model" in parts:
        files += ["model/model.safetensors", "model/tokenizer.json"]
    if "gold" in parts:
        files += ["gold/model.safetensors"]
    if "data" in parts:
        files += ["data/forget/forget.jsonl", "data/retain/retain.jsonl", "mia/member.jsonl"]
        files += ["mia/nonmember.jsonl"] + sorted(str(p.relative_to(root)) for p in root.glob("mmlu/*/*.csv"))
    return files


def file_hashes(root: Path, parts: tuple[str, ...] = ("model", "gold", "data")) -> dict[str, str]:
    """sha256 of each file of `_canonical_files` under a build's ``root`` (files that exist)."""
    return {
        name: hashlib.sha256((root / name).read_bytes()).hexdigest()
        for name in _canonical_files(root, parts)
        if (root / name).is_file()
    }


#: the processors (``vendor_id``) on which the canonical world's pinned bytes were built and reproduced
CANONICAL_VENDORS = ("AuthenticAMD",)


def _processor() -> str:
    return f"{platform.machine()} {cpu_vendor() or 'of unknown vendor'}"


def reproduces_canonical() -> bool:
    """Whether this machine is of a kind the canonical world was reproduced on (x86_64, an AMD processor).

    Measured (README, "Which worlds are canonical"): two AMD EPYC processors, with and without AVX-512,
    build the pinned bytes; an Intel Xeon with AMX builds another target and gold model under the same
    kernel settings. Elsewhere a build still works and says whether it matches (`canonical_differences`).
    """
    return platform.machine() in ("x86_64", "AMD64") and cpu_vendor() in CANONICAL_VENDORS


def pinned_hashes(seed: int = 0, size: str = "tiny") -> dict[str, str] | None:
    """The canonical world's file hashes for (seed, size), or None where that world is not canonical."""
    pins = json.loads(CANONICAL_FILE.read_text(encoding="utf-8")) if CANONICAL_FILE.is_file() else {}
    entry = pins.get(cache_key(seed, size))
    return None if entry is None else dict(entry["files"])


def canonical_differences(build: TinyBuild) -> list[str] | None:
    """The files of ``build`` whose bytes differ from the canonical world's; None where none is pinned.

    The gold model counts only where the build has one.
    """
    pinned = pinned_hashes(build.seed, build.size)
    if pinned is None:
        return None
    parts = ("model", "data", "gold") if (build.root / "gold").is_dir() else ("model", "data")
    return _differences(build.root, parts, pinned)


def _differences(root: Path, parts: tuple[str, ...], pinned: dict[str, str]) -> list[str]:
    """The files of `_canonical_files` under ``root`` whose sha256 is not the pinned one (or that are missing)."""
    actual = file_hashes(root, parts)
    return sorted(name for name in _canonical_files(root, parts) if actual.get(name) != pinned.get(name))


def _check_canonical(root: Path, paths: TinyBuild, parts: tuple[str, ...]) -> dict[str, object]:
    """Compare a fresh build in ``root`` with the pinned hashes; warns on stderr where it differs."""
    pinned = pinned_hashes(paths.seed, paths.size)
    if pinned is None:
        return {"pinned": False}
    differs = _differences(root, parts, pinned)
    if differs:
        print(
            f"tiny world: warning: {paths.root.name} differs from the canonical world in {', '.join(differs)}"
            f" (the canonical build is reproduced on AMD x86_64 processors; this one is {_processor()}:"
            " see the README)",
            file=sys.stderr,
        )
    return {"pinned": True, "matches": not differs, "differs": differs}


def build_tiny(
    seed: int = 0,
    size: str = "tiny",
    gold: bool = False,
    cache_root: Path | str | None = None,
    progress: bool = True,
) -> TinyBuild:
    """Build (or reuse) the tiny world for ``seed`` and ``size``; with ``gold`` also the gold model."""
    from filelock import FileLock

    paths = tiny_paths(seed, size, cache_root)
    if paths.complete and (not gold or paths.gold_model_dir is not None):
        return paths
    paths.root.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(paths.root.parent / f".{paths.root.name}.lock")):
        # under the lock no one else builds this key: any scratch folder left is a killed builder's
        for stale in [*paths.root.parent.glob(f".{paths.root.name}.tmp-*"), *paths.root.glob(".gold.tmp-*")]:
            shutil.rmtree(stale, ignore_errors=True)
        with _Reporter(progress) as reporter:
            if not paths.complete:
                _build_base(paths, reporter, gold)
            if gold and not (paths.root / "gold").is_dir():
                _build_gold(paths, reporter)
    return tiny_paths(seed, size, cache_root)


def tiny_spec(build: TinyBuild) -> TaskSpec:
    """The `TaskSpec` of the tiny task over ``build`` (its paths need not exist yet)."""
    shape, settings = SIZES[build.size], SETTINGS[build.size]
    return TaskSpec(
        name="tiny",
        description=f"embedded tiny world ({build.size}, seed {build.seed}): LUME-like data, 1.05M-param OLMo",
        model_dir=build.model_dir,
        forget_dir=build.forget_dir,
        retain_dir=build.retain_dir,
        eval_forget=build.forget_dir / "forget.jsonl",
        eval_retain=build.retain_dir / "retain.jsonl",
        mia_member=build.mia_member,
        mia_nonmember=build.mia_nonmember,
        mmlu_dir=build.mmlu_dir,
        mmlu_subjects=None,
        mmlu_shots=shape.mmlu_dev,
        mmlu_max_prompt_tokens=settings.context,
        max_new_tokens=TINY_MAX_NEW_TOKENS,
        cuda_dtype="float32",
        cpu_dtype="float32",
        budget_s=TINY_BUDGET_S,
        processes=1,
        mmlu_threshold=None,
        gold_model_dir=build.gold_model_dir,
        source=f"tiny world cache {build.root}",
        extra={"seed": str(build.seed), "size": build.size},
    )
