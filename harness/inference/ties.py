"""Near ties: where the fast path's rounding, not the model, could decide what the exact loop picks.

A batched or tree-shaped forward pass adds the same numbers in another order than the official one-row
loop, so its logits differ from the exact path's in the last bits of the dtype. That changes a greedy
pick, an MMLU letter or the order of two MIA losses only where the two candidates are closer than that
rounding. The fast path measures the lead of every pick it makes (top logit minus the runner-up's,
`margins`); where a lead is below `TOLERANCE[dtype]` it re-computes that row with the exact loop
(generation.generate_drafted, mmlu.choose_fast, mia.run), so its results equal the exact path's in any
dtype. The tolerances are many times the largest logit difference measured between the two paths on the
tiny task (README, "Fast path and exact path"): bf16 rounds 65,536 times coarser than float32.
"""

from __future__ import annotations

import torch

#: a lead (in logits, or in loss for MIA) below which rounding could decide, per model dtype
TOLERANCE = {torch.float32: 1e-4, torch.float16: 0.05, torch.bfloat16: 0.25}


def tolerance(dtype: torch.dtype) -> float:
    """The near-tie tolerance of a model in `dtype`."""
    return TOLERANCE.get(dtype, TOLERANCE[torch.bfloat16])


def margins(logits: torch.Tensor) -> torch.Tensor:
    """Per row of float32 `logits` (n, vocab): the top logit minus the second (inf for one candidate)."""
    if logits.shape[-1] < 2:
        return torch.full(logits.shape[:-1], float("inf"))
    top = logits.topk(2, dim=-1).values
    return (top[..., 0] - top[..., 1]).cpu()
