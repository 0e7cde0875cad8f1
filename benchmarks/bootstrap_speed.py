"""How long the leaderboard bootstrap takes on a run of the LUME size, next to a naive per-resample loop.

A synthetic run directory with the LUME group sizes (spec 5.1: 2,732 forget + 2,734 retain rows), 150 + 150
MIA documents and 14,042 MMLU questions in 57 subject files is written to a temporary folder. Printed:
the seconds of `bootstrap_run` (1,000 resamples) and of `bootstrap_pair`, and the ratio to a naive loop
(one resample at a time, sklearn's AUC), timed on fewer resamples and scaled. Run:

    python benchmarks/bootstrap_speed.py [--resamples 1000] [--naive-resamples 50]
"""

from __future__ import annotations

import argparse
import csv
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

from leaderboard.bootstrap import bootstrap_pair, bootstrap_run, load_run

#: (task, sc rows, qa rows) per split, LUME HEAD (spec 5.1)
LUME = {
    "forget": (("Task1", 243, 243), ("Task2", 250, 1250), ("Task3", 373, 373)),
    "retain": (("Task1", 246, 246), ("Task2", 250, 1250), ("Task3", 371, 371)),
}
MMLU_QUESTIONS, MMLU_SUBJECTS, MIA_DOCS = 14_042, 57, 150


def write_run(run_dir: Path, seed: int) -> int:
    rng = np.random.default_rng(seed)
    rows = 0
    run_dir.mkdir(parents=True)
    with (run_dir / "row_scores.csv").open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["split", "task", "kind", "id", "score"])
        for split, tasks in LUME.items():
            for task, sc, qa in tasks:
                writer.writerows([split, task, "sc", f"{split}{task}{i}sc1", rng.random()] for i in range(sc))
                writer.writerows(
                    [split, task, "qa", f"{split}{task}{i}qa0", int(rng.random() < 0.4)] for i in range(qa)
                )
                rows += sc + qa
    (run_dir / "mia_results").mkdir()
    for name, shift in (("member", 0.3), ("nonmember", 0.0)):
        with (run_dir / "mia_results" / f"{name}_0.csv").open("w", newline="") as handle:
            writer = csv.writer(handle)
            writer.writerow(["id", "nll"])
            writer.writerows([f"{name}{i}", 2.0 - shift + rng.normal(0, 0.4)] for i in range(MIA_DOCS))
    (run_dir / "mmlu_results").mkdir()
    per_subject = np.array_split(np.arange(MMLU_QUESTIONS), MMLU_SUBJECTS)
    for s, chunk in enumerate(per_subject):
        with (run_dir / "mmlu_results" / f"subject_{s:02d}.csv").open("w", newline="") as handle:
            writer = csv.writer(handle)
            writer.writerow(["0", "1", "2", "3", "4", "5", "correct"])
            writer.writerows(["q", "a", "b", "c", "d", "A", bool(rng.random() < 0.45)] for _ in chunk)
    return rows


def naive(run_dir: Path, n: int, seed: int = 0) -> None:
    """One resample at a time: the obvious loop the vectorised code replaces."""
    from sklearn.metrics import roc_auc_score

    run = load_run(run_dir)
    rng = np.random.default_rng(seed)
    member, nonmember = np.array(list(run.member.values())), np.array(list(run.nonmember.values()))
    mmlu = np.array(list(run.mmlu.values()))
    labels = [1] * len(member) + [0] * len(nonmember)
    for _ in range(n):
        terms = []
        for group in run.groups:
            mean = float(np.mean(rng.choice(group.scores, size=len(group.scores))))
            terms.append(1 - mean if group.split == "forget" else mean)
        hm = statistics.harmonic_mean(terms)
        m = rng.choice(member, size=len(member))
        k = rng.choice(nonmember, size=len(nonmember))
        auc = roc_auc_score(labels, -np.concatenate([m, k]))
        acc = float(np.mean(rng.choice(mmlu, size=len(mmlu))))
        statistics.mean([hm, 1 - abs(auc - 0.5) * 2, acc])


def timed(function, *args) -> float:
    start = time.perf_counter()
    function(*args)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--resamples", type=int, default=1000)
    parser.add_argument("--naive-resamples", type=int, default=50)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        rows = write_run(Path(tmp) / "a", seed=0)
        write_run(Path(tmp) / "b", seed=1)
        load_s = timed(load_run, Path(tmp) / "a")
        single = min(timed(bootstrap_run, Path(tmp) / "a", args.resamples) for _ in range(3))
        paired = min(
            timed(bootstrap_pair, Path(tmp) / "a", Path(tmp) / "b", args.resamples) for _ in range(2)
        )
        slow = timed(naive, Path(tmp) / "a", args.naive_resamples) * args.resamples / args.naive_resamples
        print(
            f"run size: {rows} forget+retain rows, {MIA_DOCS}+{MIA_DOCS} MIA documents, {MMLU_QUESTIONS} MMLU questions"
        )
        print(f"reading the artifacts:                 {load_s:6.2f} s")
        print(
            f"bootstrap_run, {args.resamples} resamples:        {single:6.2f} s (best of 3, reading included)"
        )
        print(
            f"bootstrap_pair, {args.resamples} resamples:       {paired:6.2f} s (best of 2, reading both runs included)"
        )
        print(
            f"naive loop, scaled from {args.naive_resamples} resamples: {slow:6.2f} s "
            f"-> vectorised is {slow / single:.0f}x faster, measured side by side"
        )


if __name__ == "__main__":
    main()
