"""Greedy generation: the official one-row loop (exact), a batched cached greedy loop (fast), and drafts.

All return, per prompt, the generated token ids (everything after the prompt, EOS included when it was
produced), and `decode` turns them into the official text. The fast loop must pick the same token at every
step as the exact loop; it only batches: prompts sorted by length and left padded, an explicit attention
mask and position ids (so every real token sees the same positions and keys as when run alone), a KV
cache, and rows dropped from the batch as soon as they produce EOS or reach their token budget.

`generate_drafted` is the fast path of the evaluation: the answer NLL pass over question+answer already
has the logits after the question and after every prefix of the expected answer, so wherever the model
regurgitates the answer its greedy tokens are known without decoding (`accept_draft`); only rows that
leave the answer and do not stop right there go on to the batched loop.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from transformers import (
    GenerationConfig,
    PreTrainedModel,
    PreTrainedTokenizerBase,
    StoppingCriteria,
    StoppingCriteriaList,
)

from harness.inference import cpu_half, forest, ties
from harness.inference.batching import Batch, left_pad, run_batched

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


def generate_exact(
    model: PreTrainedModel,
    prompt: Sequence[int],
    max_new_tokens: int,
    pad_token_id: int,
    follow: Sequence[int] = (),
    until: int = -1,
) -> list[int]:
    """The official call (official-scoring.md 2.3): one row, no attention mask, greedy, cache on.

    With ``follow`` (a candidate generation) and ``until`` (an index into it), the same call stops once
    it has generated ``follow[: until + 1]`` and returns ``follow`` whole: see `_Follows`. A stopping
    criterion only reads the tokens after each step, so the model's inputs, and every token the call
    makes, are the ones the plain call makes.
    """
    made = _exact_loop(model, prompt, max_new_tokens, pad_token_id, follow, until)
    return _followed(made, follow, until)


def _followed(made: list[int], follow: Sequence[int], until: int) -> list[int]:
    """The generation, from the tokens the exact loop made while following ``follow`` through ``until``."""
    return list(follow) if until >= 0 and made == list(follow[: until + 1]) else made


@torch.inference_mode()
def _exact_loop(
    model: PreTrainedModel,
    prompt: Sequence[int],
    max_new_tokens: int,
    pad_token_id: int,
    follow: Sequence[int],
    until: int,
) -> list[int]:
    """The tokens `generate_exact`'s call makes (one per decoding step)."""
    ids = torch.tensor([list(prompt)], device=model.device)
    criteria = StoppingCriteriaList([_Follows(follow, until, ids.shape[1])]) if until >= 0 else None
    out = model.generate(
        ids,
        max_new_tokens=max_new_tokens,
        do_sample=False,
        use_cache=True,
        pad_token_id=pad_token_id,
        stopping_criteria=criteria,
    )
    return out[0, ids.shape[1] :].tolist()


class _Follows(StoppingCriteria):
    """Stops a one-row greedy call as soon as it has generated ``follow[: until + 1]``.

    Used where the fast path made a candidate ``follow`` whose picks after ``until`` all lead their
    runner-up by more than the rounding tolerance (ties.py): once the exact loop has reproduced the
    candidate through ``until``, it would go on reproducing the rest, since each later token is the
    argmax after the same prefix, won by more than rounding can change. If it leaves the candidate
    anywhere on the way, it does not stop here and runs to its own end.
    """

    def __init__(self, follow: Sequence[int], until: int, prompt_length: int) -> None:
        self.follow, self.until, self.start = list(follow), until, prompt_length

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor, **kwargs) -> torch.BoolTensor:
        made = input_ids[0, self.start :].tolist()
        hit = len(made) == self.until + 1 and made == self.follow[: self.until + 1]
        return torch.full((input_ids.shape[0],), hit, dtype=torch.bool, device=input_ids.device)


def decode(tokenizer: PreTrainedTokenizerBase, tokens: Sequence[int]) -> str:
    """Decode as transformers 4.45.2 did with skip_special_tokens=True, clean_up_tokenization_spaces=True.

    transformers 5 ignores clean_up_tokenization_spaces for BPE tokenizers (OLMo's are BPE); 4.45.2, which
    the organisers pinned (official-scoring.md 2.13), applied it, so it is applied here explicitly.
    """
    text = tokenizer.decode(list(tokens), skip_special_tokens=True, clean_up_tokenization_spaces=False)
    return tokenizer.clean_up_tokenization(text)


@torch.inference_mode()
def generate_batch(
    model: PreTrainedModel, batch: Batch, budgets: Sequence[int], stop: set[int]
) -> list[Decoded]:
    """Greedy-decode one left-padded batch; returns each row's new tokens (EOS included if produced),
    at most ``budgets[row]`` of them, and the lead of each pick over its runner-up (ties.py)."""
    device = model.device
    input_ids, mask = batch.input_ids.to(device), batch.attention_mask.to(device)
    n = input_ids.shape[0]
    steps = max(budgets)
    positions = (mask.cumsum(-1) - 1).clamp(min=0)
    from harness.inference.kvcache import reserved_cache  # fast path only (see kvcache.py)

    cache = reserved_cache(model.config.num_hidden_layers, input_ids.shape[1] + steps)
    produced: list[list[int]] = [[] for _ in range(n)]
    alive = torch.arange(n, device=device)  # original row index of each row still in the batch
    limit = torch.tensor(list(budgets), device=device)  # token budget of each row still in the batch
    stop_t = torch.tensor(sorted(stop), device=device, dtype=torch.long)
    leads_of: list[list[float]] = [[] for _ in range(n)]  # each pick's lead over the runner-up (ties.py)
    logits = model(
        input_ids, attention_mask=mask, position_ids=positions, cache=cache, logits_to_keep=1
    ).logits
    last_pos = positions[:, -1]
    for step in range(steps):
        # the official loop takes the argmax of the float32 copy of the last logits (HF greedy search)
        last = logits[:, -1, :].float()
        nxt = last.argmax(-1)
        leads = ties.margins(last)
        for row, tok, lead in zip(alive.tolist(), nxt.tolist(), leads.tolist()):
            produced[row].append(tok)
            leads_of[row].append(lead)
        if step == steps - 1:
            break
        done = limit <= step + 1
        if len(stop):
            done |= torch.isin(nxt, stop_t)
        if done.any():
            keep = (~done).nonzero().squeeze(-1)
            if keep.numel() == 0:
                break
            cache.batch_select_indices(keep)
            alive, nxt, mask = alive[keep], nxt[keep], mask[keep]
            last_pos, limit = last_pos[keep], limit[keep]
        mask = torch.cat([mask, mask.new_ones(mask.shape[0], 1)], dim=-1)
        last_pos = last_pos + 1
        logits = model(
            nxt[:, None], attention_mask=mask, position_ids=last_pos[:, None], cache=cache, logits_to_keep=1
        ).logits
    return [Decoded(tokens, tuple(leads)) for tokens, leads in zip(produced, leads_of)]


@torch.inference_mode()
def generate_batch_hf(
    model: PreTrainedModel, batch: Batch, budgets: Sequence[int], pad_token_id: int
) -> list[Decoded]:
    """Batched ``generate`` for checkpoints whose generation_config is not plain greedy (rare)."""
    device = model.device
    out = model.generate(
        batch.input_ids.to(device),
        attention_mask=batch.attention_mask.to(device),
        max_new_tokens=max(budgets),
        do_sample=False,
        use_cache=True,
        pad_token_id=pad_token_id,
    )
    stop = eos_ids(model)
    rows = []
    for seq, budget in zip(out[:, batch.input_ids.shape[1] :].tolist(), budgets):
        seq = seq[:budget]
        cut = next((i + 1 for i, t in enumerate(seq) if t in stop), len(seq))
        rows.append(Decoded(seq[:cut], (math.nan,) * cut))  # leads unknown: the exact loop settles them
    return rows


def generate_fast(
    model: PreTrainedModel,
    prompts: Sequence[Sequence[int]],
    max_new_tokens: int | Sequence[int],
    pad_token_id: int,
    batch_size: int,
    max_tokens: int | None = None,
    on_rows: Callable[[int], None] | None = None,
) -> list[list[int]]:
    """Batched greedy generation over all prompts (any order in, results in input order).

    ``max_new_tokens``: one budget for all prompts or one per prompt; ``max_tokens`` caps the padded
    prompt tokens of a batch (see batching.run_batched).
    """
    decoded = decode_batched(model, prompts, max_new_tokens, pad_token_id, batch_size, max_tokens, on_rows)
    return [d.tokens for d in decoded]


def decode_batched(
    model: PreTrainedModel,
    prompts: Sequence[Sequence[int]],
    max_new_tokens: int | Sequence[int],
    pad_token_id: int,
    batch_size: int,
    max_tokens: int | None = None,
    on_rows: Callable[[int], None] | None = None,
) -> list[Decoded]:
    """`generate_fast` with the lead of each row's picks over the runner-up (see ties.py)."""
    stop = eos_ids(model)
    greedy = plain_greedy(model.generation_config)
    n = len(prompts)
    limits = [max_new_tokens] * n if isinstance(max_new_tokens, int) else list(max_new_tokens)

    def work(rows: list[tuple[Sequence[int], int]]) -> list[Decoded]:
        batch = left_pad([prompt for prompt, _ in rows], pad_token_id)
        budgets = [budget for _, budget in rows]
        if greedy:
            return generate_batch(model, batch, budgets, stop)
        return generate_batch_hf(model, batch, budgets, pad_token_id)

    with cpu_half.float32_linears(model):
        return run_batched(
            list(zip(prompts, limits)),
            work,
            batch_size,
            cost=lambda row: len(row[0]),
            max_tokens=max_tokens,
            on_rows=on_rows,
        )


def accept_draft(
    greedy: Sequence[int], draft: Sequence[int], max_new_tokens: int, stop: set[int]
) -> tuple[list[int], bool]:
    """The tokens greedy decoding generates along a draft of its output, and whether it is finished there.

    ``greedy[i]`` is the argmax of the (float32) logits after ``prompt + draft[:i]``, for i = 0 ..
    len(draft): one forward pass over prompt + draft gives them all (the answer NLL pass does).

    Why this is the greedy generation: greedy decoding's token i is the argmax of the logits after
    ``prompt + its tokens[:i]``, a function of that prefix alone. While its tokens so far equal
    ``draft[:i]``, that prefix is ``prompt + draft[:i]``, so its token i is ``greedy[i]``: the same
    prefix, the same argmax rule (up to float rounding, which can only matter at a near tie, as for any
    batching). So the generation is ``greedy[0], greedy[1], ...`` for as long as each equals the draft
    token, plus the first one that does not (or the one after the whole draft). It ends there at EOS
    or at ``max_new_tokens``; otherwise it continues exactly as greedy decoding from prompt + these
    tokens would (the second value is False), with the remaining budget.
    """
    tokens: list[int] = []
    for i, token in enumerate(greedy):
        tokens.append(token)
        if token in stop or len(tokens) >= max_new_tokens:
            return tokens, True
        if i >= len(draft) or token != draft[i]:
            return tokens, False
    raise ValueError(f"greedy has {len(greedy)} tokens for a draft of {len(draft)}: expected one more")


@dataclass(frozen=True)
class Draft:
    """A guess of a row's generation: its tokens, and once a forward pass over prompt + tokens has given
    them, ``greedy``: the argmax after prompt + ``tokens[:i]`` for i = 0 .. len(tokens) (see `accept_draft`)."""

    tokens: tuple[int, ...]
    greedy: tuple[int, ...] | None = None
    #: the lead of each ``greedy`` pick over the runner-up (ties.py)
    margins: tuple[float, ...] = ()


@dataclass(frozen=True)
class Decoded:
    """A row's generated tokens and the lead of each of its greedy picks over the runner-up (NaN: unknown)."""

    tokens: list[int]
    margins: tuple[float, ...]


def _pick(drafts: Sequence[Draft]) -> Draft | None:
    """The draft to follow: the first one that starts with the generation's first token.

    A checked draft tells that token (its ``greedy[0]``, the argmax after the prompt); without one,
    the first draft is taken. If none fits, a checked draft still gives the first token.
    """
    first = next((d.greedy[0] for d in drafts if d.greedy), None)
    for draft in drafts:
        if draft.tokens and (first is None or draft.tokens[0] == first):
            return draft
    return next((d for d in drafts if d.greedy), None)


@dataclass(frozen=True)
class Drafted:
    """`generate_drafted`'s result: each row's tokens, the rows the exact loop settled (near ties), and the
    decoding steps and seconds that took."""

    tokens: list[list[int]]
    exact_rows: list[int]
    exact_steps: int = 0
    exact_seconds: float = 0.0


# Stays whole (62 lines): the draft check, the acceptance, the batched rest and the near-tie fallback are
# one pass over the same per-row lists.
def generate_drafted(
    model: PreTrainedModel,
    prompts: Sequence[Sequence[int]],
    drafts: Sequence[Sequence[Draft]],
    max_new_tokens: int,
    pad_token_id: int,
    batch_size: int,
    max_tokens: int | None = None,
    on_rows: Callable[[int], None] | None = None,
    decode_tokens: int | None = None,
) -> Drafted:
    """Greedy generation of each prompt, following a draft of its output where the model does.

    Per row, the draft picked by `_pick` is checked if it is not yet: one batched forward pass over
    prompt + draft tokens gives the greedy token after every prefix of the draft (speculative decoding
    with the draft as the guess, all of it verified at once). `accept_draft` turns that into the row's
    first tokens; the rows it leaves unfinished continue in the batched greedy loop from prompt + those
    tokens with the budget left, as do rows without a draft. A row any of whose picks led its runner-up
    by less than the dtype's tolerance (ties.py) is settled by the exact one-row loop, through its last
    such pick (`_settle`), so the result is the exact path's. Under a generation_config that is not plain
    greedy, drafts are ignored and every row is generated from its prompt. ``decode_tokens`` caps the
    padded prompt tokens of a decoding batch (default ``max_tokens``, which caps the forward passes).
    """
    decode_tokens = decode_tokens or max_tokens
    tol = ties.tolerance(model.dtype)
    if not plain_greedy(model.generation_config):
        rest = decode_batched(
            model, prompts, max_new_tokens, pad_token_id, batch_size, decode_tokens, on_rows
        )
        return _settle(model, prompts, [d.tokens for d in rest], [list(d.margins) for d in rest], tol,
                       max_new_tokens, pad_token_id)  # fmt: skip
    stop = eos_ids(model)
    picked = [_pick(row) if len(prompt) else None for prompt, row in zip(prompts, drafts)]
    unchecked = [i for i, d in enumerate(picked) if d is not None and d.greedy is None]
    checks = forest.read(
        model,
        [(*prompts[i], *picked[i].tokens) for i in unchecked],
        [len(prompts[i]) - 1 for i in unchecked],
        pad_token_id,
        batch_size,
        max_tokens,
    )
    for i, check in zip(unchecked, checks):
        picked[i] = Draft(picked[i].tokens, check.greedy, check.margins)
    tokens: list[list[int]] = []
    leads: list[list[float]] = []  # the lead of each pick of each row (a draft without leads: inf)
    pending: list[int] = []
    for i, draft in enumerate(picked):
        accepted, done = [], False
        if draft is not None:
            accepted, done = accept_draft(draft.greedy, draft.tokens, max_new_tokens, stop)
        tokens.append(accepted)
        known = list(draft.margins[: len(accepted)]) if draft else []
        leads.append(known + [math.inf] * (len(accepted) - len(known)))
        if not done:
            pending.append(i)
    if on_rows is not None and len(prompts) > len(pending):
        on_rows(len(prompts) - len(pending))
    rest = decode_batched(
        model,
        [[*prompts[i], *tokens[i]] for i in pending],
        [max_new_tokens - len(tokens[i]) for i in pending],
        pad_token_id,
        batch_size,
        decode_tokens,
        on_rows,
    )
    for i, more in zip(pending, rest):
        tokens[i] += more.tokens
        leads[i] += more.margins
    return _settle(model, prompts, tokens, leads, tol, max_new_tokens, pad_token_id)


def _settle(
    model: PreTrainedModel,
    prompts: Sequence[Sequence[int]],
    tokens: list[list[int]],
    leads: Sequence[Sequence[float]],
    tol: float,
    max_new_tokens: int,
    pad_token_id: int,
) -> Drafted:
    """Settle with the exact loop each row with a pick whose lead is below `tol` (or unknown: NaN).

    The fast path's tokens are the exact path's up to a row's first such pick (every earlier pick won by
    more than rounding can change), and after its last one if the exact loop made the same picks up to
    there; so the exact loop runs only through the row's last near tie, following the candidate, and on
    to its own end only where it leaves the candidate (`generate_exact` with ``follow``).
    """
    near: list[int] = []
    steps, started = 0, time.perf_counter()
    for i, row in enumerate(leads):
        if not len(prompts[i]):
            continue
        unsure = [j for j, lead in enumerate(row) if not lead >= tol]
        if model.dtype == torch.float32:  # unknown leads (NaN) come from batched HF generate: fine in float32
            unsure = [j for j in unsure if not math.isnan(row[j])]
        if unsure:
            made = _exact_loop(model, prompts[i], max_new_tokens, pad_token_id, tokens[i], unsure[-1])
            tokens[i] = _followed(made, tokens[i], unsure[-1])
            near.append(i)
            steps += len(made)
    return Drafted(tokens, near, steps, time.perf_counter() - started if near else 0.0)
