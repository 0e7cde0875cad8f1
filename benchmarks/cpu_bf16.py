"""What batching saves on this CPU, in float32 and in bfloat16: the fast path's speedup depends on it.

The fast path wins by running many rows in one forward pass; that pays only where a matrix product of
many rows costs less per row than one of a single row. On a CPU without bf16 instructions (AVX512_BF16,
AMX) torch's bfloat16 `linear` can be bound by arithmetic at any batch size, so in bf16 the speedup over
the one-row loop comes only from the tokens the fast path does not compute (drafts, shared prefixes)
and shrinks towards the ratio of tokens computed. That is why the fast path runs its bf16 linears on a
CPU as float32 products of the same values, rounded back (harness/inference/cpu_half.py); this times
torch's own kernels, the ones the exact path keeps.

It also prints, per shape, what the bits say about a faster kernel for the exact path: whether torch's bf16
`linear` is row-independent (each row of a 200-row batch equal to that row alone) and in how many elements
the float32 products rounded back differ from it, for rows one at a time and for the batch. Where those
counts are not zero, no float32 kernel reproduces the exact path's bits and the rows the near-tie rule
settles (ties.py) have to go through torch's own bf16 kernels.

For the tiny model's matrix shapes (hidden 128 -> 512 and 512 -> 128) this times `torch.nn.functional.linear`
at batch 1, 8, 64 and 512 rows, each dtype side by side in one run (interleaved, median of --repeats),
on one thread, and prints the cost per row and the batch-512 saving (per-row cost at batch 1 over that
at batch 512). Run:

    python benchmarks/cpu_bf16.py [--repeats 5]
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import torch

SHAPES = ((128, 512), (512, 128))
#: the tiny model's shapes for the bit comparison: attention, MLP in and out, output layer
BIT_SHAPES = ((128, 128), (128, 512), (512, 128), (128, 1024))
BATCHES = (1, 8, 64, 512)
DTYPES = (torch.float32, torch.bfloat16)


def cpu_flags() -> str:
    """The bf16-related instruction sets /proc/cpuinfo names (or what is known without it)."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return "unknown (no /proc/cpuinfo)"
    words = set(text.split())
    found = [w for w in ("avx2", "avx512f", "avx512_bf16", "amx_bf16") if w in words]
    return ", ".join(found) or "none of avx2, avx512f, avx512_bf16, amx_bf16"


def time_linear(x: torch.Tensor, w: torch.Tensor, calls: int) -> float:
    """Seconds per call of linear(x, w), over ``calls`` calls."""
    start = time.perf_counter()
    for _ in range(calls):
        torch.nn.functional.linear(x, w)
    return (time.perf_counter() - start) / calls


def bits(fan_in: int, fan_out: int, generator: torch.Generator, rows: int = 200) -> str:
    """Row independence of torch's bf16 `linear` and the float32 products' mismatches, as one line."""
    linear = torch.nn.functional.linear
    w = (torch.randn(fan_out, fan_in, generator=generator) * fan_in**-0.5).bfloat16()
    x = torch.randn(rows, fan_in, generator=generator).bfloat16()
    batch = linear(x, w)
    alone = torch.cat([linear(x[i : i + 1], w) for i in range(rows)])
    wide_alone = torch.cat([linear(x[i : i + 1].float(), w.float()).bfloat16() for i in range(rows)])
    wide_batch = linear(x.float(), w.float()).bfloat16()
    return (
        f"bits {fan_in}->{fan_out}: bf16 row-independent {'yes' if torch.equal(batch, alone) else 'no'}; "
        f"float32 products rounded back differ in {(wide_alone != alone).sum().item()} (one row at a time) "
        f"and {(wide_batch != batch).sum().item()} (batch of {rows}) of {batch.numel()} elements"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    torch.set_num_threads(1)
    print(
        f"torch {torch.__version__}, cpu capability {torch.backends.cpu.get_cpu_capability()}, flags: {cpu_flags()}"
    )
    generator = torch.Generator().manual_seed(0)
    for fan_in, fan_out in SHAPES:
        weights = {dt: torch.randn(fan_out, fan_in, generator=generator).to(dt) for dt in DTYPES}
        per_row: dict[tuple[torch.dtype, int], list[float]] = {}
        for _ in range(args.repeats):
            for batch in BATCHES:
                x = torch.randn(batch, fan_in, generator=generator)
                calls = max(3, 4096 // batch)
                for dt in DTYPES:  # interleaved: both dtypes see the same machine load
                    xt = x.to(dt)
                    torch.nn.functional.linear(xt, weights[dt])  # warm-up
                    per_row.setdefault((dt, batch), []).append(time_linear(xt, weights[dt], calls) / batch)
        for dt in DTYPES:
            costs = [statistics.median(per_row[(dt, b)]) * 1e6 for b in BATCHES]
            cells = ", ".join(f"batch {b}: {c:.2f} us" for b, c in zip(BATCHES, costs))
            name = str(dt).removeprefix("torch.")
            print(
                f"linear {fan_in}->{fan_out} {name:8s} per row: {cells}; batch-512 saving {costs[0] / costs[-1]:.1f}x"
            )
        b1 = statistics.median(per_row[(torch.bfloat16, 512)]) / statistics.median(
            per_row[(torch.float32, 512)]
        )
        print(f"linear {fan_in}->{fan_out} at batch 512: bfloat16 costs {b1:.1f}x float32 per row")
    for fan_in, fan_out in BIT_SHAPES:
        print(bits(fan_in, fan_out, generator))


if __name__ == "__main__":
    main()
