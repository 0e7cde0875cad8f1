"""The robustness audit of every reference entry on the tiny task: the README's table and seconds per attack.

Each entry is run through the harness like `unlearn-harness run` (harness.runner.run_submission, default
parameters, not recorded on the board) unless ``--checkpoint NAME=DIR`` gives its checkpoint, then
audited with harness.audit.audit. The untouched target and the gold model are audited too. The evaluation
cache and the audit's reference memo are pointed at a fresh temporary folder (``--warm`` keeps the usual
cache), so the first audit pays for the references (target and gold under every attack) and each later
one is what a new checkpoint costs.

    python benchmarks/audit_speed.py                                  # run and audit every entry
    python benchmarks/audit_speed.py --entries idk,ga --output table.md
    python benchmarks/audit_speed.py --checkpoint idk=runs/tiny/<run>/work/out

Prints two markdown tables (the audit, the seconds per attack) and the machine they ran on.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

ENTRIES = (
    "idk",
    "ga",
    "gd_retain",
    "grad_diff",
    "kl",
    "npo",
    "rmu",
    "sequential",
    "sugd",
    "layer_gd",
    "lora_npo",
    "ties_merge",
)
ATTACK_COLUMNS = ("quantize:int8", "quantize:nf4", "relearn", "probes:paraphrase", "probes:format")


def _f(value: float | None, sign: bool = False) -> str:
    if value is None:
        return "-"
    return f"{value:+.3f}" if sign else f"{value:.3f}"


def _checkpoints(args, task, results_root: Path) -> dict[str, Path]:
    from harness.runner import run_submission

    given = dict(item.split("=", 1) for item in args.checkpoint)
    out: dict[str, Path] = {"target (untouched)": Path(task.model_dir)}
    if task.gold_model_dir is not None:
        out["gold (retain only)"] = Path(task.gold_model_dir)
    for name in args.entries.split(","):
        if name in given:
            out[name] = Path(given[name])
            continue
        print(f"run {name} ...", file=sys.stderr, flush=True)
        result = run_submission(
            REPO / "submissions" / f"{name}.py", task, results_root=results_root, record=False, progress=False
        )
        out[name] = Path(result.run_dir) / "work" / "out"
    return out


def _row(name: str, data: dict) -> str:
    interval = data["official_forget_interval"]
    official = _f(data["official_forget"]) + (f" [{interval[0]:.2f}, {interval[1]:.2f}]" if interval else "")
    back = data["recovered"]["forget_knowledge"]
    mia = (data.get("mia_panel") or {}).get("auc", {})
    rel = (data.get("mia_panel") or {}).get("relative_to_gold") or {}
    ext = (data.get("extraction") or {}).get("mean", {}).get("checkpoint")
    cells = [name, official, _f(data["robust_forget"]), data["worst_attack"] or "-"]
    cells += [_f(back.get(a), sign=True) for a in ATTACK_COLUMNS]
    ckpt = mia.get("checkpoint", {})
    cells += [
        f"{_f(ckpt.get('loss'))} ({_f(rel.get('loss'), True)})",
        f"{_f(ckpt.get('min_k_pp'))} ({_f(rel.get('min_k_pp'), True)})",
    ]
    cells += [_f(ext), ", ".join(f"{k}: {v}" for k, v in data["errors"].items()) or ""]
    return "| " + " | ".join(cells) + " |"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--entries", default=",".join(ENTRIES))
    parser.add_argument(
        "--checkpoint", action="append", default=[], help="NAME=DIR: audit DIR, do not run NAME"
    )
    parser.add_argument(
        "--warm", action="store_true", help="keep the usual evaluation cache and reference memo"
    )
    parser.add_argument("--output", type=Path, help="also write the tables to this file")
    args = parser.parse_args()

    from harness.audit import audit
    from tasks.registry import get_task

    task = get_task("tiny", {"gold": "true"})  # the gold model is every audit's reference
    with tempfile.TemporaryDirectory(prefix="audit-speed-") as tmp:
        checkpoints = _checkpoints(args, task, Path(tmp) / "runs")
        if not args.warm:
            os.environ["UNLEARN_HARNESS_CACHE"] = str(Path(tmp) / "cache")  # the task's paths are resolved
        rows, seconds = [], []
        for name, path in checkpoints.items():
            print(f"audit {name} ...", file=sys.stderr, flush=True)
            result = audit(path, task, Path(tmp) / "audits" / name.split()[0])
            data = json.loads(json.dumps(result.to_json()))
            rows.append(_row(name, data))
            seconds.append((name, data["timings"]))
    head = ["entry", "official forget (know.) [95%]", "robust forget", "worst attack", *ATTACK_COLUMNS]
    head += ["MIA loss AUC (- gold)", "Min-K%++ AUC (- gold)", "extraction", "errors"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head), *rows, ""]
    attacks = ["official", "quantize", "relearn", "probes", "mia_panel", "extraction", "total"]
    lines += ["| audit | " + " | ".join(attacks) + " |", "|" + "---|" * (len(attacks) + 1)]
    lines += [
        f"| {name} | " + " | ".join(f"{t.get(a, 0):.1f}" for a in attacks) + " |" for name, t in seconds
    ]
    later = [t["total"] for _, t in seconds[1:]]
    if later:
        lines.append(
            f"\nmedian total after the first audit: {statistics.median(later):.1f} s, max {max(later):.1f} s"
        )
    lines.append(
        f"machine: {platform.machine()}, {os.cpu_count()} CPUs, torch threads {__import__('torch').get_num_threads()}"
    )
    text = "\n".join(lines)
    print(text)
    if args.output:
        args.output.write_text(text + "\n")


if __name__ == "__main__":
    main()
