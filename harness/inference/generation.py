"""Greedy generation: the official one-row loop (exact) and a batched, cached greedy loop (fast).

Both return, per prompt, the generated token ids (everything after the prompt, EOS included when it was
produced), and `decode` turns them into the official text. The fast loop must pick the same token at every
step as the exact loop; it only batches: prompts sorted by length and left padded, an explicit attention
mask and position ids (so every real token sees the same positions and keys as when run alone), a KV
cache, and rows dropped from the batch as soon as they produce EOS.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from transformers import GenerationConfig, PreTrainedModel, PreTrainedTokenizerBase
from transformers.cache_utils import Cache, DynamicLayer

from harness.inference.batching import Batch, left_pad

#: generation_config fields that would add logits processors or stopping rules to plain greedy decoding
_PLAIN_GREEDY_DEFAULTS = {
    "repetition_penalty": (None, 1.0),
    "no_repeat_ngram_size": (None, 0),
    "encoder_no_repeat_ngram_size": (None, 0),
    "bad_words_ids": (None,),
    "min_length": (None, 0),
    "min_new_tokens": (None, 0),
    "forced_bos_token_id": (None,),
    "forced_eos_token_id": (None,),
    "suppress_tokens": (None,),
    "begin_suppress_tokens": (None,),
    "sequence_bias": (None,),
    "exponential_decay_length_penalty": (None,),
    "stop_strings": (None,),
    "max_time": (None,),
}


def eos_ids(model: PreTrainedModel) -> set[int]:
    """The token ids that end a generation: the checkpoint's generation_config EOS (int or list)."""
    eos = model.generation_config.eos_token_id
    if eos is None:
        return set()
    return {int(e) for e in (eos if isinstance(eos, (list, tuple)) else [eos])}


def plain_greedy(config: GenerationConfig) -> bool:
    """Whether ``generate(do_sample=False)`` under this config is plain argmax with EOS stopping."""
    return all(getattr(config, key, None) in allowed for key, allowed in _PLAIN_GREEDY_DEFAULTS.items())


@torch.inference_mode()
def generate_exact(
    model: PreTrainedModel, prompt: Sequence[int], max_new_tokens: int, pad_token_id: int
) -> list[int]:
    """The official call (official-scoring.md 2.3): one row, no attention mask, greedy, cache on."""
    ids = torch.tensor([list(prompt)], device=model.device)
    out = model.generate(
        ids, max_new_tokens=max_new_tokens, do_sample=False, use_cache=True, pad_token_id=pad_token_id
    )
    return out[0, ids.shape[1] :].tolist()


def decode(tokenizer: PreTrainedTokenizerBase, tokens: Sequence[int]) -> str:
    """Decode as transformers 4.45.2 did with skip_special_tokens=True, clean_up_tokenization_spaces=True.

    transformers 5 ignores clean_up_tokenization_spaces for BPE tokenizers (OLMo's are BPE); 4.45.2, which
    the organisers pinned (official-scoring.md 2.13), applied it, so it is applied here explicitly.
    """
    text = tokenizer.decode(list(tokens), skip_special_tokens=True, clean_up_tokenization_spaces=False)
    return tokenizer.clean_up_tokenization(text)


class _ReservedLayer(DynamicLayer):
    """A KV-cache layer that writes into a buffer reserved for the whole generation.

    transformers' DynamicLayer concatenates the new keys and values onto the old ones at every step, which
    copies the whole cache each step; here the keys and values handed to attention are views of the buffer.
    """

    def __init__(self, capacity: int) -> None:
        super().__init__()
        self.capacity = capacity
        self.length = 0

    def update(self, key_states: torch.Tensor, value_states: torch.Tensor, *args, **kwargs):
        if not self.is_initialized:
            b, h, _, d = key_states.shape
            self.buffers = (
                key_states.new_empty((b, h, self.capacity, d)),
                value_states.new_empty((b, h, self.capacity, value_states.shape[-1])),
            )
            self.device = key_states.device
            self.is_initialized = True
        start, self.length = self.length, self.length + key_states.shape[-2]
        self.buffers[0][:, :, start : self.length] = key_states
        self.buffers[1][:, :, start : self.length] = value_states
        self.keys = self.buffers[0][:, :, : self.length]
        self.values = self.buffers[1][:, :, : self.length]
        return self.keys, self.values

    def batch_select_indices(self, indices: torch.Tensor) -> None:
        if self.is_initialized:
            self.buffers = (self.buffers[0][indices], self.buffers[1][indices])
            self.keys = self.buffers[0][:, :, : self.length]
            self.values = self.buffers[1][:, :, : self.length]


@torch.inference_mode()
def generate_batch(
    model: PreTrainedModel, batch: Batch, max_new_tokens: int, stop: set[int]
) -> list[list[int]]:
    """Greedy-decode one left-padded batch; returns each row's new tokens (EOS included if produced)."""
    device = model.device
    input_ids, mask = batch.input_ids.to(device), batch.attention_mask.to(device)
    positions = (mask.cumsum(-1) - 1).clamp(min=0)
    capacity = input_ids.shape[1] + max_new_tokens
    cache = Cache(layers=[_ReservedLayer(capacity) for _ in range(model.config.num_hidden_layers)])
    n = input_ids.shape[0]
    produced: list[list[int]] = [[] for _ in range(n)]
    alive = torch.arange(n, device=device)  # original row index of each row still in the batch
    stop_t = torch.tensor(sorted(stop), device=device, dtype=torch.long)
    logits = model(
        input_ids, attention_mask=mask, position_ids=positions, cache=cache, logits_to_keep=1
    ).logits
    last_pos = positions[:, -1]
    for step in range(max_new_tokens):
        # the official loop takes the argmax of the float32 copy of the last logits (HF greedy search)
        nxt = logits[:, -1, :].float().argmax(-1)
        for row, tok in zip(alive.tolist(), nxt.tolist()):
            produced[row].append(tok)
        if step == max_new_tokens - 1:
            break
        done = torch.isin(nxt, stop_t) if len(stop) else torch.zeros_like(nxt, dtype=torch.bool)
        if done.any():
            keep = (~done).nonzero().squeeze(-1)
            if keep.numel() == 0:
                break
            cache.batch_select_indices(keep)
            alive, nxt, mask, last_pos = alive[keep], nxt[keep], mask[keep], last_pos[keep]
        mask = torch.cat([mask, mask.new_ones(mask.shape[0], 1)], dim=-1)
        last_pos = last_pos + 1
        logits = model(
            nxt[:, None], attention_mask=mask, position_ids=last_pos[:, None], cache=cache, logits_to_keep=1
        ).logits
    return produced


@torch.inference_mode()
def generate_batch_hf(
    model: PreTrainedModel, batch: Batch, max_new_tokens: int, pad_token_id: int
) -> list[list[int]]:
    """Batched ``generate`` for checkpoints whose generation_config is not plain greedy (rare)."""
    device = model.device
    out = model.generate(
        batch.input_ids.to(device),
        attention_mask=batch.attention_mask.to(device),
        max_new_tokens=max_new_tokens,
        do_sample=False,
        use_cache=True,
        pad_token_id=pad_token_id,
    )
    stop = eos_ids(model)
    rows = []
    for seq in out[:, batch.input_ids.shape[1] :].tolist():
        cut = next((i + 1 for i, t in enumerate(seq) if t in stop), len(seq))
        rows.append(seq[:cut])
    return rows


def generate_fast(
    model: PreTrainedModel,
    prompts: Sequence[Sequence[int]],
    max_new_tokens: int,
    pad_token_id: int,
    batch_size: int,
    on_rows: Callable[[int], None] | None = None,
) -> list[list[int]]:
    """Batched greedy generation over all prompts (any order in, results in input order)."""
    from harness.inference.batching import run_batched

    stop = eos_ids(model)
    greedy = plain_greedy(model.generation_config)

    def work(rows: list[Sequence[int]]) -> list[list[int]]:
        batch = left_pad(rows, pad_token_id)
        if greedy:
            return generate_batch(model, batch, max_new_tokens, stop)
        return generate_batch_hf(model, batch, max_new_tokens, pad_token_id)

    return run_batched(prompts, work, batch_size, cost=len, on_rows=on_rows)
