"""A random OLMo with a word-level tokenizer (words w0..w60), saved like a real checkpoint: the small
stand-in target for tests that do not need the tiny world."""

from __future__ import annotations

from pathlib import Path


def make_word_olmo(directory: Path, *, hidden_size: int, intermediate_size: int, num_layers: int) -> Path:
    """Save the model and its tokenizer (pad 0, eos 1, no BOS) in ``directory``; seeded, so reproducible."""
    import torch
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import OlmoConfig, OlmoForCausalLM, PreTrainedTokenizerFast

    words = ["<pad>", "<eos>", "<unk>"] + [f"w{i}" for i in range(61)]
    tok = Tokenizer(models.WordLevel({w: i for i, w in enumerate(words)}, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=tok, eos_token="<eos>", pad_token="<pad>", unk_token="<unk>"
    )
    torch.manual_seed(0)
    config = OlmoConfig(
        vocab_size=64, hidden_size=hidden_size, intermediate_size=intermediate_size,
        num_hidden_layers=num_layers, num_attention_heads=2, num_key_value_heads=2,
        max_position_embeddings=64, pad_token_id=0, eos_token_id=1, bos_token_id=None,
    )  # fmt: skip
    OlmoForCausalLM(config).save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    return directory


# The byte-level BPE + random OLMo builders live in harness.inference.synthetic because benchmarks/ use
# them too; tests take them from here, so this module is the one factory of small test models.
from harness.inference.synthetic import random_olmo, train_tokenizer  # noqa: E402

__all__ = ["make_word_olmo", "random_olmo", "train_tokenizer"]
