"""LoRA helpers of the reference submissions: loading a base (optionally 4-bit NF4) with LoRA adapters,
and merging adapters into a full-precision copy of the base weights for saving.

A 4-bit model cannot be saved as a normal checkpoint, and the official scorer loads a plain
``AutoModelForCausalLM`` from the output directory. So every save reloads the base weights in full
precision, copies the trained adapter into it and merges (``merge_and_unload``): the saved model is the
original weights plus the low-rank update, the way QLoRA adapters are usually deployed.

Needs ``peft`` (and ``bitsandbytes`` for 4-bit), which the organisers' environment did not pre-install:
request them on the submission form.
"""

from __future__ import annotations

import os

import torch
from peft import LoraConfig, get_peft_model, get_peft_model_state_dict, set_peft_model_state_dict
from transformers import AutoModelForCausalLM, BitsAndBytesConfig


def load_lora_model(
    model_dir: str | os.PathLike,
    *,
    quantize: bool,
    r: int,
    alpha: int,
    targets: str | list[str] = "all-linear",
    dropout: float = 0.0,
    dtype: torch.dtype = torch.float32,
    device: torch.device | str = "cpu",
):
    """The base model (4-bit NF4 with ``quantize``, else ``dtype``) wrapped with a trainable LoRA adapter
    named "default" on ``targets`` ("all-linear" = every linear layer except lm_head, or a list)."""
    if quantize:
        config = BitsAndBytesConfig(
            load_in_4bit=True,
            bnb_4bit_quant_type="nf4",
            bnb_4bit_compute_dtype=dtype,
            bnb_4bit_use_double_quant=True,
        )
        device_map = {"": device.index if getattr(device, "type", "cpu") == "cuda" else "cpu"}
        base = AutoModelForCausalLM.from_pretrained(
            model_dir, quantization_config=config, device_map=device_map
        )
    else:
        base = AutoModelForCausalLM.from_pretrained(model_dir, dtype=dtype).to(device)
    if isinstance(targets, str) and targets != "all-linear":
        targets = [t.strip() for t in targets.split(",") if t.strip()]
    lora = LoraConfig(
        r=r, lora_alpha=alpha, lora_dropout=dropout, target_modules=targets, task_type="CAUSAL_LM"
    )
    return get_peft_model(base, lora)


def merged_copy(peft_model, model_dir: str | os.PathLike, dtype: torch.dtype):
    """A plain model: the base weights reloaded in ``dtype`` (on CPU) plus the active adapter, merged."""
    adapter = peft_model.active_adapter
    config = peft_model.peft_config[adapter]
    base = AutoModelForCausalLM.from_pretrained(model_dir, dtype=dtype)
    fresh = get_peft_model(base, config)
    state = get_peft_model_state_dict(peft_model, adapter_name=adapter)
    result = set_peft_model_state_dict(fresh, {k: v.detach().to("cpu", dtype) for k, v in state.items()})
    if result.unexpected_keys:
        raise RuntimeError(f"adapter keys did not match the base model: {result.unexpected_keys[:3]}")
    return fresh.merge_and_unload()
