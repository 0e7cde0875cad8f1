"""How the relearning attack's result grows with its budget: a sensitivity check of the fixed recipe.

The audit's relearning recipe is fixed per task (harness/audit/relearn.py, RECIPES; tiny: AdamW lr 1e-3,
1 epoch, batch 2) and is not changed here. This benchmark reruns the same attack with more epochs at the
same learning rate on each entry's checkpoint and on the gold model, to show whether a larger budget
would bring back what the fixed one does not, and whether it then also "teaches" the gold model the
held-out rows (which it never saw: its gain is what relearning alone teaches).

Each entry is run through the harness (harness.runner.run_submission, default parameters, run seed 0,
not recorded), once per world; the evaluation cache and the reference memo are the usual ones.

    python benchmarks/relearn_budget.py                          # idk, worlds 0,1,2, epochs 1,2,4
    python benchmarks/relearn_budget.py --entries idk,npo --epochs 1,3 --world-seeds 0

Prints one markdown table: per entry, world and epoch count, the held-out gain of the checkpoint and of
the gold model, the recovery above gold and its share of what the checkpoint hides.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("UNLEARN_HARNESS_OFFICIAL_LOAD", "0")


def _f(value: float | None) -> str:
    return "-" if value is None else f"{value:+.3f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--entries", default="idk")
    parser.add_argument("--world-seeds", default="0,1,2")
    parser.add_argument("--epochs", default="1,2,4", help="epoch counts to try (1 is the audit's recipe)")
    args = parser.parse_args()

    from harness.audit.relearn import RECIPES, run_relearn
    from harness.runner import run_submission
    from tasks.registry import get_task

    base = RECIPES["tiny"]
    epochs = [int(e) for e in args.epochs.split(",")]
    head = [
        "entry",
        "world",
        "epochs",
        "held-out gain",
        "gold's gain",
        "recovery above gold",
        "share of hidden",
    ]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    with tempfile.TemporaryDirectory(prefix="relearn-budget-") as tmp:
        for w in [int(x) for x in args.world_seeds.split(",")]:
            task = get_task("tiny", {"seed": str(w), "gold": "true"}, progress=False)
            for name in args.entries.split(","):
                print(f"run {name} (world {w}) ...", file=sys.stderr, flush=True)
                result = run_submission(
                    REPO / "submissions" / f"{name}.py", task, results_root=Path(tmp) / "runs", record=False,
                    progress=False, seed=0,
                )  # fmt: skip
                checkpoint = Path(result.run_dir) / "work" / "out"
                for e in epochs:
                    print(f"relearn {name} (world {w}, {e} epochs) ...", file=sys.stderr, flush=True)
                    recipe = dataclasses.replace(base, epochs=e)
                    r = run_relearn(checkpoint, task, Path(tmp) / f"{name}-w{w}-e{e}", recipe=recipe)
                    cells = [name, str(w), str(e), _f(r.gain("checkpoint")), _f(r.gain("gold"))]
                    share = r.share_of_hidden()
                    cells += [_f(r.recovery_above_gold()), "-" if share is None else f"{share:.0%}"]
                    lines.append("| " + " | ".join(cells) + " |")
    print(f"recipe: {dataclasses.asdict(base)} with the epochs varied")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
