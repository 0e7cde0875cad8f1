"""Randomly initialised OLMo-architecture checkpoints for engine tests and benchmarks.

Owns two small builders: a byte-level BPE tokenizer trained on given texts (``<|endoftext|>`` is EOS, as in
OLMo's tokenizers) and a randomly initialised ``OlmoForCausalLM`` saved with that tokenizer. Nothing here
is used to score a submission; it gives the parity tests and `benchmarks/` a checkpoint with the real
architecture when no trained model is at hand.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import OlmoConfig, OlmoForCausalLM, PreTrainedTokenizerFast

EOS = "<|endoftext|>"


def train_tokenizer(texts: Iterable[str], out_dir: Path, vocab_size: int = 2048) -> PreTrainedTokenizerFast:
    """Train a byte-level BPE on ``texts`` and save it (tokenizer.json etc.) into ``out_dir``."""
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size, special_tokens=[EOS], initial_alphabet=pre_tokenizers.ByteLevel.alphabet()
    )
    tok.train_from_iterator(texts, trainer=trainer)
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, eos_token=EOS, pad_token=EOS)
    out_dir.mkdir(parents=True, exist_ok=True)
    fast.save_pretrained(out_dir)
    return fast


def random_olmo(
    tokenizer: PreTrainedTokenizerFast,
    out_dir: Path,
    *,
    hidden_size: int = 64,
    num_layers: int = 2,
    num_heads: int = 4,
    intermediate_size: int = 128,
    max_positions: int = 4096,
    seed: int = 0,
    init_std: float = 0.02,
) -> Path:
    """Save a randomly initialised OLMo model (float32) plus ``tokenizer`` into ``out_dir``; return it."""
    eos = tokenizer.eos_token_id
    config = OlmoConfig(
        vocab_size=len(tokenizer),
        hidden_size=hidden_size,
        num_hidden_layers=num_layers,
        num_attention_heads=num_heads,
        intermediate_size=intermediate_size,
        max_position_embeddings=max_positions,
        initializer_range=init_std,
        pad_token_id=eos,
        bos_token_id=None,
        eos_token_id=eos,
        tie_word_embeddings=False,
    )
    torch.manual_seed(seed)
    model = OlmoForCausalLM(config)
    model.generation_config.eos_token_id = eos
    model.generation_config.pad_token_id = eos
    out_dir.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out_dir)
    tokenizer.save_pretrained(out_dir)
    return out_dir
