"""Every reference entry on the tiny task, over world seeds and run seeds: the final score per world as
mean ± seed SD, the task aggregate, MIA AUC and utility (means over every run), the wall time, and whether
the entry beats each world's untouched target; a markdown table for the README (`--json`: the runs).

Each (entry, variant) runs as one seed group through the harness's `run_group`, exactly like
`unlearn-harness run FILE --task tiny --seeds 0,1,2 --world-seeds 0,1,2` (isolated child, budget,
checkpoint validation, official scoring), with its default parameters, in full fine-tuning and, where
it has one, in 4-bit NF4 + LoRA mode. A second part runs the variants behind the seed paper's findings
(aggressive ascent; ascent then a short or a long descent on retain). The untouched target and the
retain-only gold model of each world are the reference rows.

    python benchmarks/reference_table.py --world-seeds 0,1,2 --seeds 0,1,2 --no-findings --no-lora
    python benchmarks/reference_table.py --entries ga,sugd --seeds 0 --no-findings --output table.md
    python benchmarks/reference_table.py --entries ga --set ga.lr=3e-3 --no-lora --no-findings  # a trial
    python benchmarks/reference_table.py --world-seeds 0,1,2 --no-full --no-findings  # only the LoRA modes

Wall times are measured on whatever machine runs this; the table says which.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from harness.errors import HarnessError  # noqa: E402
from harness.reference import NAMES, ensure_reference_rows, reference_checkpoints  # noqa: E402
from harness.runner import run_group  # noqa: E402
from leaderboard.record import RunRecord  # noqa: E402
from leaderboard.store import Store, default_db  # noqa: E402
from tasks.registry import get_task  # noqa: E402
from tasks.spec import TaskSpec  # noqa: E402

SUBMISSIONS_DIR = REPO / "submissions"
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


@dataclass
class Row:
    """One table row: an entry variant (or a reference) and its records, one per (world, seed)."""

    label: str
    detail: str
    records: list[RunRecord]
    wall_s: float | None = None  # the whole group's wall time (runs, evaluation, recording)
    params: dict[str, Any] = field(default_factory=dict)


def entries() -> list[str]:
    return sorted(p.stem for p in SUBMISSIONS_DIR.glob("*.py") if not p.stem.startswith(("unlearn_", "_")))


def fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"


def mean_sd(values: list[float]) -> str:
    """'0.512 ± 0.031' (sample SD over seeds), '0.512' for one value, '-' for none."""
    if not values:
        return "-"
    if len(values) == 1:
        return fmt(values[0])
    return f"{statistics.fmean(values):.3f} ± {statistics.stdev(values):.3f}"


def _mean(records: list[RunRecord], name: str) -> float | None:
    values = [getattr(r, name) for r in records if getattr(r, name) is not None]
    return statistics.fmean(values) if values else None


def world_finals(records: list[RunRecord], world: int) -> list[float]:
    return [r.final_score for r in records if r.world_seed == world and r.final_score is not None]


def beats(row: Row, targets: dict[int, float], worlds: list[int]) -> tuple[int, int]:
    """(worlds where the row's mean final is above that world's untouched target, worlds compared)."""
    compared = [w for w in worlds if world_finals(row.records, w) and w in targets]
    won = sum(statistics.fmean(world_finals(row.records, w)) > targets[w] for w in compared)
    return won, len(compared)


def header(worlds: list[int]) -> list[str]:
    cols = ["entry", "mode / params", "status"] + [f"final, world {w}" for w in worlds]
    cols += ["task agg.", "MIA AUC", "utility", "train s (max)", "beats target"]
    return ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]


def markdown_row(row: Row, worlds: list[int], targets: dict[int, float]) -> str:
    ok = sum(r.status in ("OK", "SALVAGED") for r in row.records)
    statuses = sorted({r.status for r in row.records})
    status = f"{'/'.join(statuses)} {ok}/{len(row.records)}" if len(row.records) > 1 else statuses[0]
    finals = [mean_sd(world_finals(row.records, w)) for w in worlds]
    used = [r.budget_used_s for r in row.records if r.budget_used_s is not None]
    train = f"{statistics.fmean(used):.0f} ({max(used):.0f})" if used else "-"
    won, compared = beats(row, targets, worlds)
    verdict = "-" if not row.records or row.records[0].role != "entry" else f"{won}/{compared}"
    cells = [row.label, row.detail, status, *finals, fmt(_mean(row.records, "task_aggregate"))]
    cells += [fmt(_mean(row.records, "auc")), fmt(_mean(row.records, "mmlu_average")), train, verdict]
    return "| " + " | ".join(cells) + " |"


def reference_rows(tasks: dict[int, TaskSpec], results: Path) -> list[Row]:
    """The untouched target and gold rows of every world, recorded once per (role, world) on the board
    (`harness.reference.ensure_reference_rows`, which keys presence by world)."""
    for task in tasks.values():
        ensure_reference_rows(task, results, progress=False)
    present = {(r.role, r.world_seed): r for r in Store(default_db(results)).records(task="tiny")}
    by_role: dict[str, list[RunRecord]] = {}
    for world, task in tasks.items():
        for role, _ in reference_checkpoints(task):
            by_role.setdefault(role, []).append(present[(role, world)])
    return [Row(f"*{NAMES[role]}*", "reference", records) for role, records in by_role.items()]


def parse_overrides(items: list[str]) -> dict[str, dict[str, Any]]:
    """['ga.lr=3e-3', ...] -> {'ga': {'lr': 0.003}}: values read as JSON, else kept as text."""
    overrides: dict[str, dict[str, Any]] = {}
    for item in items:
        target, sep, raw = item.partition("=")
        entry, dot, key = target.partition(".")
        if not sep or not dot or not key.isidentifier():
            raise HarnessError(f"--set {item!r}: expected ENTRY.KEY=VALUE, e.g. ga.lr=3e-3")
        try:
            value = json.loads(raw)
        except ValueError:
            value = raw
        overrides.setdefault(entry, {})[key] = value
    return overrides


def plan(args: argparse.Namespace, overrides: dict[str, dict[str, Any]]) -> list[tuple[str, str, dict]]:
    """(entry, detail, params) of every group to run: full mode, then LoRA modes, then the findings."""
    names = args.entries.split(",") if args.entries else entries()
    if unknown := [n for n in names if not (SUBMISSIONS_DIR / f"{n}.py").is_file()]:
        raise HarnessError(f"--entries: no submissions/{unknown[0]}.py")
    if stray := sorted(set(overrides) - set(names)):
        raise HarnessError(f"--set {stray[0]}.*: {stray[0]} is not among the entries run")
    steps = []
    for name in names if not args.no_full else ():
        params = overrides.get(name, {})
        steps.append((name, "full" + "".join(f", {k} {v}" for k, v in params.items()), params))
    if not args.no_lora:
        for name in (n for n in names if n in QUANTIZABLE):
            detail = "lora4bit: " + ", ".join(f"{k} {v}" for k, v in QUANTIZABLE[name].items())
            steps.append((name, detail, {"mode": "lora4bit", **QUANTIZABLE[name]}))
    if not args.no_findings:
        steps += [(name, label, params) for label, name, params in FINDINGS]
    return steps


def run_plan(
    steps: list, tasks: dict[int, TaskSpec], seeds: list[int], args: argparse.Namespace
) -> list[Row]:
    rows = []
    for name, detail, params in steps:
        variant = "default" if not params else ",".join(f"{k}={v}" for k, v in params.items())
        started = time.perf_counter()
        _, results = run_group(
            SUBMISSIONS_DIR / f"{name}.py", list(tasks.values()), seeds, budget_s=args.budget, params=params,
            variant=variant, results_root=args.results, progress=False,
        )  # fmt: skip
        row = Row(name, detail, [r.record for r in results], time.perf_counter() - started, params)
        rows.append(row)
        finals = {w: mean_sd(world_finals(row.records, w)) for w in tasks}
        print(f"{name} [{detail}]: {finals}, group {row.wall_s:.0f} s", file=sys.stderr, flush=True)
    return rows


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--entries", help="comma-separated entries (default: all)")
    parser.add_argument("--world-seeds", default="0", help="tiny worlds, e.g. 0,1,2 (default 0)")
    parser.add_argument("--seeds", default="0,1,2", help="run seeds per world (default 0,1,2)")
    parser.add_argument("--budget", type=float, default=120.0, help="seconds per run (default 120)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="ENTRY.KEY=VALUE",
                        help="a parameter of one entry's full-mode row, e.g. ga.lr=3e-3 (repeatable)")  # fmt: skip
    parser.add_argument("--results", type=Path, help="results folder (default: a temporary one)")
    parser.add_argument("--no-findings", action="store_true", help="skip the seed paper's finding variants")
    parser.add_argument("--no-lora", action="store_true", help="skip the 4-bit + LoRA modes")
    parser.add_argument("--no-full", action="store_true", help="skip the full fine-tuning rows")
    parser.add_argument("--output", type=Path, help="also write the markdown here")
    parser.add_argument("--json", action="store_true", help="print the rows and their runs as JSON")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    from harness.cli.run import parse_seeds

    args = parse_args(argv)
    try:
        worlds, seeds = parse_seeds("--world-seeds", args.world_seeds), parse_seeds("--seeds", args.seeds)
        steps = plan(args, parse_overrides(args.overrides))
        args.results = args.results or Path(tempfile.mkdtemp(prefix="reference-table-"))
        tasks = {w: get_task("tiny", {"seed": str(w), "gold": "true"}, progress=False) for w in worlds}
        refs = reference_rows(tasks, args.results)
        untouched = [r for row in refs for r in row.records if r.role == "reference-target"]
        targets = {w: f[0] for w in worlds if (f := world_finals(untouched, w))}
        rows = refs + run_plan(steps, tasks, seeds, args)
    except HarnessError as exc:
        sys.exit(f"error: {exc}")
    lines = [
        f"Tiny task, worlds {args.world_seeds}, run seeds {args.seeds} (final: mean ± seed SD per world), "
        f"budget {args.budget:.0f} s per run, {platform.machine()} with {os.cpu_count()} CPUs.",
        "",
        *header(worlds),
        *(markdown_row(row, worlds, targets) for row in rows),
    ]
    text = "\n".join(lines) + "\n"
    print(json.dumps(to_json(rows, worlds, targets), indent=2) if args.json else text)
    if args.output:
        args.output.write_text(text)
    print(f"runs and leaderboard in {args.results}", file=sys.stderr)


def to_json(rows: list[Row], worlds: list[int], targets: dict[int, float]) -> list[dict[str, Any]]:
    out = []
    for row in rows:
        won, compared = beats(row, targets, worlds)
        runs = [
            {"world_seed": r.world_seed, "seed": r.seed, "status": r.status, "final_score": r.final_score,
             "task_aggregate": r.task_aggregate, "auc": r.auc, "mmlu_average": r.mmlu_average,
             "budget_used_s": r.budget_used_s, "run_dir": r.run_dir}
            for r in row.records
        ]  # fmt: skip
        out.append(
            {"entry": row.label, "detail": row.detail, "params": row.params, "group_wall_s": row.wall_s,
             "beats_target_worlds": [won, compared], "runs": runs}
        )  # fmt: skip
    return out


if __name__ == "__main__":
    main()
