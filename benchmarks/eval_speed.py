"""Exact (official one-row loop) vs fast (batched, drafted) evaluation speed, side by side.

Both paths run in this process on the same checkpoint, one after the other, and their outputs are compared.

(a) the tiny task, in each of --dtypes (float32 and bfloat16): the whole `evaluate` (generations, answer
    NLL, MIA losses, MMLU), exact vs fast, with the rows the fast path settled by the exact loop, for
    the target model (which regurgitates every row, so the drafted generation settles nearly all of it)
    and for the gold model (trained on the retain rows only: on forget rows it leaves the expected answer
    and the fast path decodes). A throw-away evaluation warms up first; then the paths alternate
    --repeats times and the median run of each is reported (wall clock, and CPU time, which another
    process on the machine disturbs less), with its seconds per stage. Both paths run with torch's
    threads (one per core, or --threads); with more than one, the exact path is also timed on one
    thread, where the one-row loop often runs faster, and the speedup is over the faster exact run. In
    bfloat16 the fast path is also timed with the other kind of CPU linears (harness/inference/cpu_half.py):
    torch's own bf16 kernels (``fast-torch``) where it runs float32 products rounded back, those products
    (``fast-f32``) on a CPU with AMX, where it keeps torch's kernels; which shows what the choice gains.
(b) LUME validation prompts (../shared/data/semeval25/validation, forget + retain, an evenly spaced sample
    of --rows) on a randomly initialised ~20M-parameter OLMo (BPE trained on those prompts), generations
    forced to 128 new tokens (EOS never stops a row) so both paths do the same work. Also printed: the
    fast path's prefill-only time (1 new token), which splits its time into prefill and decoding.

The last line is ``speedup: <ratio>x, identical outputs: yes|no`` for (b). Run:

    python benchmarks/eval_speed.py [--rows 64] [--batch-size 16] [--new-tokens 128] [--threads N]
                                    [--repeats 5] [--dtypes float32,bfloat16] [--skip-tiny] [--skip-lume]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch  # noqa: E402
from transformers import AutoModelForCausalLM, AutoTokenizer  # noqa: E402

from harness.inference import cpu_half, evaluate, generation  # noqa: E402
from harness.inference.engine import NEAR_TIE_SECONDS, near_ties  # noqa: E402
from harness.inference.synthetic import random_olmo, train_tokenizer  # noqa: E402
from harness.inference.threads import THREADS_ENV  # noqa: E402
from tasks.data import read_rows  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
VALIDATION = REPO.parent / "shared" / "data" / "semeval25" / "validation"
#: ~20M parameters with an 8,192-token vocabulary: 6 x 2.36M in the layers + 2 x 3.1M embeddings/head
MODEL_20M = {"hidden_size": 384, "num_layers": 6, "num_heads": 6, "intermediate_size": 1536}


def _same_artifacts(a: Path, b: Path) -> bool:
    import pandas as pd

    names = sorted(str(p.relative_to(a)) for p in a.rglob("*.csv") if p.name != "row_scores.csv")
    for name in names:
        left, right = (
            pd.read_csv(a / name, keep_default_na=False),
            pd.read_csv(b / name, keep_default_na=False),
        )
        text = [c for c in left.columns if c not in ("nll",) and not c.endswith("_probs")]
        if not left[text].equals(right[text]):
            return False
    return True


def _median_run(runs: list[tuple[float, float, dict[str, float], Path]]):
    return sorted(runs, key=lambda run: run[0])[len(runs) // 2]


def bench_tiny(repeats: int, dtype: str) -> None:
    from tasks.registry import get_task

    task = get_task("tiny", {"gold": "true"}, progress=False)
    rows = len(read_rows(task.eval_forget)) + len(read_rows(task.eval_retain))
    threads, chosen = torch.get_num_threads(), os.environ.get(THREADS_ENV)
    # the official loop gains nothing from a second thread (one row at a time) and can lose to its
    # synchronisation: with more than one thread it is also timed on one, and the faster one counts
    paths = {"exact": (True, threads, cpu_half.HALF), "fast": (False, threads, cpu_half.HALF)}
    if threads > 1:
        paths["exact-1t"] = (True, 1, cpu_half.HALF)
    # the fast path with the other kind of half-precision CPU linears than this machine's default
    # (cpu_half.py): torch's own kernels where it widens them to float32 products, those where it does not
    other = "fast-torch" if cpu_half.HALF else "fast-f32"
    if getattr(torch, dtype) in cpu_half.WIDENABLE:
        paths[other] = (False, threads, () if cpu_half.HALF else cpu_half.WIDENABLE)
    kernels = cpu_half.HALF
    with tempfile.TemporaryDirectory() as tmp:
        for label, model_dir in (("target", task.model_dir), ("gold", task.gold_model_dir)):
            # warm-up: the checkpoint's files, torch's kernels and generate's code paths
            evaluate(model_dir, task, Path(tmp) / "warm", dtype=dtype, use_cache=False, progress=False)
            runs: dict[str, list[tuple[float, float, dict[str, float], Path]]] = {name: [] for name in paths}
            for repeat in range(repeats):
                for name, (exact, n, half) in paths.items():
                    os.environ[THREADS_ENV] = str(n)  # evaluate's own choice (threads.py) would be one
                    cpu_half.HALF = half
                    run_dir = Path(tmp) / f"{dtype}-{label}-{name}-{repeat}"
                    wall, cpu = time.perf_counter(), time.process_time()
                    result = evaluate(
                        model_dir, task, run_dir, exact=exact, dtype=dtype, use_cache=False, progress=False
                    )
                    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
                    runs[name].append((wall, cpu, result.timings, run_dir))
            cpu_half.HALF = kernels
            if chosen is None:  # the caller's choice back
                os.environ.pop(THREADS_ENV, None)
            else:
                os.environ[THREADS_ENV] = chosen
            medians = {name: _median_run(found) for name, found in runs.items()}
            for name, (wall, cpu, timings, _) in medians.items():
                stages = ", ".join(
                    f"{k} {v:.3f}" for k, v in timings.items() if k not in ("total", NEAR_TIE_SECONDS)
                )
                if timings.get(NEAR_TIE_SECONDS):
                    stages += f" (of which the exact loop at near ties {timings[NEAR_TIE_SECONDS]:.3f})"
                print(
                    f"(a) tiny task, {dtype}, {label} model, {name:8s} ({paths[name][1]} threads): {wall:6.3f} s "
                    f"({cpu:6.3f} s CPU) for the whole evaluation, {rows / wall:6.1f} rows/s (median of "
                    f"{repeats}); stages: {stages}"
                )
            reference = runs["exact"][0][3]
            same = all(_same_artifacts(reference, run[3]) for found in runs.values() for run in found)
            exact = min(medians[name][0] for name in paths if paths[name][0])
            settled = near_ties(medians["fast"][3])
            # each repeat ran the paths back to back: its ratio is measured under one machine state
            pairs = sorted(
                min(runs[name][r][0] for name in paths if paths[name][0]) / runs["fast"][r][0]
                for r in range(repeats)
            )
            print(
                f"(a) tiny task, {dtype}, {label} model: speedup {exact / medians['fast'][0]:.1f}x over the faster "
                f"exact run ({medians['exact'][0] / medians['fast'][0]:.1f}x at {threads} threads each; "
                f"repeat by repeat {pairs[0]:.1f}-{pairs[-1]:.1f}x, median {pairs[len(pairs) // 2]:.1f}x), "
                f"identical outputs: {'yes' if same else 'no'}; rows settled by the exact loop at near ties: "
                f"{settled}, taking {near_ties(medians['fast'][3], 'exact_steps')} exact decoding steps"
            )
            if other in medians:
                mine, theirs = ("float32", "torch's bf16") if cpu_half.HALF else ("torch's bf16", "float32")
                alternative = medians[other][0]
                print(
                    f"(a) tiny task, {dtype}, {label} model: {mine} linears {alternative / medians['fast'][0]:.2f}x "
                    f"faster than {theirs} ones in the fast path (speedup {exact / alternative:.1f}x with "
                    f"those); rows settled with them: {near_ties(medians[other][3])}"
                )


def bench_lume(rows: int, batch_size: int, new_tokens: int) -> None:
    records = read_rows(VALIDATION / "forget.jsonl") + read_rows(VALIDATION / "retain.jsonl")
    step = max(1, len(records) // rows)
    sample = records[::step][:rows]
    with tempfile.TemporaryDirectory() as tmp:
        tokenizer = train_tokenizer(
            [t for r in records for t in (r.input, r.output)], Path(tmp) / "tok", 8192
        )
        random_olmo(tokenizer, Path(tmp) / "model", **MODEL_20M)
        model = AutoModelForCausalLM.from_pretrained(Path(tmp) / "model", dtype=torch.float32).eval()
        tokenizer = AutoTokenizer.from_pretrained(Path(tmp) / "model")
    params = sum(p.numel() for p in model.parameters())
    model.generation_config.eos_token_id = None  # forced length: no row stops early, in either path
    eos = tokenizer.eos_token_id
    prompts = [tokenizer(r.input).input_ids for r in sample]
    lengths = sorted(len(p) for p in prompts)
    print(
        f"(b) {len(sample)} LUME validation prompts ({lengths[0]}-{lengths[-1]} tokens, median "
        f"{lengths[len(lengths) // 2]}), random OLMo {params / 1e6:.1f}M parameters, {new_tokens} new tokens, "
        f"{torch.get_num_threads()} threads"
    )
    start = time.perf_counter()
    fast = generation.generate_fast(model, prompts, new_tokens, eos, batch_size)
    t_fast = time.perf_counter() - start
    start = time.perf_counter()
    generation.generate_fast(model, prompts, 1, eos, batch_size)
    t_prefill = time.perf_counter() - start
    start = time.perf_counter()
    exact = [generation.generate_exact(model, p, new_tokens, eos) for p in prompts]
    t_exact = time.perf_counter() - start
    assert all(len(t) == new_tokens for t in exact + fast), "a generation stopped before the forced length"
    padded = sum(
        max(len(prompts[i]) for i in chunk) * len(chunk)
        for chunk in _chunks(sorted(range(len(prompts)), key=lambda i: -len(prompts[i])), batch_size)
    )
    print(f"(b) exact: {t_exact:7.2f} s, {len(sample) / t_exact:6.2f} rows/s")
    print(
        f"(b) fast:  {t_fast:7.2f} s, {len(sample) / t_fast:6.2f} rows/s (batch {batch_size}; prefill {t_prefill:.2f} s, "
        f"decoding {t_fast - t_prefill:.2f} s; padding {1 - sum(lengths) / padded:.1%} of prefill tokens)"
    )
    same = exact == fast
    print(f"speedup: {t_exact / t_fast:.1f}x, identical outputs: {'yes' if same else 'no'}")


def _chunks(order: list[int], size: int) -> list[list[int]]:
    return [order[i : i + size] for i in range(0, len(order), size)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=64, help="LUME validation prompts for (b)")
    parser.add_argument("--batch-size", type=int, default=16, help="(b): rows per batch of the fast path")
    parser.add_argument("--new-tokens", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=5, help="(a): runs of each path (the median is shown)")
    parser.add_argument("--skip-tiny", action="store_true", help="only (b)")
    parser.add_argument("--dtypes", default="float32,bfloat16", help="(a): the dtypes to evaluate in")
    parser.add_argument("--skip-lume", action="store_true", help="only (a)")
    parser.add_argument(
        "--threads", type=int, default=None, help="torch threads (default: torch's, one per core)"
    )
    args = parser.parse_args()
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    if not args.skip_tiny:
        for dtype in args.dtypes.split(","):
            bench_tiny(args.repeats, dtype)
    if not args.skip_lume:
        bench_lume(args.rows, args.batch_size, args.new_tokens)


if __name__ == "__main__":
    main()
