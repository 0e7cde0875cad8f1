"""The harness's own overhead around a well-formed submission on the tiny task: staging, isolation, validation.

A fast well-formed submission (tests/fixtures/submissions/good.py: copies the model with every weight
moved by one ulp) is run without scoring, alternately under bubblewrap and as a plain child, `--repeats`
times each. Printed, as medians: the static check, staging (fresh work directory, data in jsonl and
parquet, model), the run (child start to exit; the isolation overhead is the bubblewrap run minus the
plain run, measured side by side), and the checkpoint validation. The target is an overhead (check +
staging + isolation + validation) under 5 s on the tiny task. Run:

    python benchmarks/run_overhead.py [--task tiny] [--repeats 3]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
from pathlib import Path

from harness.runner import run_submission
from harness.sandbox import detect_isolation
from tasks.registry import get_task

GOOD = Path(__file__).resolve().parents[1] / "tests" / "fixtures" / "submissions" / "good.py"
TARGET_S = 5.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--task", default="tiny")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    task = get_task(args.task)
    isolated = detect_isolation("auto")
    modes = [isolated, "none"] if isolated != "none" else ["none"]
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
    main_mode = median[modes[0]]
    isolation = main_mode["run"] - median["none"]["run"] if len(modes) > 1 else 0.0
    overhead = main_mode["check"] + main_mode["stage"] + isolation + main_mode["validate"]
    if len(modes) > 1:
        ratio = main_mode["run"] / median["none"]["run"]
        print(
            f"isolation overhead ({modes[0]} run - plain run): {isolation:.3f} s (run time ratio {ratio:.2f}x)"
        )
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
