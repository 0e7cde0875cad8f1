"""One thread or torch's (one per core) for the tiny task's evaluation, on a free machine and with a core busy.

harness/inference/threads.py evaluates a small model on one CPU thread. This measures why, side by side in
one run: `evaluate` (fast path, no cache) of the tiny target and gold model with UNLEARN_HARNESS_EVAL_THREADS
set to torch's count and to 1, alternating, median of --repeats; then the same while another process
keeps one core busy (a Python busy loop, started and stopped here). It also checks that both counts give
byte-identical files.

    python benchmarks/eval_threads.py [--repeats 5] [--dtype float32]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch  # noqa: E402

from harness.inference import evaluate  # noqa: E402
from harness.inference.threads import THREADS_ENV  # noqa: E402


def _files(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def measure(model_dir: Path, task, counts: list[int], repeats: int, dtype: str, tmp: Path, tag: str):
    """Median wall seconds of `evaluate` per thread count (alternating), and whether the files agree."""
    times: dict[int, list[float]] = {n: [] for n in counts}
    outputs: dict[int, dict[str, bytes]] = {}
    for repeat in range(repeats):
        for n in counts:
            os.environ[THREADS_ENV] = str(n)
            run_dir = tmp / f"{tag}-{n}-{repeat}"
            started = time.perf_counter()
            evaluate(model_dir, task, run_dir, dtype=dtype, use_cache=False, progress=False)
            times[n].append(time.perf_counter() - started)
            outputs.setdefault(n, _files(run_dir))
    same = all(outputs[n] == outputs[counts[0]] for n in counts)
    return {n: statistics.median(t) for n, t in times.items()}, same


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--dtype", default="float32")
    args = parser.parse_args()

    from tasks.registry import get_task

    task = get_task("tiny", {"gold": "true"}, progress=False)
    default = torch.get_num_threads()
    counts = sorted({default, 1}, reverse=True)
    saved = os.environ.get(THREADS_ENV)
    with tempfile.TemporaryDirectory(prefix="eval-threads-") as tmp:
        for label, model_dir in (("target", task.model_dir), ("gold", task.gold_model_dir)):
            evaluate(
                model_dir,
                task,
                Path(tmp) / f"warm-{label}",
                dtype=args.dtype,
                use_cache=False,
                progress=False,
            )
            for load in ("free", "one core busy"):
                busy = None
                if load != "free":
                    busy = subprocess.Popen([sys.executable, "-c", "while True: pass"])
                    time.sleep(0.5)
                try:
                    medians, same = measure(
                        model_dir, task, counts, args.repeats, args.dtype, Path(tmp), f"{label}-{load[:4]}"
                    )
                finally:
                    if busy is not None:
                        busy.kill()
                        busy.wait()
                cells = ", ".join(f"{n} thread{'s' if n > 1 else ''} {medians[n]:.3f} s" for n in counts)
                ratio = medians[counts[0]] / medians[1] if counts[0] != 1 else 1.0
                print(
                    f"{label} model, {args.dtype}, {load}: {cells}; {counts[0]} threads / 1 thread = {ratio:.2f}x "
                    f"(median of {args.repeats}); identical files: {'yes' if same else 'NO'}",
                    flush=True,
                )
    if saved is None:
        os.environ.pop(THREADS_ENV, None)
    else:
        os.environ[THREADS_ENV] = saved
    print(
        f"machine: {os.cpu_count()} CPUs, torch's default threads {default}, load average {os.getloadavg()[0]:.2f}"
    )


if __name__ == "__main__":
    main()
