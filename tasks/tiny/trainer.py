"""Training one tiny-world model (target or gold) in a child process under fixed CPU kernels.

The builder never trains in its own process: ATen picks its kernels and MKL its branch when they are
first used, by the processor they run on, so the same recipe gives different weights on different CPUs
(see `tasks.determinism`). `start` runs ``python -m tasks.tiny.trainer SPEC`` with
`tasks.determinism.reproducible_cpu_env` added to the environment (overriding whatever the caller set,
``ATEN_CPU_CAPABILITY`` included); the child applies the in-process settings too, trains, and reports on
its stdout one JSON line per epoch and a last line with the kernel settings it saw (`finish` reads them).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import IO

from tasks.determinism import apply_in_process, problems, reproducible_cpu_env
from tasks.tiny.model import TrainSettings


def child_env(settings: TrainSettings) -> dict[str, str]:
    """The child's environment: the caller's, with the reproducible kernel settings on top."""
    return {**os.environ, **reproducible_cpu_env(settings.threads)}


def start(
    seed: int,
    size: str,
    settings: TrainSettings,
    include_forget: bool,
    tokenizer_dir: Path,
    out_dir: Path,
    stdout: IO[bytes] | int,
    stderr: IO[bytes],
) -> subprocess.Popen:
    """Start a child that trains the (target or, without forget, gold) model into ``out_dir``."""
    spec = {
        "seed": seed,
        "size": size,
        "settings": settings.as_dict(),
        "include_forget": include_forget,
        "tokenizer_dir": str(tokenizer_dir),
        "out_dir": str(out_dir),
    }
    args = [sys.executable, "-m", "tasks.tiny.trainer", json.dumps(spec)]
    root = Path(__file__).resolve().parents[2]  # the child imports tasks from where this file is
    env = child_env(settings)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(root), env.get("PYTHONPATH", "")) if p)
    return subprocess.Popen(args, stdout=stdout, stderr=stderr, env=env, cwd=root)


def read_reports(lines, on_epoch: Callable[[int, float], None] | None = None) -> dict[str, object]:
    """Parse a child's report lines (bytes or str); calls ``on_epoch`` per epoch, returns the kernels."""
    kernels: dict[str, object] = {}
    for line in lines:
        text = line.decode("utf-8", "replace") if isinstance(line, bytes) else line
        if not text.startswith("{"):
            continue
        report = json.loads(text)
        if "epoch" in report and on_epoch is not None:
            on_epoch(int(report["epoch"]), float(report["loss"]))
        if "kernels" in report:
            kernels = report["kernels"]
    return kernels


def finish(child: subprocess.Popen, what: str, log: Path) -> None:
    """Wait for ``child``; a failure raises one line with the tail of its ``log``."""
    if child.wait() != 0:
        tail = log.read_text(encoding="utf-8", errors="replace").strip().splitlines()[-5:]
        raise RuntimeError(f"tiny world: training the {what} model failed: " + " | ".join(tail))


def main(argv: list[str] | None = None) -> int:
    """The child: apply the settings, train, report (one JSON line per epoch, then the kernels)."""
    spec = json.loads((argv if argv is not None else sys.argv[1:])[0])
    settings = TrainSettings(**spec["settings"])
    kernels = apply_in_process(settings.threads)
    kernels["problems"] = "; ".join(problems(kernels, settings.threads))

    from transformers import AutoTokenizer

    from tasks.tiny.model import train_model
    from tasks.tiny.world import generate_world, training_texts

    start = time.perf_counter()
    out_dir = Path(spec["out_dir"])
    tokenizer = AutoTokenizer.from_pretrained(spec["tokenizer_dir"])
    world = generate_world(spec["seed"], spec["size"])
    texts = training_texts(world, include_forget=spec["include_forget"])

    def report(epoch: int, loss: float) -> None:
        print(json.dumps({"epoch": epoch, "loss": loss}), flush=True)

    train_model(texts, tokenizer, settings, spec["seed"], out_dir, report)
    if not spec["include_forget"]:
        record = {"trained_on": "retain + utility", "model_s": round(time.perf_counter() - start, 2)}
        (out_dir / "gold.json").write_text(json.dumps(record) + "\n", encoding="utf-8")
    print(json.dumps({"kernels": kernels}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
