"""The tiny target: a byte-level BPE tokenizer trained on the world and a small OLMo trained to memorise it.

The tokenizer is saved as a `PreTrainedTokenizerFast` with ``<|endoftext|>`` as EOS (and BOS) and
``<|padding|>`` as pad, like OLMo's. It adds **no** special tokens when encoding (no BOS, no EOS, as the
GPT-NeoX-style OLMo tokenizers), so the official ``tokenizer(text).input_ids`` is just the text's tokens.

The model (transformers' `OlmoForCausalLM`, about 1.05M parameters) is trained on every text followed by
EOS, loss over the whole text, so it regurgitates each output greedily after its input and then stops,
gives low loss to the documents it saw, and answers the utility questions in their MMLU prompt format.
Training is seeded and runs on a fixed number of threads; the builder runs it in a child under fixed CPU
kernels (`tasks.tiny.trainer`), so that a build is the same on every AMD x86_64 machine measured (an
Intel Xeon builds another: README, "Which worlds are canonical").
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

from tasks.portable import make_portable

EOS_TOKEN = "<|endoftext|>"
PAD_TOKEN = "<|padding|>"


@dataclass(frozen=True)
class TrainSettings:
    """Tokenizer, architecture and optimisation settings of the tiny target (all part of the cache key)."""

    vocab_size: int = 1024
    hidden_size: int = 128
    intermediate_size: int = 512
    num_layers: int = 3
    num_heads: int = 4
    context: int = 512
    epochs: int = 40
    batch_size: int = 4
    peak_lr: float = 4e-3
    warmup: float = 0.1
    threads: int = 1

    def as_dict(self) -> dict[str, float | int]:
        return asdict(self)


def train_tokenizer(texts: list[str], settings: TrainSettings, out_dir: Path):
    """Train a byte-level BPE on ``texts`` and save it to ``out_dir`` as a fast tokenizer; returns it."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    core = Tokenizer(models.BPE())
    core.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    core.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=settings.vocab_size,
        special_tokens=[EOS_TOKEN, PAD_TOKEN],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    core.train_from_iterator(texts, trainer)
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=core,
        eos_token=EOS_TOKEN,
        bos_token=EOS_TOKEN,
        pad_token=PAD_TOKEN,
        model_max_length=settings.context,
        clean_up_tokenization_spaces=False,
    )
    for letter in "ABCD":  # open-instruct takes the last token of " A" .. " D" (section 4)
        if len(tokenizer.encode(" " + letter, add_special_tokens=False)) != 1:
            raise RuntimeError(f"tiny tokenizer: ' {letter}' is not a single token")
    tokenizer.save_pretrained(out_dir)
    make_portable(out_dir)
    return tokenizer


def _batches(lengths: list[int], batch_size: int) -> list[list[int]]:
    """Indices grouped into batches of similar length (less padding), in a fixed order."""
    order = sorted(range(len(lengths)), key=lambda i: (lengths[i], i))
    return [order[i : i + batch_size] for i in range(0, len(order), batch_size)]


def olmo_config(settings: TrainSettings, vocab_size: int, pad: int, bos: int, eos: int):
    """The tiny OLMo's architecture under ``settings`` (transformers' `OlmoConfig`)."""
    from transformers import OlmoConfig

    return OlmoConfig(
        vocab_size=vocab_size,
        hidden_size=settings.hidden_size,
        intermediate_size=settings.intermediate_size,
        num_hidden_layers=settings.num_layers,
        num_attention_heads=settings.num_heads,
        max_position_embeddings=settings.context,
        pad_token_id=pad,
        bos_token_id=bos,
        eos_token_id=eos,
        tie_word_embeddings=False,
    )


def train_model(
    texts: list[str],
    tokenizer,
    settings: TrainSettings,
    seed: int,
    out_dir: Path,
    on_epoch: Callable[[int, float], None] | None = None,
) -> None:
    """Train a fresh OLMo on ``texts`` (each followed by EOS) and save model, tokenizer and
    generation config to ``out_dir`` (safetensors). ``on_epoch(epoch, mean_loss)`` reports progress."""
    import torch
    from transformers import GenerationConfig, OlmoForCausalLM
    from transformers.utils import logging as hf_logging

    previous_threads = torch.get_num_threads()
    torch.set_num_threads(settings.threads)
    try:
        torch.manual_seed(seed)
        config = olmo_config(
            settings, len(tokenizer), tokenizer.pad_token_id, tokenizer.bos_token_id, tokenizer.eos_token_id
        )
        model = OlmoForCausalLM(config)
        encoded = [
            tokenizer.encode(text, add_special_tokens=False) + [tokenizer.eos_token_id] for text in texts
        ]
        too_long = [len(ids) for ids in encoded if len(ids) > settings.context]
        if too_long:
            raise RuntimeError(f"tiny world: a training text has {max(too_long)} tokens > {settings.context}")
        batches = _batches([len(ids) for ids in encoded], settings.batch_size)
        optimizer = torch.optim.AdamW(
            model.parameters(), lr=settings.peak_lr, betas=(0.9, 0.95), weight_decay=0.0
        )
        schedule = torch.optim.lr_scheduler.OneCycleLR(
            optimizer,
            max_lr=settings.peak_lr,
            total_steps=settings.epochs * len(batches),
            pct_start=settings.warmup,
        )
        shuffler = random.Random(seed)
        model.train()
        for epoch in range(settings.epochs):
            shuffler.shuffle(batches)
            total, count = 0.0, 0
            for batch in batches:
                width = max(len(encoded[i]) for i in batch)
                ids = torch.full((len(batch), width), tokenizer.pad_token_id, dtype=torch.long)
                mask = torch.zeros((len(batch), width), dtype=torch.long)
                for row, i in enumerate(batch):
                    ids[row, : len(encoded[i])] = torch.tensor(encoded[i])
                    mask[row, : len(encoded[i])] = 1
                labels = ids.masked_fill(mask == 0, -100)
                loss = model(input_ids=ids, attention_mask=mask, labels=labels).loss
                loss.backward()
                torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
                optimizer.step()
                schedule.step()
                optimizer.zero_grad(set_to_none=True)
                total, count = total + loss.item(), count + 1
            if on_epoch is not None:
                on_epoch(epoch + 1, total / max(count, 1))
        loss = total / max(count, 1)
        if not math.isfinite(loss):
            raise RuntimeError(f"tiny target training diverged (loss {loss})")
        model.eval()
        model.generation_config = GenerationConfig(
            bos_token_id=tokenizer.bos_token_id,
            eos_token_id=tokenizer.eos_token_id,
            pad_token_id=tokenizer.pad_token_id,
            do_sample=False,
        )
        bars_were_on = hf_logging.is_progress_bar_enabled()
        hf_logging.disable_progress_bar()  # no "Writing model shards" bar in our output
        try:
            model.save_pretrained(out_dir)
            tokenizer.save_pretrained(out_dir)
            make_portable(out_dir)  # loads the same under the organisers' transformers 4.45.2
        finally:
            if bars_were_on:
                hf_logging.enable_progress_bar()
    finally:
        torch.set_num_threads(previous_threads)
