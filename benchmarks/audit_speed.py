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
    python benchmarks/audit_speed.py --world-seeds 0,1,2 --seeds 0,1,2 --entries idk --json audits.json

Prints two markdown tables (the audit and the seconds per attack, both of the first world and seed) and
the machine they ran on; with several worlds or seeds also a spread table: per entry and world, robust
forget, the relearning attack's recovery above the gold model and the share of the hidden knowledge it
brought back (mean ± sample SD over run seeds). `--json` writes every audit.
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
os.environ.setdefault("UNLEARN_HARNESS_OFFICIAL_LOAD", "0")  # the audit is timed, not the official load

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


def _checkpoints(args, task, results_root: Path, seed: int, first: bool) -> dict[str, Path]:
    """The checkpoints to audit on one (world, seed): the references on a world's first seed only, then each
    entry's (``--checkpoint`` ones on the first world and seed only)."""
    from harness.runner import run_submission

    given = dict(item.split("=", 1) for item in args.checkpoint) if first else {}
    out: dict[str, Path] = {}
    if seed == args.seed_list[0]:
        out["target (untouched)"] = Path(task.model_dir)
        if task.gold_model_dir is not None:
            out["gold (retain only)"] = Path(task.gold_model_dir)
    for name in args.entries.split(","):
        if name in given:
            out[name] = Path(given[name])
            continue
        print(f"run {name} (world {task.extra.get('seed')}, seed {seed}) ...", file=sys.stderr, flush=True)
        result = run_submission(
            REPO / "submissions" / f"{name}.py", task, results_root=results_root, record=False, progress=False,
            seed=seed,
        )  # fmt: skip
        out[name] = Path(result.run_dir) / "work" / "out"
    return out


def hidden_share(data: dict) -> float | None:
    """relearn.share_of_hidden of an audit.json (computed for files written before that field)."""
    from harness.audit.relearn import share_of_hidden

    relearn = data.get("relearn") or {}
    if "share_of_hidden" in relearn:
        return relearn["share_of_hidden"]["forget_knowledge"]
    before = relearn.get("before") or {}
    return share_of_hidden(
        (before.get("target") or {}).get("forget_knowledge"),
        (before.get("checkpoint") or {}).get("forget_knowledge"),
        (relearn.get("recovery_above_gold") or {}).get("forget_knowledge"),
    )


def _mean_sd(values: list[float]) -> str:
    values = [v for v in values if v is not None]
    if not values:
        return "-"
    if len(values) == 1:
        return f"{values[0]:.3f}"
    return f"{statistics.fmean(values):.3f} ± {statistics.stdev(values):.3f}"


def spread_table(audits: list[dict], worlds: list[int]) -> list[str]:
    """Per entry and world: official / robust forget, the relearning attack's recovery above the gold model,
    and the share of the hidden knowledge it brought back (mean ± seed SD of each)."""
    names = list(dict.fromkeys(a["entry"] for a in audits))
    head = ["entry"] + [f"world {w}: official / robust forget, relearn, share of hidden" for w in worlds]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for name in names:
        cells = [name]
        for w in worlds:
            mine = [a["audit"] for a in audits if a["entry"] == name and a["world"] == w]
            relearn = [(d.get("recovered") or {}).get("forget_knowledge", {}).get("relearn") for d in mine]
            cells.append(
                ", ".join(
                    (
                        _mean_sd([d["official_forget"] for d in mine]) + " / " + _mean_sd([d["robust_forget"] for d in mine]),
                        _mean_sd(relearn), _mean_sd([hidden_share(d) for d in mine]),
                    )
                )
            )  # fmt: skip
        lines.append("| " + " | ".join(cells) + " |")
    return lines


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


def collect(args, worlds: list[int]) -> list[dict]:
    """Run and audit every (world, seed): one {entry, world, seed, audit} per audit, references first."""
    from harness.audit import audit
    from tasks.registry import get_task

    # the gold model is every audit's reference; every world is built before the cache is switched
    tasks = {w: get_task("tiny", {"seed": str(w), "gold": "true"}, progress=False) for w in worlds}
    audits: list[dict] = []
    with tempfile.TemporaryDirectory(prefix="audit-speed-") as tmp:
        for w in worlds:
            for seed in args.seed_list:
                first = (w, seed) == (worlds[0], args.seed_list[0])
                checkpoints = _checkpoints(args, tasks[w], Path(tmp) / "runs", seed, first)
                if (
                    not args.warm
                ):  # a fresh evaluation cache and reference memo (the tasks' paths are resolved)
                    os.environ["UNLEARN_HARNESS_CACHE"] = str(Path(tmp) / "cache")
                for name, path in checkpoints.items():
                    print(f"audit {name} (world {w}, seed {seed}) ...", file=sys.stderr, flush=True)
                    result = audit(path, tasks[w], Path(tmp) / "audits" / f"{name.split()[0]}-w{w}-s{seed}")
                    data = json.loads(json.dumps(result.to_json()))
                    audits.append({"entry": name, "world": w, "seed": seed, "audit": data})
    return audits


def render(audits: list[dict]) -> str:
    """The audit table and the seconds per attack of the first (world, seed); the spread table when there
    are several."""
    worlds = list(dict.fromkeys(a["world"] for a in audits))
    seeds = list(dict.fromkeys(a["seed"] for a in audits))
    first = [a for a in audits if (a["world"], a["seed"]) == (worlds[0], seeds[0])]
    head = ["entry", "official forget (know.) [95%]", "robust forget", "worst attack", *ATTACK_COLUMNS]
    head += ["MIA loss AUC (- gold)", "Min-K%++ AUC (- gold)", "extraction", "errors"]
    lines = [f"world {worlds[0]}, run seed {seeds[0]}:", "", "| " + " | ".join(head) + " |"]
    lines += ["|" + "---|" * len(head), *(_row(a["entry"], a["audit"]) for a in first), ""]
    attacks = ["official", "quantize", "relearn", "probes", "mia_panel", "extraction", "total"]
    lines += ["| audit | " + " | ".join(attacks) + " |", "|" + "---|" * (len(attacks) + 1)]
    lines += [
        f"| {a['entry']} | " + " | ".join(f"{a['audit']['timings'].get(k, 0):.1f}" for k in attacks) + " |"
        for a in first
    ]
    later = [a["audit"]["timings"]["total"] for a in first[1:]]
    if later:
        lines.append(
            f"\nmedian total after the first audit: {statistics.median(later):.1f} s, max {max(later):.1f} s"
        )
    if len(worlds) > 1 or len(seeds) > 1:
        lines += ["", f"worlds {worlds}, run seeds {seeds} (mean ± seed SD per world):", ""]
        lines += spread_table(audits, worlds)
    return "\n".join(lines)


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
    parser.add_argument("--world-seeds", default="0", help="tiny worlds to audit on (default 0)")
    parser.add_argument("--seeds", default="0", help="run seeds of every entry (default 0)")
    parser.add_argument("--json", type=Path, help="write every audit (entry, world, seed, audit.json) here")
    parser.add_argument("--from-json", type=Path, help="print the tables of a --json file; run nothing")
    args = parser.parse_args()
    args.seed_list = [int(k) for k in args.seeds.split(",")]
    if args.from_json:
        audits = json.loads(args.from_json.read_text())
    else:
        audits = collect(args, [int(w) for w in args.world_seeds.split(",")])
        if args.json:
            args.json.write_text(json.dumps(audits, indent=1) + "\n")
    text = render(audits) + (
        f"\nmachine: {platform.machine()}, {os.cpu_count()} CPUs, torch threads {__import__('torch').get_num_threads()}"
    )
    print(text)
    if args.output:
        args.output.write_text(text + "\n")


if __name__ == "__main__":
    main()
