"""Quantization attack: the checkpoint's linear weights in 8-bit and in 4-bit NF4, then scored again.

Zhang et al. (ICLR 2025) found that 4-bit quantization brings back much of what gradient ascent or NPO
removed: the unlearning moved weights by less than one quantization step. Each linear layer's weight
(every ``nn.Linear`` but ``lm_head``, which transformers' bitsandbytes loading also keeps in full
precision) goes through a quantize/dequantize round trip, the dense result is saved as a checkpoint
and scored with the official inference (forget and retain terms and the MIA loss AUC). Two backends:

- ``bnb``: bitsandbytes' own kernels make the weights. NF4 is ``quantize_4bit(blocksize=64, nf4)`` then
  ``dequantize_4bit``, what ``BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4")`` stores
  (no double quantization; a bnb 4-bit layer dequantizes and multiplies in its compute dtype). 8-bit
  is ``int8_vectorwise_quant`` of the fp16 weight (LLM.int8's per-row absmax) then its dequantization;
  LLM.int8's activation quantization and outlier split are not applied (weights only).
- ``sim``: the same round trips written in torch (blockwise absmax over 64 values onto the 16 NF4 code
  values, nearest code; per-row absmax onto int8), used where bitsandbytes is missing or unusable.

The untouched target and the gold model go through the same round trips, so that what quantization
itself does to the scores is visible. "Recovered" is the checkpoint's forget knowledge (regurgitation)
after minus before.
"""

from __future__ import annotations

import json
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import torch

from harness.audit.common import (
    Measure,
    attacked_models,
    check_checkpoint,
    first_line,
    load_model,
    measure_from_json,
    measure_run,
    reference_memo,
    save_model,
    summarize,
)
from harness.errors import HarnessError
from tasks.spec import TaskSpec

BACKENDS = ("auto", "bnb", "sim")
SCHEMES = ("int8", "nf4")
NF4_BLOCK = 64
#: the 16 NF4 code values (QLoRA, Dettmers et al. 2023; the table bitsandbytes uses)
NF4_CODE = torch.tensor([
    -1.0, -0.6961928009986877, -0.5250730514526367, -0.39491748809814453, -0.28444138169288635,
    -0.18477343022823334, -0.09105003625154495, 0.0, 0.07958029955625534, 0.16093020141124725,
    0.24611230194568634, 0.33791524171829224, 0.44070982933044434, 0.5626170039176941, 0.7229568362236023, 1.0,
])  # fmt: skip


def nf4_sim(weight: torch.Tensor, blocksize: int = NF4_BLOCK) -> torch.Tensor:
    """NF4 round trip in torch: per block of ``blocksize`` values (row-major), absmax scale, nearest code."""
    flat = weight.detach().float().reshape(-1)
    pad = (-flat.numel()) % blocksize
    blocks = torch.cat([flat, flat.new_zeros(pad)]).reshape(-1, blocksize)
    absmax = blocks.abs().amax(dim=1, keepdim=True)
    scaled = blocks / torch.where(absmax == 0, torch.ones_like(absmax), absmax)
    index = (scaled.unsqueeze(-1) - NF4_CODE).abs().argmin(dim=-1)
    out = (NF4_CODE[index] * absmax).reshape(-1)[: flat.numel()]
    return out.reshape(weight.shape).to(weight.dtype)


def int8_sim(weight: torch.Tensor) -> torch.Tensor:
    """int8 round trip in torch, LLM.int8's weight format: the weight in fp16, per output row absmax,
    ``round(w * 127 / absmax)`` onto -127..127, dequantized as ``q * absmax / 127``."""
    w = weight.detach().to(torch.float16).float()
    absmax = w.abs().amax(dim=1, keepdim=True)
    absmax = torch.where(absmax == 0, torch.ones_like(absmax), absmax)
    return (torch.round(w * (127.0 / absmax)).clamp(-127, 127) * absmax / 127.0).to(weight.dtype)


def nf4_bnb(weight: torch.Tensor, blocksize: int = NF4_BLOCK) -> torch.Tensor:
    """NF4 round trip with bitsandbytes' kernels (quantize_4bit / dequantize_4bit, no double quant)."""
    import bitsandbytes.functional as bnbf

    packed, state = bnbf.quantize_4bit(weight.detach().float(), blocksize=blocksize, quant_type="nf4")
    return bnbf.dequantize_4bit(packed, state).reshape(weight.shape).to(weight.dtype)


def int8_bnb(weight: torch.Tensor) -> torch.Tensor:
    """LLM.int8's weight format with bitsandbytes' kernel: int8_vectorwise_quant of the fp16 weight."""
    import bitsandbytes.functional as bnbf

    quantized, scales, _ = bnbf.int8_vectorwise_quant(weight.detach().to(torch.float16))
    return (quantized.float() * scales.float().unsqueeze(1) / 127.0).to(weight.dtype)


ROUND_TRIPS = {
    ("sim", "nf4"): nf4_sim,
    ("sim", "int8"): int8_sim,
    ("bnb", "nf4"): nf4_bnb,
    ("bnb", "int8"): int8_bnb,
}


def resolve_backend(backend: str) -> tuple[str, str]:
    """(the backend to use, why): ``auto`` takes bitsandbytes when it imports and runs here, else sim."""
    if backend not in BACKENDS:
        raise HarnessError(f"unknown quantization backend {backend!r} (choose from {', '.join(BACKENDS)})")
    if backend == "sim":
        return "sim", "simulation in torch (asked for)"
    try:
        nf4_bnb(torch.ones(2, NF4_BLOCK))
        import bitsandbytes

        return "bnb", f"bitsandbytes {bitsandbytes.__version__} kernels"
    except Exception as error:  # noqa: BLE001 - a missing or broken install both mean "not usable here"
        if backend == "bnb":
            raise HarnessError(f"bitsandbytes is not usable here ({first_line(error)})") from None
        return "sim", f"simulation in torch (bitsandbytes not usable: {first_line(error)})"


def check_quantizable(checkpoint_dir: Path) -> None:
    """One clear line when the checkpoint is already quantized (its config has a quantization_config)."""
    config = json.loads((Path(checkpoint_dir) / "config.json").read_text())
    if config.get("quantization_config"):
        method = config["quantization_config"].get("quant_method", "unknown method")
        raise HarnessError(f"{checkpoint_dir}: already quantized ({method}); it cannot be quantized again")


@torch.no_grad()
def quantized_copy(checkpoint_dir: Path, out_dir: Path, scheme: str, backend: str) -> tuple[Path, int]:
    """Save ``checkpoint_dir`` with every linear weight but lm_head round-tripped; (dir, layers done)."""
    model, tokenizer = load_model(checkpoint_dir, device="cpu")
    trip = ROUND_TRIPS[(backend, scheme)]
    done = 0
    for name, module in model.named_modules():
        if isinstance(module, torch.nn.Linear) and not name.endswith("lm_head"):
            module.weight.copy_(trip(module.weight))
            done += 1
    return save_model(model, tokenizer, out_dir), done


@dataclass
class QuantizeResult:
    """Scores before and after each round trip, for the checkpoint and the references."""

    backend: str
    backend_note: str
    #: model -> condition ("none", "int8", "nf4") -> measure; model -> condition -> MIA AUC
    measures: dict[str, dict[str, Measure]] = field(default_factory=dict)
    auc: dict[str, dict[str, float | None]] = field(default_factory=dict)
    layers: int = 0
    notes: list[str] = field(default_factory=list)

    def recovered(
        self, scheme: str, key: str = "forget_knowledge", model: str = "checkpoint"
    ) -> float | None:
        """After minus before for ``model`` under ``scheme`` (positive: the forget set came back)."""
        m = self.measures.get(model, {})
        if "none" not in m or scheme not in m:
            return None
        before, after = getattr(m["none"], key), getattr(m[scheme], key)
        return None if before is None or after is None else after - before

    def to_json(self) -> dict[str, object]:
        out: dict[str, object] = {
            "backend": self.backend,
            "backend_note": self.backend_note,
            "layers": self.layers,
        }
        out["recovered"] = {
            s: {k: self.recovered(s, k) for k in ("forget_knowledge", "forget_regurgitation")}
            for s in SCHEMES
        }
        out["models"] = {
            model: {c: {**m.to_json(), "mia_auc": self.auc[model].get(c)} for c, m in conds.items()}
            for model, conds in self.measures.items()
        }
        out["notes"] = self.notes
        return out


def run_quantize(
    checkpoint_dir: Path,
    task: TaskSpec,
    work_dir: Path,
    *,
    backend: str = "auto",
    device: str | None = None,
    references: bool = True,
) -> QuantizeResult:
    """The quantization attack on ``checkpoint_dir`` (and, with ``references``, the target and gold)."""
    checkpoint_dir = check_checkpoint(checkpoint_dir)
    check_quantizable(checkpoint_dir)
    chosen, note = resolve_backend(backend)
    result = QuantizeResult(chosen, note)
    for model, path in attacked_models(
        checkpoint_dir, task, references, result.notes, "its quantization is not measured"
    ):

        def attack(path: Path = path, model: str = model) -> dict:
            out: dict = {"measures": {}, "auc": {}, "layers": 0}
            for scheme in ("none", *SCHEMES):
                with tempfile.TemporaryDirectory(prefix="audit-quant-") as tmp:
                    scored = path
                    if scheme != "none":
                        scored, out["layers"] = quantized_copy(path, Path(tmp) / "model", scheme, chosen)
                    rows, scores = measure_run(
                        scored, task, Path(work_dir) / f"{model}-{scheme}", device=device
                    )
                out["measures"][scheme], out["auc"][scheme] = summarize(rows).to_json(), scores.auc
            return out

        settings = {"backend": chosen, "device": device}
        done = attack() if model == "checkpoint" else reference_memo("quantize", path, task, settings, attack)
        result.measures[model] = {c: measure_from_json(m) for c, m in done["measures"].items()}
        result.auc[model], result.layers = done["auc"], max(result.layers, done["layers"])
    return result
