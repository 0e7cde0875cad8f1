"""How far the fast path's leads and losses are from the exact path's: the measurement behind ties.py.

The near-tie rule (harness/inference/ties.py) settles with the exact loop every pick whose relative lead
over the runner-up is below a tolerance per dtype, set at twice the largest difference measured between
the two paths' leads. This measures that difference on the tiny task, for the checkpoints of
official_parity.py (target, gold, ga lr 3e-3 x 3, grad_diff lr 2e-3 x 3; the unlearned two trained once
under --work), in each of --dtypes, with the fast path's CPU linears both ways (cpu_half.py):
``torch`` (torch's own half-precision kernel) and ``float32`` (float32 products rounded back, the default).

Per checkpoint, dtype and kernel, along the exact greedy path of every forget and retain row (the official
one-row ``generate``, its logits kept):
- ``forest``: the largest |fast lead - exact lead| where the fast path reads the leads off a prefix-forest
  pass over prompt + exact tokens (the draft check);
- ``decode``: the same for the batched cached loop's own picks, up to where it leaves the exact path;
- ``flips``: picks where the two paths' greedy tokens differ (each must be a near tie to be settled);
- ``loss``: the largest relative difference |fast - exact| / max(1, |exact|) of the answer NLLs and the
  MIA documents' losses (the MIA pairs' rule).
Also the smallest exact lead at a flip, and the tolerance in force. Run:

    python benchmarks/near_tie_leads.py [--dtypes bfloat16,float32] [--only target,gold,ga,grad_diff]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parent))

import torch  # noqa: E402
from official_parity import checkpoints  # noqa: E402

from harness.inference import answers, cpu_half, distributed, forest, generation, losses, mia, ties  # noqa: E402
from harness.inference.loading import DTYPES, load_checkpoint  # noqa: E402
from harness.inference.threads import cpu_threads, eval_threads  # noqa: E402
from tasks.data import read_rows  # noqa: E402
from tasks.tiny import build_tiny, tiny_spec  # noqa: E402

KERNELS = {"torch": (), "float32": cpu_half.WIDENABLE}


@torch.inference_mode()
def exact_path(model, prompt: list[int], max_new_tokens: int, pad: int) -> tuple[list[int], list[float]]:
    """The official call's tokens and the relative lead of each of its picks."""
    ids = torch.tensor([prompt])
    out = model.generate(
        ids, max_new_tokens=max_new_tokens, do_sample=False, use_cache=True, pad_token_id=pad,
        output_logits=True, return_dict_in_generate=True,
    )  # fmt: skip
    tokens = out.sequences[0, ids.shape[1] :].tolist()
    leads = [float(ties.margins(step.float())[0]) for step in out.logits]
    return tokens, leads


def measure(model, tokenizer, task, kernel: tuple) -> dict:
    """The differences of the fast path from the exact path for one model under one kernel choice."""
    cpu_half.HALF = kernel
    rows = read_rows(task.eval_retain) + read_rows(task.eval_forget)
    prompts = answers.tokens(tokenizer, [r.input for r in rows])
    pad, budget = tokenizer.eos_token_id, task.max_new_tokens
    exact = [exact_path(model, p, budget, pad) for p in prompts]
    readouts = forest.read(
        model, [(*p, *t) for p, (t, _) in zip(prompts, exact)], [len(p) - 1 for p in prompts], pad, 64
    )
    decoded = generation.decode_batched(model, prompts, budget, pad, 64)
    out = {"forest": 0.0, "decode": 0.0, "flips": 0, "smallest_lead_at_flip": math.inf, "loss": 0.0}
    for (tokens, leads), readout, dec in zip(exact, readouts, decoded):
        for k, (token, lead) in enumerate(zip(tokens, leads)):
            fast_lead = readout.margins[k]
            out["forest"] = max(out["forest"], abs(fast_lead - lead))
            if readout.greedy[k] != token:
                out["flips"] += 1
                out["smallest_lead_at_flip"] = min(out["smallest_lead_at_flip"], lead)
        for k, (token, lead) in enumerate(zip(tokens, leads)):
            if k >= len(dec.tokens):
                break
            out["decode"] = max(out["decode"], abs(dec.margins[k] - lead))
            if dec.tokens[k] != token:
                out["flips"] += 1
                out["smallest_lead_at_flip"] = min(out["smallest_lead_at_flip"], lead)
                break
    items = [losses.answer_item(tokenizer, r.input, r.output, p) for r, p in zip(rows, prompts)]
    docs = (
        [d.document for d in mia.documents(mia.read_groups(task, distributed.World(0, 1), False))]
        if mia.available(task)
        else []
    )
    items += [losses.LossItem(tuple(t), 0) for t in answers.tokens(tokenizer, docs)]
    fast = losses.losses_fast(model, items, pad, 64)
    for item, value in zip(items, fast):
        reference = losses.loss_exact(model, item)
        out["loss"] = max(out["loss"], abs(value - reference) / max(1.0, abs(reference)))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dtypes", default="bfloat16,float32")
    parser.add_argument("--only", default="target,gold,ga,grad_diff")
    parser.add_argument(
        "--kernels", default="torch,float32", help="the fast path's CPU linears (cpu_half.py)"
    )
    parser.add_argument("--work", type=Path, default=Path("runs/official-parity"))
    args = parser.parse_args()
    task = tiny_spec(build_tiny(seed=0, size="tiny", gold=True, progress=False))
    models = checkpoints(task, args.work / "checkpoints", args.only.split(","))
    report = {}
    for dtype in args.dtypes.split(","):
        for name, folder in models.items():
            model, tokenizer = load_checkpoint(folder, torch.device("cpu"), DTYPES[dtype])
            with cpu_threads(eval_threads(model, torch.device("cpu"))):
                for kernel in args.kernels.split(","):
                    row = measure(model, tokenizer, task, KERNELS[kernel])
                    row["tolerance"] = ties.tolerance(model.dtype)
                    report[f"{dtype}/{name}/{kernel}"] = row
                    print(f"{dtype:9} {name:10} {kernel:8} {json.dumps(row)}", flush=True)
    worst = {}
    for key, row in report.items():
        dtype, _, kernel = key.split("/")
        best = worst.setdefault(f"{dtype}/{kernel}", {"lead": 0.0, "loss": 0.0})
        best["lead"] = max(best["lead"], row["forest"], row["decode"])
        best["loss"] = max(best["loss"], row["loss"])
    for key, row in worst.items():
        print(f"largest difference, {key}: lead {row['lead']:.3g}, loss {row['loss']:.3g}")


if __name__ == "__main__":
    main()
