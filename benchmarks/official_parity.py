"""The project's evaluation against the organisers' environment, float32 and bfloat16, on the tiny task.

For each checkpoint (the tiny target, the gold model, ga at lr 3e-3 x 3 epochs, grad_diff at lr 2e-3 x 3
epochs, its defaults of 2 Dec 2026; the two unlearned ones are trained here once, in-process, seed 0) and
each dtype:
- **official**: the exact path run by the organisers' pinned environment (`unlearn-harness env official`:
  transformers 4.45.2, pandas 2.2.3, scikit-learn 1.5.0, rouge_score 0.1.2) through the project's worker;
- **exact** and **fast**: this environment's exact path and default (fast) path.
Printed per checkpoint: the generations that differ from the official ones, whether the CSV files are
byte-identical, whether the results line is, the largest NLL and MIA-loss difference, and the rows the
fast path settled with the exact loop (near ties), with seconds per path. Run:

    python benchmarks/official_parity.py [--dtypes float32,bfloat16] [--only target,gold,ga,grad_diff]
"""

from __future__ import annotations

import argparse
import csv
import importlib
import json
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "submissions"))  # their sibling imports

from harness.envs import official  # noqa: E402
from harness.inference import evaluate  # noqa: E402
from harness.inference.engine import near_ties  # noqa: E402
from tasks.tiny import build_tiny, tiny_spec  # noqa: E402

ENTRIES = {
    "ga": {"lr": 3e-3, "epochs": 3},
    "grad_diff": {"lr": 2e-3, "epochs": 3},
}  # grad_diff: its defaults of 2 Dec 2026


def checkpoints(task, root: Path, only: list[str]) -> dict[str, Path]:
    """The checkpoints to compare; the unlearned ones trained once under `root`."""
    out = {"target": Path(task.model_dir), "gold": Path(task.gold_model_dir)}
    for name, params in ENTRIES.items():
        if name not in only:
            continue
        folder = root / f"{name}-{'-'.join(f'{k}{v}' for k, v in params.items()) or 'defaults'}"
        if not (folder / "config.json").is_file():
            entry = importlib.import_module(name)
            entry.unlearn(
                str(task.model_dir), str(folder), str(task.forget_dir), str(task.retain_dir), **params
            )
        out[name] = folder
    return {k: v for k, v in out.items() if k in only}


def _rows(run_dir: Path, name: str) -> list[dict]:
    with open(run_dir / name, newline="") as handle:
        return list(csv.DictReader(handle))


def compare(official_dir: Path, other: Path) -> dict:
    """Differences of `other` from the official run directory."""
    out = {
        "generations_differ": 0,
        "rows": 0,
        "csv_identical": True,
        "max_nll_diff": 0.0,
        "max_mia_diff": 0.0,
    }
    for name in ("forget_0.csv", "retain_0.csv", "mia_results/member_0.csv", "mia_results/nonmember_0.csv"):
        a, b = _rows(official_dir, name), _rows(other, name)
        out["csv_identical"] &= (official_dir / name).read_bytes() == (other / name).read_bytes()
        key = "max_mia_diff" if name.startswith("mia") else "max_nll_diff"
        for x, y in zip(a, b):
            out[key] = max(out[key], abs(float(x["nll"]) - float(y["nll"])))
            if "model_output" in x:
                out["rows"] += 1
                out["generations_differ"] += x["model_output"] != y["model_output"]
    lines = [(d / "evaluation_results.jsonl").read_text() for d in (official_dir, other)]
    out["results_identical"] = lines[0] == lines[1]
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dtypes", default="float32,bfloat16")
    parser.add_argument("--only", default="target,gold,ga,grad_diff")
    parser.add_argument("--work", type=Path, default=Path("runs/official-parity"))
    args = parser.parse_args()
    env = official.create(log=lambda text: None)
    print(
        f"official environment: {env.root} (transformers {env.installed.get('transformers')}, torch {env.torch})"
    )
    task = tiny_spec(build_tiny(seed=0, size="tiny", gold=True, progress=False))
    models = checkpoints(task, args.work / "checkpoints", args.only.split(","))
    report = {}
    for dtype in args.dtypes.split(","):
        for name, checkpoint in models.items():
            base = args.work / dtype / name
            t0 = time.perf_counter()
            official.evaluate(env, checkpoint, task, base / "official", dtype=dtype, progress=False)
            seconds = {"official": time.perf_counter() - t0}
            row = {}
            for path, exact in (("exact", True), ("fast", False)):
                t0 = time.perf_counter()
                evaluate(
                    checkpoint, task, base / path, exact=exact, dtype=dtype, use_cache=False, progress=False
                )
                seconds[path] = time.perf_counter() - t0
                row[path] = compare(base / "official", base / path)
            row["fast"]["near_ties"] = near_ties(base / "fast")
            row["fast"]["exact_steps"] = near_ties(base / "fast", "exact_steps")
            row["seconds"] = {k: round(v, 2) for k, v in seconds.items()}
            report[f"{dtype}/{name}"] = row
            print(f"{dtype:9} {name:10} {json.dumps(row)}", flush=True)
    (args.work / "report.json").write_text(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
