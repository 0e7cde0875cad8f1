"""The organisers' numerics under this project's transformers: what changed since 4.45.2, and the fix.

The official scorer ran on transformers 4.45.2 (official-scoring.md 2.13). transformers 5 changed one thing
that matters for OLMo in half precision: its rotary embedding returns cos/sin in float32 and rotates the
queries and keys in float32, where 4.45.2 cast cos/sin to the activation dtype first and rotated in that
dtype. In float32 the two are the same; in bfloat16 they round differently (measured on the tiny task:
12 of 84 generations and NLLs up to 0.068 apart). `match_official` restores 4.45.2's cast with a forward
hook on the rotary module, so bf16 evaluations here give the organisers' numbers; it is a no-op under
transformers 4.x and in float32.
"""

from __future__ import annotations

import torch
import transformers

#: model types whose rotary embedding transformers 5 keeps in float32 (4.45.2 cast it to the input's dtype)
FLOAT32_ROTARY = frozenset({"olmo"})
TRANSFORMERS_MAJOR = int(transformers.__version__.split(".")[0])
#: part of the evaluation cache key: bump when what `match_official` or the near-tie rule changes
NUMERICS = "4.45.2-rotary+near-ties-2+cpu-f32-linears"


def _cast_to_input(module: torch.nn.Module, args: tuple, kwargs: dict, output):
    x = args[0] if args else kwargs["x"]
    return tuple(t.to(x.dtype) for t in output)


def match_official(model: torch.nn.Module) -> None:
    """Apply the 4.45.2 numerics to `model` in place (the evaluation cache key names them: `NUMERICS`)."""
    model_type = getattr(getattr(model, "config", None), "model_type", None)
    if TRANSFORMERS_MAJOR < 5 or model_type not in FLOAT32_ROTARY:
        return
    for module in model.modules():
        if type(module).__name__.endswith("RotaryEmbedding"):
            module.register_forward_hook(_cast_to_input, with_kwargs=True)
