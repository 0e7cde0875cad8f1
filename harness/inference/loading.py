"""Loading a checkpoint for evaluation: device, dtype, model and tokenizer (official-scoring.md 2.2).

The tokenizer comes from the checkpoint directory with pad = eos, as the official script sets it. The
dtype is the task's (bf16 on CUDA like the official scorer, float32 on CPU by default) unless given.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer, PreTrainedModel, PreTrainedTokenizerBase

from harness.errors import HarnessError
from tasks.spec import TaskSpec

DTYPES = {"bfloat16": torch.bfloat16, "float16": torch.float16, "float32": torch.float32}


def resolve_device(device: str | None) -> torch.device:
    """The device to run on: the one given, else cuda (this process's local rank) when available, else cpu."""
    if device is not None:
        return torch.device(device)
    if torch.cuda.is_available():
        return torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
    return torch.device("cpu")


def resolve_dtype(task: TaskSpec, device: torch.device, dtype: str | None) -> torch.dtype:
    """The dtype given, else the task's cuda_dtype on CUDA and cpu_dtype elsewhere."""
    name = dtype or (task.cuda_dtype if device.type == "cuda" else task.cpu_dtype)
    if name not in DTYPES:
        raise HarnessError(f"unknown dtype {name!r} (choose from {', '.join(DTYPES)})")
    return DTYPES[name]


def load_checkpoint(
    checkpoint_dir: Path, device: torch.device, dtype: torch.dtype
) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """Model (eval mode, on device) and tokenizer (pad = eos) from a Hugging Face checkpoint directory."""
    checkpoint_dir = Path(checkpoint_dir)
    if not (checkpoint_dir / "config.json").is_file():
        raise HarnessError(f"{checkpoint_dir}: not a model checkpoint (no config.json)")
    try:
        tokenizer = AutoTokenizer.from_pretrained(checkpoint_dir)
        model = AutoModelForCausalLM.from_pretrained(checkpoint_dir, dtype=dtype)
    except (OSError, ValueError, KeyError) as error:
        first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise HarnessError(f"{checkpoint_dir}: cannot load the checkpoint ({first})") from None
    if tokenizer.eos_token_id is None:
        raise HarnessError(
            f"{checkpoint_dir}: the tokenizer has no EOS token (the official loop pads with it)"
        )
    tokenizer.pad_token = tokenizer.eos_token
    model.to(device).eval()
    return model, tokenizer
