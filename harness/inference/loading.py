"""Loading a checkpoint for evaluation: device, dtype, model and tokenizer (official-scoring.md 2.2).

The tokenizer comes from the checkpoint directory with pad = eos, as the official script sets it. The
dtype is the task's (bf16 on CUDA like the official scorer, float32 on CPU by default) unless given.
The model gets the organisers' numerics (numerics.py). This module runs under transformers 4.45.2 too
(the official environment's worker), so it passes the dtype under the keyword the release knows.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer, PreTrainedModel, PreTrainedTokenizerBase
from transformers.utils import logging as hf_logging

from harness.errors import HarnessError
from harness.inference.cpu_half import has_amx
from harness.inference.numerics import TRANSFORMERS_MAJOR, match_official
from tasks.spec import TaskSpec

#: the from_pretrained keyword that sets the dtype: `dtype` from transformers 5, `torch_dtype` before
DTYPE_ARGUMENT = "dtype" if TRANSFORMERS_MAJOR >= 5 else "torch_dtype"
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
    if device.type == "cpu" and DTYPES[name] == torch.bfloat16 and not bf16_attention_runs():
        raise HarnessError(
            f"bfloat16 cannot run on this CPU under ATEN_CPU_CAPABILITY={os.environ.get('ATEN_CPU_CAPABILITY')}: "
            f"torch {torch.__version__}'s bf16 attention on a CPU with AMX needs its AVX-512 kernels (it fails "
            "with 'pack_vnni2 is only supported when avx512 is supported'); unset ATEN_CPU_CAPABILITY, or use "
            "--dtype float32"
        )
    return DTYPES[name]


def bf16_attention_runs() -> bool:
    """Whether torch's bf16 attention runs on this CPU: not where it has AMX and ATen's kernels are below
    AVX-512 (``ATEN_CPU_CAPABILITY=avx2`` or ``default``), where torch 2.13's flash attention packs its
    blocks for AMX with a routine only the AVX-512 kernels have (measured on an Intel Xeon: fails for a
    300-token or a masked 64-token batch, runs for one 41-token row)."""
    return not has_amx() or torch.backends.cpu.get_cpu_capability().startswith("AVX512")


def load_checkpoint(
    checkpoint_dir: Path, device: torch.device, dtype: torch.dtype
) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """Model (eval mode, on device) and tokenizer (pad = eos) from a Hugging Face checkpoint directory."""
    checkpoint_dir = Path(checkpoint_dir)
    if not (checkpoint_dir / "config.json").is_file():
        raise HarnessError(f"{checkpoint_dir}: not a model checkpoint (no config.json)")
    bars = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()  # transformers' "Loading weights" bar would cut through the harness's
    try:
        tokenizer = AutoTokenizer.from_pretrained(checkpoint_dir)
        model = AutoModelForCausalLM.from_pretrained(checkpoint_dir, **{DTYPE_ARGUMENT: dtype})
    except (OSError, ValueError, KeyError) as error:
        first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise HarnessError(f"{checkpoint_dir}: cannot load the checkpoint ({first})") from None
    finally:
        if bars:
            hf_logging.enable_progress_bar()
    if tokenizer.eos_token_id is None:
        raise HarnessError(
            f"{checkpoint_dir}: the tokenizer has no EOS token (the official loop pads with it)"
        )
    tokenizer.pad_token = tokenizer.eos_token
    match_official(model)
    model.to(device).eval()
    return model, tokenizer
