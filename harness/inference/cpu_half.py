"""The fast path's half-precision matrix products on a CPU: float32 kernels, rounded back.

On a CPU without bf16 instructions torch's bfloat16 `linear` is bound by arithmetic at every batch size
(benchmarks/cpu_bf16.py: batching saves 1.3-1.4x of its cost per row, float32's 6.6-7.0x), so the fast
path's batched forward passes gained little over the one-row loop in bf16. Each element of that bf16
`linear` is a float32 sum of products of the bf16 inputs, rounded to bf16 once; a float32 `linear` of
the same bf16 values, rounded to bf16, is the same number up to the order of the sum (measured on the
tiny model's shapes, benchmarks/cpu_bf16.py: different in at most 0.02% of the elements, for one row as
for a batch; torch's bf16 `linear` itself is row-independent). That is the kind of difference a batched
or tree-shaped forward pass already makes (the order of its sums in attention and normalisation), which the near-tie rule settles (ties.py): so the fast path's
forward passes run their half-precision linears that way on a CPU (`float32_linears`), and the exact
path (the official one-row loop, and every row the near-tie rule settles) keeps torch's own kernels.
GPUs keep theirs: their half-precision products are the fast ones; so do CPUs with AMX, whose bf16
products torch runs on the matrix unit (measured on an Intel Xeon with AMX, benchmarks/eval_speed.py: the
fast path's float32 products took 0.220 / 0.617 s where torch's bf16 kernels took 0.157 / 0.540 s, target
/ gold model; with either kernel the leads and losses stayed within the near-tie tolerances,
benchmarks/near_tie_leads.py). CPUs with AVX512_BF16 but no AMX keep the float32 products (unmeasured).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch
from torch.overrides import TorchFunctionMode

#: the dtypes whose CPU linears can run through float32 in the fast path
WIDENABLE = (torch.bfloat16,)


def has_amx() -> bool:
    """Whether this CPU has AMX, on which torch's bf16 products beat float32 ones (module docstring)."""
    probe = getattr(torch.cpu, "_is_amx_tile_supported", None)  # private in torch 2.x: absent, no AMX
    return bool(probe()) if callable(probe) else False


#: the dtypes whose CPU linears run through float32 in the fast path on this machine
HALF = () if has_amx() else WIDENABLE


class _Float32Linears(TorchFunctionMode):
    """`torch.nn.functional.linear` on half-precision CPU tensors: float32 product, result rounded back."""

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func is torch.nn.functional.linear:
            x, weight = args[0], args[1]
            bias = args[2] if len(args) > 2 else kwargs.get("bias")
            if x.dtype in HALF and x.device.type == "cpu" and weight.dtype == x.dtype:
                wide = None if bias is None else bias.float()
                return torch.nn.functional.linear(x.float(), weight.float(), wide).to(x.dtype)
        return func(*args, **kwargs)


def applies(model: torch.nn.Module) -> bool:
    """Whether `float32_linears` changes anything for `model`: a half-precision model on a CPU."""
    parameter = next(model.parameters(), None)
    return parameter is not None and parameter.device.type == "cpu" and parameter.dtype in HALF


@contextlib.contextmanager
def float32_linears(model: torch.nn.Module) -> Iterator[None]:
    """Within: `model`'s half-precision linears on a CPU run as float32 products rounded back (fast path)."""
    if not applies(model):
        yield
        return
    with _Float32Linears():
        yield
