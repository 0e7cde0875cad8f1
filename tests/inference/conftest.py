"""Fixtures of the inference tests: the random OLMo on the real prompts, a decoding spy."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from mini_model import random_olmo, train_tokenizer

from harness.inference import generation
from tasks.data import read_mia, read_rows


@pytest.fixture(scope="session")
def lume(shared_data: Path, tmp_path_factory: pytest.TempPathFactory):
    """(model, tokenizer, forget+retain validation rows, MIA docs) with a random 2-layer OLMo."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    validation = shared_data / "semeval25" / "validation"
    rows = read_rows(validation / "forget.jsonl") + read_rows(validation / "retain.jsonl")
    texts = [t for r in rows for t in (r.input, r.output)]
    out = tmp_path_factory.mktemp("lume-olmo")
    tokenizer = train_tokenizer(texts, out / "tok", vocab_size=1024)
    random_olmo(tokenizer, out / "model", hidden_size=64, num_layers=2, num_heads=4, intermediate_size=128)
    model = AutoModelForCausalLM.from_pretrained(out / "model", dtype=torch.float32).eval()
    tokenizer = AutoTokenizer.from_pretrained(out / "model")
    mia = shared_data / "semeval25" / "mia_data"
    docs = read_mia(mia / "member.jsonl")[:6], read_mia(mia / "nonmember.jsonl")[:6]
    return model, tokenizer, rows, docs


@pytest.fixture
def continued(monkeypatch) -> list[int]:
    """Counts the rows that drafted generation hands on to the batched decoding loop."""
    counts: list[int] = []
    decode = generation.decode_batched

    def spy(model, prompts, *args, **kwargs):
        counts.append(len(prompts))
        return decode(model, prompts, *args, **kwargs)

    monkeypatch.setattr(generation, "decode_batched", spy)
    return counts
