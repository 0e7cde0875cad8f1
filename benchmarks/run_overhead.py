"""The harness's own overhead around a well-formed submission on the tiny task: staging, isolation, validation.

A fast well-formed submission (tests/fixtures/submissions/good.py: copies the model with every weight
moved by one ulp) is run without scoring, in turn under every isolation that works here (bubblewrap,
the unshare jail) and as a plain child, `--repeats` times each. Printed, as medians: the static check,
staging (fresh work directory, data in jsonl and parquet, model), the run (child start to exit; an
isolation's overhead is its run minus the plain run, measured side by side in one process), and the
checkpoint validation. Targets: each isolation's overhead under 1 s per run, and the harness's whole
overhead (check + staging + isolation + validation) under 5 s on the tiny task. Run:

    python benchmarks/run_overhead.py [--task tiny] [--repeats 3]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
from pathlib import Path

from harness.errors import HarnessError
from harness.runner import run_submission
from harness.sandbox import detect_isolation
from tasks.registry import get_task

GOOD = Path(__file__).resolve().parents[1] / "tests" / "fixtures" / "submissions" / "good.py"
TARGET_S = 5.0
ISOLATION_TARGET_S = 1.0


def _available() -> list[str]:
    modes = []
    for mode in ("bwrap", "unshare"):
        try:
            modes.append(detect_isolation(mode))
        except HarnessError:
            continue
    return modes


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--task", default="tiny")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    task = get_task(args.task)
    isolated = _available()
    modes = [*isolated, "none"]
    timings: dict[str, dict[str, list[float]]] = {mode: {} for mode in modes}
    with tempfile.TemporaryDirectory(prefix="run-overhead-") as tmp:
        # a warm-up run: imports and the first parquet write are a once-per-process cost, printed apart
        first = run_submission(
            GOOD, task, results_root=Path(tmp), record=False, score=False, progress=False, isolation="none"
        )
        for _ in range(args.repeats):
            for mode in modes:
                result = run_submission(
                    GOOD,
                    task,
                    results_root=Path(tmp),
                    record=False,
                    score=False,
                    progress=False,
                    isolation=mode,
                )
                if result.status != "OK":
                    raise SystemExit(f"{mode}: {result.status}: {result.message}\n{result.log_tail}")
                for stage, seconds in result.record.timings.items():
                    timings[mode].setdefault(stage, []).append(seconds)

    median = {mode: {k: statistics.median(v) for k, v in stages.items()} for mode, stages in timings.items()}
    print(
        f"task {task.name}, {args.repeats} runs per mode, medians in seconds (isolation available: {isolated})"
    )
    print(f"{'stage':<10}" + "".join(f"{mode:>10}" for mode in modes))
    for stage in ("check", "stage", "run", "validate"):
        print(f"{stage:<10}" + "".join(f"{median[mode][stage]:>10.3f}" for mode in modes))
    for mode in isolated:
        extra = median[mode]["run"] - median["none"]["run"]
        verdict = "under" if extra < ISOLATION_TARGET_S else "OVER"
        print(
            f"isolation overhead ({mode} run - plain run): {extra:.3f} s, run time ratio "
            f"{median[mode]['run'] / median['none']['run']:.2f}x ({verdict} the {ISOLATION_TARGET_S:.0f} s target)"
        )
    main_mode = median[modes[0]]
    isolation = main_mode["run"] - median["none"]["run"] if isolated else 0.0
    overhead = main_mode["check"] + main_mode["stage"] + isolation + main_mode["validate"]
    print(
        f"first validation in a fresh process: {first.record.timings['validate']:.3f} s "
        "(torch and transformers are imported in a background thread while the submission runs)"
    )
    verdict = "under" if overhead < TARGET_S else "OVER"
    print(
        f"overhead check + staging + isolation + validation: {overhead:.3f} s ({verdict} the {TARGET_S:.0f} s target)"
    )


if __name__ == "__main__":
    main()
