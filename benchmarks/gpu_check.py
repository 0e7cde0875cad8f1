"""One short check of the evaluation engine on a CUDA GPU (under ~5 minutes); on a CPU machine it says so.

On a randomly initialised OLMo-1B-sized model (OlmoConfig hidden 2048, 16 layers, 16 heads, intermediate
8192, vocabulary 50304), in bf16 as the official scorer runs it:

1. bf16 inference works: a forward pass gives finite logits; the plain batched loop's generations
   against the official one-row loop's on a few prompts (a bf16 near tie can flip a token), and the
   evaluation's fast path (drafted generation with the near-tie fallback of harness/inference/ties.py)
   against the same rows: equal rows and how many the exact loop re-decoded; the prefix forest (tree
   attention mask) gives the official losses and argmax;
2. speed: the fast path (batched, cached greedy loop) vs the official one-row loop, rows per second
   and their ratio, generations forced to --new-tokens tokens;
3. 4-bit loading: the same checkpoint loaded with bitsandbytes NF4 generates.

Exit status 0 with "no CUDA" when there is no GPU. Run:

    python benchmarks/gpu_check.py [--rows 64] [--exact-rows 8] [--new-tokens 64] [--batch-size 64]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
import traceback
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch  # noqa: E402

OLMO_1B = {"hidden_size": 2048, "num_layers": 16, "num_heads": 16, "intermediate_size": 8192}
VOCAB = 50304


def _tokenizer(tmp: Path):
    from harness.inference.synthetic import train_tokenizer

    validation = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "semeval25" / "validation"
    texts: list[str] = []
    if validation.is_dir():
        from tasks.data import read_rows

        texts = [r.input for name in ("forget", "retain") for r in read_rows(validation / f"{name}.jsonl")]
    if not texts:  # no shared data: a synthetic corpus is enough for a speed check
        texts = [f"Sentence {i} about the town of Amberlyn and its {i % 7} bakeries." for i in range(2000)]
    return train_tokenizer(texts, tmp / "tok", vocab_size=4096), texts


def _build(tmp: Path):
    from transformers import OlmoConfig, OlmoForCausalLM

    tokenizer, texts = _tokenizer(tmp)
    config = OlmoConfig(
        vocab_size=VOCAB,
        hidden_size=OLMO_1B["hidden_size"],
        num_hidden_layers=OLMO_1B["num_layers"],
        num_attention_heads=OLMO_1B["num_heads"],
        intermediate_size=OLMO_1B["intermediate_size"],
        max_position_embeddings=4096,
        pad_token_id=tokenizer.eos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        bos_token_id=None,
    )
    torch.manual_seed(0)
    with torch.device("cuda"):
        model = OlmoForCausalLM(config).to(torch.bfloat16).eval()
    model.generation_config.eos_token_id = None  # forced length: both paths do the same work
    return model, tokenizer, texts


def check_bf16_and_speed(args, tmp: Path) -> None:
    from harness.inference import generation
    from harness.inference.numerics import match_official

    model, tokenizer, texts = _build(tmp)
    match_official(model)  # the organisers' bf16 rotary numerics, as load_checkpoint applies them
    params = sum(p.numel() for p in model.parameters()) / 1e9
    step = max(1, len(texts) // args.rows)
    prompts = [tokenizer(t).input_ids for t in texts[::step][: args.rows]]
    print(f"model: random OLMo {params:.2f}B parameters, bf16, {torch.cuda.get_device_name()}")
    with torch.inference_mode():
        logits = model(torch.tensor([prompts[0]], device="cuda")).logits
    finite = bool(torch.isfinite(logits).all())
    print(f"1. bf16 forward: logits finite: {'yes' if finite else 'no'}")
    eos = tokenizer.eos_token_id

    generation.generate_fast(model, prompts[:4], 4, eos, args.batch_size)  # warm-up (kernels, allocator)
    torch.cuda.synchronize()
    start = time.perf_counter()
    fast = generation.generate_fast(model, prompts, args.new_tokens, eos, args.batch_size)
    torch.cuda.synchronize()
    t_fast = time.perf_counter() - start
    start = time.perf_counter()
    exact = [generation.generate_exact(model, p, args.new_tokens, eos) for p in prompts[: args.exact_rows]]
    torch.cuda.synchronize()
    t_exact = time.perf_counter() - start
    same = sum(a == b for a, b in zip(exact, fast))
    print(f"   batched loop == official loop on {same}/{len(exact)} rows (a bf16 near tie can flip a token)")
    k = len(exact)
    drafted = generation.generate_drafted(model, prompts[:k], [()] * k, args.new_tokens, eos, args.batch_size)
    settled = sum(a == b for a, b in zip(exact, drafted.tokens))
    print(
        f"   fast path with the near-tie fallback == official loop on {settled}/{k} rows; "
        f"{len(drafted.exact_rows)} of {k} rows re-decoded by the exact loop"
    )
    exact_rate, fast_rate = len(exact) / t_exact, len(prompts) / t_fast
    print(f"2. official loop: {exact_rate:.2f} rows/s ({len(exact)} rows x {args.new_tokens} tokens)")
    print(f"   fast path:     {fast_rate:.2f} rows/s ({len(prompts)} rows, batch {args.batch_size})")
    print(f"   speedup: {fast_rate / exact_rate:.1f}x")
    check_forest(model, prompts[:16], eos, args.batch_size)
    model.save_pretrained(tmp / "model")
    tokenizer.save_pretrained(tmp / "model")
    del model
    torch.cuda.empty_cache()


def check_forest(model, prompts: list[list[int]], eos: int, batch_size: int) -> None:
    """The prefix forest (tree attention mask, output layer on the positions asked for) in bf16: each
    prompt and an extension of it share a prefix; losses and last-position argmax against the official
    one-sequence calls."""
    from harness.inference import forest, losses

    seqs = [s for p in prompts for s in (p, p + p[: max(1, len(p) // 2)])]
    readouts = forest.read(model, seqs, [0] * len(seqs), eos, batch_size)
    exact = [losses.loss_exact(model, losses.LossItem(tuple(s), 0)) for s in seqs]
    worst = max(abs(r.loss - e) / abs(e) for r, e in zip(readouts, exact))
    with torch.inference_mode():
        last = [int(model(torch.tensor([s], device="cuda")).logits[0, -1].float().argmax()) for s in seqs]
    same = sum(r.greedy[-1] == t for r, t in zip(readouts, last))
    print(
        f"   prefix forest: {len(seqs)} sequences, losses within {worst:.1e} (relative) of the official "
        f"call, last-position argmax equal on {same}/{len(seqs)}"
    )


def check_4bit(args, tmp: Path) -> None:
    from transformers import AutoModelForCausalLM, AutoTokenizer, BitsAndBytesConfig

    from harness.inference import generation

    quant = BitsAndBytesConfig(
        load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_compute_dtype=torch.bfloat16
    )
    model = AutoModelForCausalLM.from_pretrained(tmp / "model", quantization_config=quant, device_map="cuda")
    tokenizer = AutoTokenizer.from_pretrained(tmp / "model")
    model.generation_config.eos_token_id = None
    memory = model.get_memory_footprint() / 2**30
    rows = generation.generate_fast(
        model, [tokenizer("The town of Amberlyn").input_ids], 8, tokenizer.eos_token_id, 1
    )
    print(f"3. 4-bit NF4: loaded ({memory:.2f} GiB), generated {len(rows[0])} tokens")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=64)
    parser.add_argument("--exact-rows", type=int, default=8, help="rows timed through the slow official loop")
    parser.add_argument("--new-tokens", type=int, default=64)
    parser.add_argument("--batch-size", type=int, default=64)
    args = parser.parse_args()
    if not torch.cuda.is_available():
        print("no CUDA: this check needs an NVIDIA GPU; nothing was run")
        return 0
    failures = 0
    with tempfile.TemporaryDirectory() as tmp:
        for check in (check_bf16_and_speed, check_4bit):
            try:
                check(args, Path(tmp))
            except Exception as error:  # noqa: BLE001 - report each check and go on
                failures += 1
                traceback.print_exc(limit=3)
                print(f"FAILED {check.__name__}: {type(error).__name__}: {error}")
                if check is check_bf16_and_speed:
                    break
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
