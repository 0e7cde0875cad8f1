"""Near ties: where the fast path's rounding, not the model, could decide what the exact loop picks.

A batched or tree-shaped forward pass adds the same numbers in another order than the official one-row
loop, so its logits differ from the exact path's in the last bits of the dtype, and more after many
layers. That changes a greedy pick, an MMLU letter or the order of two MIA losses only where the two
candidates are closer than that rounding. The fast path measures the lead of every pick it makes, the
top logit minus the runner-up's relative to the top logit's size (`margins`; the rounding of a logit
scales with its magnitude); where a lead is below `TOLERANCE[dtype]` it settles that row with the exact
loop (generation.generate_drafted, through the row's last near tie; mmlu.choose_fast; mia.settle), so its
results equal the exact path's in any dtype.

The tolerances are measured, with headroom: along the exact greedy path of every row of the tiny task
(target, gold, ga lr 3e-3 x 3, grad_diff), the fast path's relative lead differed from the exact path's
by at most 0.025 in bfloat16 and 2.5e-5 in float32 (ga; 1e-6 for the others). float16 has 3 more
mantissa bits than bfloat16. A loss is one number, not a pick among logits: the fast path's MIA and answer
losses differed from the exact path's by at most 0.00195 relative in bfloat16 (6.4e-7 in float32), so the
order of a member/non-member pair can change only where the two are within twice that; `LOSS_TOLERANCE`
keeps 2x headroom over that sum (bf16 0.01). Measured by benchmarks/near_tie_leads.py.
"""

from __future__ import annotations

import torch

#: a relative lead (lead / max(1, |top logit|), or |loss a - loss b| / max(1, |loss a|) for MIA) below
#: which rounding could decide, per model dtype: twice the largest difference measured (module docstring)
TOLERANCE = {torch.float32: 1e-4, torch.float16: 0.007, torch.bfloat16: 0.05}
#: the same for the relative gap between two losses (mia.settle): 2 x (the two losses' largest differences)
LOSS_TOLERANCE = {torch.float32: 1e-4, torch.float16: 0.007, torch.bfloat16: 0.01}


def tolerance(dtype: torch.dtype) -> float:
    """The near-tie tolerance of a model in `dtype` (a relative lead)."""
    return TOLERANCE.get(dtype, TOLERANCE[torch.bfloat16])


def loss_tolerance(dtype: torch.dtype) -> float:
    """The near-tie tolerance for the relative gap between two losses of a model in `dtype`."""
    return LOSS_TOLERANCE.get(dtype, LOSS_TOLERANCE[torch.bfloat16])


def relative_lead(top: torch.Tensor, second: torch.Tensor) -> torch.Tensor:
    """How far `top` is above `second`, relative to the size of `top` (at least 1)."""
    return (top - second) / top.abs().clamp(min=1.0)


def margins(logits: torch.Tensor) -> torch.Tensor:
    """Per row of float32 `logits` (n, vocab): the relative lead of the argmax (inf for one candidate)."""
    if logits.shape[-1] < 2:
        return torch.full(logits.shape[:-1], float("inf"))
    top = logits.topk(2, dim=-1).values
    return relative_lead(top[..., 0], top[..., 1]).cpu()
