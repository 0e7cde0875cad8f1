"""Shared machinery of the reference submissions: data, batching, losses, the training loop, saving.

A reference entry reads like a recipe on top of this module:

    run = Run.start(model_dir, output_dir, seed=0, mode="full")
    forget = run.encode(load_split(forget_dir, "forget"))
    run.optimize(lr=1e-5)
    for _ in range(epochs):
        for batch in run.batches(forget, batch_size=4):
            if run.out_of_time():  # leaves time for the final save before HARNESS_DEADLINE
                break
            run.step(-answer_nll(run.model(**batch.model_inputs()).logits, batch).mean())
    run.finish()

What this module owns:
- reading a split directory (``forget.jsonl`` / ``forget.parquet`` or the hub layout) with pandas;
- encoding a row as ``input + " " + output + EOS`` with labels on the answer (and EOS) only, which is
  exactly what the official scorer prompts with (the raw ``input``) and what it expects back;
- losses on answer tokens (per-sample NLL, NPO, KL to a reference);
- one training loop for 1 process or N processes under torchrun (gradients all-reduced; rank 0 saves);
- saving the model and its tokenizer to the root of the output directory atomically (a temporary
  directory inside it, then ``os.replace`` of each file), periodically and once more before the
  ``HARNESS_DEADLINE`` (epoch seconds) that the harness sets, with a safety margin; the saved files
  also load under the organisers' transformers 4.45.2 (``loadable_by_4_45``).

It imports only third-party packages and its sibling ``unlearn_lora`` (LoRA and 4-bit loading), so
``unlearn-harness pack`` can embed it in a single-file entry.
"""

from __future__ import annotations

import json
import math
import os
import random
import shutil
import tempfile
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path

import pandas as pd
import torch
import torch.distributed as dist
import torch.nn.functional as F
from transformers import AutoModelForCausalLM, AutoTokenizer

IGNORE = -100


# ----------------------------------------------------------------------------------------------- data


def load_split(directory: str | os.PathLike, name: str) -> list[dict]:
    """Rows of ``<directory>/<name>.jsonl`` or ``.parquet`` (or the hub layout ``data/<name>-*.parquet``)."""
    directory = Path(directory)
    candidates = [directory / f"{name}.jsonl", directory / f"{name}.parquet"]
    candidates += sorted(directory.glob(f"{name}*.parquet")) + sorted(directory.glob(f"data/{name}*.parquet"))
    candidates += sorted(directory.glob(f"{name}*.jsonl"))
    for path in candidates:
        if path.is_file():
            frame = (
                pd.read_json(path, lines=True, dtype=False)
                if path.suffix == ".jsonl"
                else pd.read_parquet(path)
            )
            missing = {"input", "output"} - set(frame.columns)
            if missing:
                raise ValueError(f"{path}: missing columns {sorted(missing)}")
            return frame.to_dict("records")
    raise FileNotFoundError(f"{directory}: no {name}.jsonl or {name}.parquet")


@dataclass(frozen=True)
class Example:
    """One encoded row: prompt + answer + EOS token ids, with labels on the answer and EOS only."""

    input_ids: list[int]
    labels: list[int]
    task: str = ""
    #: per-sample loss weight (SUGD's signed weights: -1 forget, +lambda retain)
    weight: float = 1.0


def encode_row(tokenizer, row: dict, max_length: int) -> Example:
    """``input`` (as the scorer tokenizes it) + ``" " + output`` + EOS; the prompt is cut from the left."""
    prompt = tokenizer(str(row["input"]))["input_ids"]
    answer = tokenizer(" " + str(row["output"]), add_special_tokens=False)["input_ids"]
    answer = answer[: max_length - 1] + [tokenizer.eos_token_id]
    prompt = prompt[-(max_length - len(answer)) :] if len(answer) < max_length else []
    return Example(prompt + answer, [IGNORE] * len(prompt) + answer, str(row.get("task", "")))


@dataclass
class Batch:
    """Right-padded tensors of a list of examples."""

    input_ids: torch.Tensor
    attention_mask: torch.Tensor
    labels: torch.Tensor
    weights: torch.Tensor
    tasks: list[str] = field(default_factory=list)

    def model_inputs(self) -> dict[str, torch.Tensor]:
        return {"input_ids": self.input_ids, "attention_mask": self.attention_mask}


def collate(examples: list[Example], pad_id: int, device: torch.device | str = "cpu") -> Batch:
    width = max(len(e.input_ids) for e in examples)
    ids = torch.full((len(examples), width), pad_id, dtype=torch.long)
    labels = torch.full((len(examples), width), IGNORE, dtype=torch.long)
    mask = torch.zeros((len(examples), width), dtype=torch.long)
    for i, e in enumerate(examples):
        ids[i, : len(e.input_ids)] = torch.tensor(e.input_ids)
        labels[i, : len(e.labels)] = torch.tensor(e.labels)
        mask[i, : len(e.input_ids)] = 1
    weights = torch.tensor([e.weight for e in examples], dtype=torch.float32)
    return Batch(
        ids.to(device), mask.to(device), labels.to(device), weights.to(device), [e.task for e in examples]
    )


# --------------------------------------------------------------------------------------------- losses


def token_logprobs(logits: torch.Tensor, batch: Batch) -> tuple[torch.Tensor, torch.Tensor]:
    """Log-probability of each next (label) token, shape [B, T-1], and the answer mask (1.0 on answers)."""
    targets = batch.labels[:, 1:]
    mask = (targets != IGNORE).float()
    logp = torch.log_softmax(logits[:, :-1].float(), dim=-1)
    picked = logp.gather(-1, targets.clamp(min=0).unsqueeze(-1)).squeeze(-1)
    return picked * mask, mask


def answer_nll(logits: torch.Tensor, batch: Batch) -> torch.Tensor:
    """Per-sample mean cross-entropy over the answer tokens (and EOS), shape [B]."""
    logp, mask = token_logprobs(logits, batch)
    return -logp.sum(-1) / mask.sum(-1).clamp(min=1)


def npo_loss(
    logp: torch.Tensor, ref_logp: torch.Tensor, beta: float, mask: torch.Tensor | None = None
) -> torch.Tensor:
    """NPO (Zhang et al. 2024): (2/beta)·softplus(beta·(log p_theta - log p_ref)), mean over ``mask``."""
    loss = 2.0 / beta * F.softplus(beta * (logp - ref_logp))
    return loss.mean() if mask is None else (loss * mask).sum() / mask.sum().clamp(min=1)


def kl_to_reference(logits: torch.Tensor, ref_logits: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Token-level KL(p_ref || p_theta) over the full next-token distributions, mean over ``mask`` [B, T]
    (an attention mask: every real token; or an answer mask)."""
    logp = torch.log_softmax(logits.float(), dim=-1)
    ref = torch.log_softmax(ref_logits.float(), dim=-1)
    per_token = F.kl_div(logp, ref, log_target=True, reduction="none").sum(-1)
    mask = mask.float()
    return (per_token * mask).sum() / mask.sum().clamp(min=1)


# ------------------------------------------------------------------------------------- training loop


def _device() -> torch.device:
    if torch.cuda.is_available():
        return torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0)))
    return torch.device("cpu")


@dataclass
class Run:
    """Model, tokenizer, optional frozen reference, optimiser, deadline and saving of one unlearning run."""

    model: torch.nn.Module
    tokenizer: object
    model_dir: Path
    output_dir: Path
    mode: str
    device: torch.device
    dtype: torch.dtype
    seed: int = 0
    max_length: int = 256
    max_grad_norm: float = 1.0
    rank: int = 0
    world: int = 1
    reference_model: torch.nn.Module | None = None
    deadline: float | None = None
    save_margin_s: float = 5.0
    save_every_s: float = math.inf
    log_every: int = 10
    steps: int = 0
    stopped: bool = False
    optimizer: torch.optim.Optimizer | None = None
    _last_save: float = field(default_factory=time.time)
    _save_s: float = 2.0
    _step_s: float = 0.0
    _shuffles: int = 0

    @classmethod
    def start(
        cls,
        model_dir: str | os.PathLike,
        output_dir: str | os.PathLike,
        *,
        seed: int = 0,
        mode: str = "full",
        reference: bool = False,
        lora_r: int = 64,
        lora_alpha: int = 16,
        lora_targets: str | list[str] = "all-linear",
        max_length: int = 256,
        max_grad_norm: float = 1.0,
        save_margin_s: float = 5.0,
    ) -> Run:
        """Set seeds, join torchrun's process group if any, load tokenizer and model (``mode``: full,
        lora, lora4bit) and, with ``reference``, a frozen reference (a copy in full mode; in LoRA modes
        the reference is the same model with its adapter disabled)."""
        world = int(os.environ.get("WORLD_SIZE", "1"))
        if world > 1 and not dist.is_initialized():
            dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
        rank = dist.get_rank() if world > 1 else 0
        random.seed(seed)
        torch.manual_seed(seed)
        device = _device()
        dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
        tokenizer = AutoTokenizer.from_pretrained(model_dir)
        if tokenizer.pad_token_id is None:
            tokenizer.pad_token = tokenizer.eos_token
        if mode == "full":
            model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=dtype).to(device)
        else:
            import unlearn_lora  # sibling module; needs peft (and bitsandbytes for 4-bit)

            model = unlearn_lora.load_lora_model(
                model_dir, quantize=mode == "lora4bit", r=lora_r, alpha=lora_alpha, targets=lora_targets,
                dtype=dtype, device=device,
            )  # fmt: skip
        model.config.use_cache = False
        ref = None
        if reference and mode == "full":
            ref = AutoModelForCausalLM.from_pretrained(model_dir, dtype=dtype).to(device).eval()
            ref.requires_grad_(False)
        deadline = float(os.environ["HARNESS_DEADLINE"]) if os.environ.get("HARNESS_DEADLINE") else None
        run = cls(
            model=model, tokenizer=tokenizer, model_dir=Path(model_dir), output_dir=Path(output_dir), mode=mode,
            device=device, dtype=dtype, seed=seed, max_length=max_length, max_grad_norm=max_grad_norm,
            rank=rank, world=world, reference_model=ref, deadline=deadline, save_margin_s=save_margin_s,
        )  # fmt: skip
        if deadline is not None:  # save about four times over the budget, then once more at the end
            run.save_every_s = max(30.0, (deadline - time.time()) / 4)
        run._save_s = 1.0 + sum(p.numel() for p in model.parameters()) * 4 / 100e6  # until measured
        run.log(f"mode={mode} device={device} world={world} trainable={run.trainable_count():,}")
        return run

    # -- data

    def encode(self, rows: Iterable[dict]) -> list[Example]:
        return [encode_row(self.tokenizer, row, self.max_length) for row in rows]

    def _my_order(self, n: int, shuffle: bool) -> list[int]:
        order = list(range(n))
        if shuffle:
            random.Random(self.seed * 1_000_003 + self._shuffles).shuffle(order)
            self._shuffles += 1
        per_rank = n // self.world
        return order[self.rank :: self.world][:per_rank]

    def batches(self, examples: list[Example], batch_size: int, *, shuffle: bool = True) -> Iterator[Batch]:
        """One epoch of batches (this rank's share under torchrun); the loop checks `out_of_time` itself.

        Once it has said stop, later epochs are empty, so the epochs left after the break cost nothing.
        """
        mine = self._my_order(len(examples), shuffle)
        for start in range(0, len(mine), batch_size):
            if self.stopped:
                return
            yield collate([examples[i] for i in mine[start : start + batch_size]], self.pad_id, self.device)

    def paired_batches(
        self, first: list[Example], second: list[Example], batch_size: int
    ) -> Iterator[tuple[Batch, Batch]]:
        """One epoch of (first[i..], second[i..]) batch pairs in one shuffled order (equal-length lists)."""
        mine = self._my_order(min(len(first), len(second)), True)
        for start in range(0, len(mine), batch_size):
            if self.stopped:  # as in `batches`
                return
            chosen = mine[start : start + batch_size]
            yield (
                collate([first[i] for i in chosen], self.pad_id, self.device),
                collate([second[i] for i in chosen], self.pad_id, self.device),
            )

    @property
    def pad_id(self) -> int:
        return self.tokenizer.pad_token_id

    # -- model helpers

    def logits(self, batch: Batch) -> torch.Tensor:
        return self.model(**batch.model_inputs()).logits

    @torch.no_grad()
    def reference_logits(self, batch: Batch) -> torch.Tensor:
        """Logits of the frozen reference: the copy (full mode) or the model with its adapter disabled."""
        if self.reference_model is not None:
            return self.reference_model(**batch.model_inputs()).logits
        with self.model.disable_adapter():
            return self.model(**batch.model_inputs()).logits

    def trainable_count(self) -> int:
        return sum(p.numel() for p in self.model.parameters() if p.requires_grad)

    def train_only(self, names: Iterable[str]) -> None:
        """Freeze every parameter except those whose name contains one of ``names``."""
        names = list(names)
        for name, param in self.model.named_parameters():
            param.requires_grad_(any(n in name for n in names))
        if self.trainable_count() == 0:
            raise ValueError(f"no parameter matches {names}")
        self.log(f"training {self.trainable_count():,} parameters matching {names}")

    # -- optimisation

    def optimize(self, lr: float, weight_decay: float = 0.0) -> None:
        """A fresh AdamW over the trainable parameters (call again to start a new phase)."""
        params = [p for p in self.model.parameters() if p.requires_grad]
        self.optimizer = torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay)

    def step(self, loss: torch.Tensor) -> None:
        """Backward, average gradients over processes, clip, update; save when a periodic save is due."""
        began = time.time()
        loss.backward()
        params = [p for group in self.optimizer.param_groups for p in group["params"] if p.grad is not None]
        if self.world > 1:
            for p in params:
                dist.all_reduce(p.grad, op=dist.ReduceOp.SUM)
                p.grad /= self.world
        if self.max_grad_norm:
            torch.nn.utils.clip_grad_norm_(params, self.max_grad_norm)
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        self.steps += 1
        self._step_s = max(self._step_s, time.time() - began)
        if self.steps % self.log_every == 0:
            self.log(f"step {self.steps} loss {loss.item():.4f}")
        if self.deadline is not None and time.time() - self._last_save > self.save_every_s:
            self.save()

    # -- time and saving

    def out_of_time(self) -> bool:
        """True once the remaining time only covers a final save (all ranks agree)."""
        if self.stopped:
            return True
        if self.deadline is not None:
            reserve = self.save_margin_s + 2 * self._save_s + 2 * self._step_s
            self.stopped = time.time() + reserve > self.deadline
        if self.world > 1:
            flag = torch.tensor([1.0 if self.stopped else 0.0])
            dist.all_reduce(flag, op=dist.ReduceOp.MAX)
            self.stopped = bool(flag.item())
        if self.stopped:
            self.log(f"stopping after {self.steps} steps to save before the deadline")
        return self.stopped

    def save(self) -> None:
        """Rank 0 writes model (merged, if LoRA) and tokenizer to the output root atomically."""
        began = time.time()
        if self.rank == 0:
            model = self.model
            if self.mode != "full":
                import unlearn_lora

                model = unlearn_lora.merged_copy(self.model, self.model_dir, self.dtype)
            save_atomically(model, self.tokenizer, self.output_dir)
            self.log(f"saved to {self.output_dir} in {time.time() - began:.1f}s")
        if self.world > 1:
            dist.barrier()
        self._save_s = time.time() - began
        self._last_save = time.time()

    def finish(self) -> None:
        """The final save; leaves torchrun's process group."""
        self.save()
        if self.world > 1:
            dist.destroy_process_group()

    def log(self, message: str) -> None:
        if self.rank == 0:
            print(f"[unlearn] {message}", flush=True)


def save_atomically(model, tokenizer, output_dir: str | os.PathLike) -> None:
    """save_pretrained into a temporary directory inside ``output_dir``, then move each file to the root
    (weights first, config and tokenizer last) and remove the temporary directory."""
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".saving-", dir=output_dir))
    try:
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        loadable_by_4_45(tmp)
        files = sorted(tmp.iterdir(), key=lambda p: (not p.name.startswith("model"), p.name))
        for path in files:
            os.replace(path, output_dir / path.name)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _update_json(path: Path, update) -> None:
    if path.is_file():
        data = json.loads(path.read_text())
        update(data)
        path.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")


def loadable_by_4_45(directory: Path) -> None:
    """Make a checkpoint saved by transformers 5 load the same under the organisers' 4.45.2: the tokenizer
    class it knows, and the config keys it reads (``rope_theta``, ``torch_dtype``) beside the new ones.
    The harness's check names these fields (tasks/portable.py, the same rules)."""

    def tokenizer(data: dict) -> None:
        if data.get("tokenizer_class") == "TokenizersBackend":
            data["tokenizer_class"] = "PreTrainedTokenizerFast"

    def config(data: dict) -> None:
        rope = data.get("rope_parameters")
        if isinstance(rope, dict) and "rope_theta" in rope:
            data.setdefault("rope_theta", rope["rope_theta"])
        if "dtype" in data:
            data.setdefault("torch_dtype", data["dtype"])

    _update_json(Path(directory) / "tokenizer_config.json", tokenizer)
    _update_json(Path(directory) / "config.json", config)


def cycle(batches_of_epoch) -> Iterator[Batch]:
    """Endless batches: call ``batches_of_epoch()`` again whenever an epoch ends (a new shuffle)."""
    while True:
        empty = True
        for batch in batches_of_epoch():
            empty = False
            yield batch
        if empty:
            return


def weighted(examples: list[Example], weight: float) -> list[Example]:
    return [replace(e, weight=weight) for e in examples]
