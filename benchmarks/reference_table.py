"""Every reference entry on the tiny task: final score with its 95% interval, task aggregate, MIA score
(and AUC), utility (MMLU-style average) and wall time, as a markdown table for the README.

Each entry runs through the harness exactly like `unlearn-harness run` (isolated child, budget, checkpoint
validation, official scoring, bootstrap intervals) with its default parameters, in full fine-tuning and,
where it has one, in 4-bit NF4 + LoRA mode. A second table runs the variants behind the seed paper's
findings (aggressive ascent; ascent then a short or a long descent on retain). The untouched target and
the retain-only gold model are the reference rows.

    python benchmarks/reference_table.py                      # everything (about 15-30 min on 2 cores)
    python benchmarks/reference_table.py --entries ga,sugd --no-findings --output table.md

Wall times are measured on whatever machine runs this; the table says which.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from harness.cli.demo import SUBMISSIONS_DIR, ensure_reference_rows  # noqa: E402
from harness.runner import run_submission  # noqa: E402
from leaderboard.record import RunRecord  # noqa: E402
from leaderboard.store import Store, default_db  # noqa: E402
from tasks.registry import get_task  # noqa: E402

#: entries with a 4-bit NF4 + LoRA mode, and the settings that mode runs with on the tiny task (the
#: low-rank update, scaled by alpha / r = 0.25, needs more steps than full fine-tuning; see each docstring)
QUANTIZABLE = {
    "ga": {"lr": 3e-3, "epochs": 5},
    "gd_retain": {"lr": 1e-2, "epochs": 3},
    "grad_diff": {"lr": 3e-3, "epochs": 6},
    "sequential": {"phases": "ga:3e-3:5,gd:3e-3:2"},
}
#: (label, entry, params): the seed paper's findings, re-measured on the tiny world
FINDINGS = (
    ("aggressive ascent (GA lr 1e-2 x 3)", "ga", {"lr": 1e-2, "epochs": 3}),
    ("ascent alone (GA lr 3e-3 x 3)", "ga", {"lr": 3e-3, "epochs": 3}),
    ("ascent, then short descent on retain", "sequential", {"phases": "ga:3e-3:3,gd:3e-3:1"}),
    ("ascent, then long descent on retain", "sequential", {"phases": "ga:3e-3:3,gd:3e-3:10"}),
    ("descent on retain, 10 epochs", "gd_retain", {"lr": 3e-3, "epochs": 10}),
)
HEADER = (
    "| entry | mode / params | status | final [95% CI] | task agg. | MIA score (AUC) | utility | wall s |"
)


def entries() -> list[str]:
    return sorted(p.stem for p in SUBMISSIONS_DIR.glob("*.py") if not p.stem.startswith(("unlearn_", "_")))


def fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"


def row(label: str, detail: str, record: RunRecord) -> str:
    low, high = record.intervals.get("final_score", (None, None))
    interval = f" [{fmt(low)}, {fmt(high)}]" if low is not None else ""
    auc = f" ({fmt(record.auc)})" if record.auc is not None else ""
    wall = f"{record.budget_used_s:.0f}" if record.budget_used_s is not None else "-"
    return (
        f"| {label} | {detail} | {record.status} | {fmt(record.final_score)}{interval} | "
        f"{fmt(record.task_aggregate)} | {fmt(record.mia_score)}{auc} | {fmt(record.mmlu_average)} | {wall} |"
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--entries", help="comma-separated entries (default: all)")
    parser.add_argument("--budget", type=float, default=120.0, help="seconds per entry (default 120)")
    parser.add_argument("--results", type=Path, help="results folder (default: a temporary one)")
    parser.add_argument("--no-findings", action="store_true", help="skip the seed paper's finding variants")
    parser.add_argument("--no-lora", action="store_true", help="skip the 4-bit + LoRA modes")
    parser.add_argument("--output", type=Path, help="also write the markdown here")
    args = parser.parse_args(argv)

    results = args.results or Path(tempfile.mkdtemp(prefix="reference-table-"))
    task = get_task("tiny", {"gold": "true"}, progress=False)
    names = args.entries.split(",") if args.entries else entries()
    lines = [
        f"Tiny task, budget {args.budget:.0f} s per entry, {platform.machine()} with {os.cpu_count()} CPUs.",
        "",
    ]
    lines += [HEADER, "|" + "---|" * 8]
    ensure_reference_rows(task, results, progress=False)
    for record in Store(default_db(results)).records(task=task.name):
        if record.role != "entry":
            lines.append(row(f"*{record.submission_name}*", "reference", record))
    plan = [(name, "full", {}) for name in names]
    if not args.no_lora:
        plan += [
            (
                name,
                "lora4bit: " + ", ".join(f"{k} {v}" for k, v in QUANTIZABLE[name].items()),
                {"mode": "lora4bit", **QUANTIZABLE[name]},
            )
            for name in names
            if name in QUANTIZABLE
        ]
    if not args.no_findings:
        plan += [(name, label, params) for label, name, params in FINDINGS]
    for name, detail, params in plan:
        variant = "default" if not params else ",".join(f"{k}={v}" for k, v in params.items())
        result = run_submission(
            SUBMISSIONS_DIR / f"{name}.py", task, budget_s=args.budget, params=params, variant=variant,
            results_root=results, progress=False,
        )  # fmt: skip
        lines.append(row(name, detail, result.record))
        print(lines[-1], flush=True)
    text = "\n".join(lines) + "\n"
    print(text)
    if args.output:
        args.output.write_text(text)
    print(f"runs and leaderboard in {results}", file=sys.stderr)


if __name__ == "__main__":
    main()
