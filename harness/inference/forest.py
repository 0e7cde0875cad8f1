"""Prefix forests: the fast path's forward passes, with every shared token prefix run once.

The fast path reads logits off many token sequences that share prefixes: a row's answer NLL sequence
(question + answer) and the draft of its generation (question, then the answer after a space); a MIA
member document and the sentence-completion prompt it begins with; the MMLU prompts of one subject,
which repeat its header and shots. In a trie of these sequences each shared prefix is one run of
nodes. A node's logits depend only on its path from the root, so a row in which each node attends to
its ancestors and itself, at the position of its depth, gives every sequence the logits it has alone
(up to float rounding, as any batching).

`plan_rows` sorts the sequences (those sharing a prefix become neighbours) and fills rows of at most
``capacity`` nodes with tries, whole or in parts (a sequence that does not fit starts a new row with its
whole path; one longer than ``capacity`` has a row of its own). `read` runs the rows in batches
(batching.run_batched: padded-token cap, halving on out-of-memory) and reads per sequence what the
callers need at its positions ``first`` .. end: the greedy token there (argmax of the float32 logits),
the mean cross-entropy of the sequence's own next tokens, and the softmax probabilities of candidate
tokens at its last position. Only the positions asked for go through the output layer.

Where the attention implementation takes no custom mask (flash attention), each sequence is a row of
its own, left padded under the usual 2-D mask.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from transformers import PreTrainedModel

from harness.inference import cpu_half, ties
from harness.inference.batching import run_batched

#: attention implementations that take a custom 4-D mask (boolean for sdpa, additive for eager)
TREE_ATTENTION = ("sdpa", "eager")
#: model types whose causal-LM forward is ``lm_head(decoder(...).last_hidden_state)`` and nothing more:
#: their output layer can run on the positions asked for only; any other model runs its whole forward
PLAIN_HEAD = frozenset({"olmo", "olmo2", "llama", "mistral", "qwen2"})
#: the most nodes of one packed row by default (within it, `pair_cost` keeps the rows of a small model short)
ROW_TOKENS = 1024
#: the most float32 logits (positions x vocabulary) held at once (1 GiB)
LOGITS_BUDGET = 1 << 28


@dataclass(frozen=True)
class Row:
    """A packed row: its nodes' tokens, each node's parent (-1 for a root), and per sequence in it the
    sequence's index and the node of each of its tokens."""

    tokens: tuple[int, ...]
    parents: tuple[int, ...]
    members: tuple[tuple[int, tuple[int, ...]], ...]

    def __len__(self) -> int:
        return len(self.tokens)


@dataclass(frozen=True)
class Readout:
    """What `read` gives for one sequence ``ids`` asked from position ``first``.

    ``greedy[j]``: the argmax of the float32 logits after ``ids[: first + j + 1]``, j = 0 ..
    len(ids) - first - 1, and ``margins[j]`` its lead over the second-best logit there. ``loss``: the mean cross-entropy of ``ids[first + 1 :]`` given their prefixes
    (NaN when there is none). ``probs``: the softmax over the whole vocabulary after the whole sequence,
    at the candidate tokens (None when no candidates were given).
    """

    greedy: tuple[int, ...]
    loss: float
    probs: tuple[float, ...] | None = None
    #: per greedy position, the argmax's relative lead over the runner-up (ties.py)
    margins: tuple[float, ...] = ()
    #: with candidates: the relative lead of the likeliest candidate over the next one (ties.py)
    choice_margin: float | None = None


def common_prefix(a: Sequence[int], b: Sequence[int]) -> int:
    """The length of the longest common prefix of two token sequences."""
    n = 0
    for x, y in zip(a, b):
        if x != y:
            break
        n += 1
    return n


def plan_rows(
    seqs: Sequence[Sequence[int]], capacity: int, share: bool = True, pair_cost: float = 0.0
) -> list[Row]:
    """The sequences as rows of trie nodes, at most ``capacity`` nodes a row (see the module docstring).

    In token order a sequence's longest common prefix with all the sequences before it in the row is
    the one with its predecessor, so it adds only its tokens after that prefix. It joins the row when
    the tokens it shares save more than the row's attention grows: attention is dense over a row, and
    ``pair_cost`` is the cost of one (query, key) pair relative to one token through the layers (see
    `pair_cost`; 0: join whenever it fits). Without ``share`` each sequence is a row of its own (a plain
    chain). Empty sequences get no row.
    """
    if not share:
        return [
            Row(tuple(s), tuple(range(-1, len(s) - 1)), ((i, tuple(range(len(s)))),))
            for i, s in enumerate(seqs)
            if len(s)
        ]
    rows: list[Row] = []
    tokens: list[int] = []
    parents: list[int] = []
    members: list[tuple[int, tuple[int, ...]]] = []
    previous: tuple[int, ...] = ()
    previous_path: tuple[int, ...] = ()
    for i in sorted((i for i in range(len(seqs)) if len(seqs[i])), key=lambda i: tuple(seqs[i])):
        seq = tuple(seqs[i])
        shared = common_prefix(seq, previous) if members else 0
        width, new = len(tokens), len(seq) - shared
        growth = 2 * width * new + new * new - len(seq) * len(seq)  # (width + new)^2 - width^2 - alone^2
        if members and (width + new > capacity or shared < pair_cost * growth):
            rows.append(Row(tuple(tokens), tuple(parents), tuple(members)))
            tokens, parents, members, shared = [], [], [], 0
        path = list(previous_path[:shared])
        for token in seq[shared:]:
            parents.append(path[-1] if path else -1)
            path.append(len(tokens))
            tokens.append(token)
        members.append((i, tuple(path)))
        previous, previous_path = seq, tuple(path)
    if members:
        rows.append(Row(tuple(tokens), tuple(parents), tuple(members)))
    return rows


@dataclass(frozen=True)
class Packed:
    """Left-padded rows: ids, position ids (a node's depth), the attention mask (4-D boolean (batch, 1,
    query, key), True where a query sees a key; 2-D padding mask when ``tree`` is False) and each row's
    left padding."""

    input_ids: torch.Tensor
    position_ids: torch.Tensor
    attention_mask: torch.Tensor
    offsets: list[int]


def pack(rows: Sequence[Row], pad_token_id: int, tree: bool = True) -> Packed:
    """Left-pad ``rows`` to one width; with ``tree`` each node sees its ancestors and itself (padding
    sees itself only), else every row must be one chain and the mask is the usual 2-D one.

    `plan_rows` numbers a row's nodes in depth-first order (its sequences come in token order), so a
    node's subtree is the run of nodes from it to ``end`` (exclusive): key k is an ancestor-or-self of
    query q exactly when k <= q < end[k].
    """
    width = max(len(r) for r in rows)
    ids = np.full((len(rows), width), pad_token_id, dtype=np.int64)
    positions = np.zeros((len(rows), width), dtype=np.int64)
    end = np.tile(np.arange(1, width + 1), (len(rows), 1))  # padding: a subtree of its own
    offsets = []
    for b, row in enumerate(rows):
        offset = width - len(row)
        offsets.append(offset)
        ids[b, offset:] = row.tokens
        if not tree and (len(row.members) > 1 or len(row.members[0][1]) != len(row)):
            raise ValueError("a row of several sequences needs a tree mask")
        depth, size = [0] * len(row), [1] * len(row)
        for node, parent in enumerate(row.parents):  # parents come before their children
            if parent >= 0:
                depth[node] = depth[parent] + 1
        for node in range(len(row) - 1, 0, -1):
            if row.parents[node] >= 0:
                size[row.parents[node]] += size[node]
        positions[b, offset:] = depth
        end[b, offset:] = np.arange(offset, width) + size
    if tree:
        column = np.arange(width)
        seen = (column[None, None, :] <= column[None, :, None]) & (column[None, :, None] < end[:, None, :])
        mask = torch.from_numpy(seen)[:, None]
    else:
        mask = torch.from_numpy(np.asarray(offsets)[:, None] <= np.arange(width)[None, :]).long()
    return Packed(torch.from_numpy(ids), torch.from_numpy(positions), mask, offsets)


def attention_mask_for(model: PreTrainedModel, mask: torch.Tensor) -> torch.Tensor:
    """``mask`` on the model's device, a 4-D one as the model's attention implementation takes it."""
    if mask.dim() == 4 and model.config._attn_implementation == "eager":
        mask = torch.zeros(mask.shape, dtype=model.dtype).masked_fill(~mask, torch.finfo(model.dtype).min)
    return mask.to(model.device)


def candidate_probs(logits: torch.Tensor, candidates: Sequence[int]) -> torch.Tensor:
    """open-instruct's choice rule: the softmax over the whole vocabulary (float32), at the candidates."""
    return torch.softmax(logits.float(), dim=-1)[:, list(candidates)]


def pair_cost(model: PreTrainedModel) -> float:
    """One attention (query, key) pair's multiply-adds (2 x hidden a layer: scores and values) over
    one token's in the layers' matrices (4 hidden^2 + 3 hidden x intermediate for a gated MLP)."""
    hidden = model.config.hidden_size
    intermediate = getattr(model.config, "intermediate_size", None) or 4 * hidden
    return 2 / (4 * hidden + 3 * intermediate)


def shares_prefixes(model: PreTrainedModel) -> bool:
    """Whether the model's attention takes the tree mask (else every sequence runs as a row of its own)."""
    return model.config._attn_implementation in TREE_ATTENTION


def _logits(model: PreTrainedModel, packed: Packed, rows: torch.Tensor, cols: torch.Tensor):
    """The float32 logits at (rows[k], cols[k]) of a packed batch, in chunks within LOGITS_BUDGET."""
    device = model.device
    inputs = {
        "input_ids": packed.input_ids.to(device),
        "attention_mask": attention_mask_for(model, packed.attention_mask),
        "position_ids": packed.position_ids.to(device),
    }
    chunk = max(1, LOGITS_BUDGET // model.config.vocab_size)
    rows, cols = rows.to(device), cols.to(device)
    if model.config.model_type in PLAIN_HEAD:
        hidden = model.get_decoder()(**inputs, use_cache=False).last_hidden_state[rows, cols]
        head = model.get_output_embeddings()
        for start in range(0, len(hidden), chunk):
            yield head(hidden[start : start + chunk]).float()
        return
    logits = model(**inputs, use_cache=False).logits  # the whole forward: rows are capped by `read`
    for start in range(0, len(rows), chunk):
        yield logits[rows[start : start + chunk], cols[start : start + chunk]].float()


# Stays whole (70 lines): `work` is a closure over the plan and the model settings that run_batched calls
# per batch; splitting it out would pass seven arguments through for no reader's gain.
def read(
    model: PreTrainedModel,
    seqs: Sequence[Sequence[int]],
    firsts: Sequence[int],
    pad_token_id: int,
    batch_size: int,
    max_tokens: int | None = None,
    capacity: int = ROW_TOKENS,
    candidates: Sequence[int] | None = None,
    on_rows: Callable[[int], None] | None = None,
) -> list[Readout]:
    """A `Readout` of each sequence from position ``firsts[i]`` on (see the module docstring).

    ``on_rows(n)`` counts the sequences done.
    """
    share = shares_prefixes(model)
    cap = capacity if max_tokens is None else max(1, min(capacity, max_tokens))
    rows = plan_rows(seqs, cap, share, pair_cost(model))
    full_forward = model.config.model_type not in PLAIN_HEAD
    vocab = model.config.vocab_size

    @torch.inference_mode()
    def work(batch: list[Row]) -> list[list[tuple[int, Readout]]]:
        """Per row of the batch: (sequence index, readout) of each sequence in it."""
        if full_forward and len(batch) > 1:  # the whole logits of a batch stay within LOGITS_BUDGET
            step = max(1, LOGITS_BUDGET // (max(len(r) for r in batch) * vocab))
            if step < len(batch):
                return [out for s in range(0, len(batch), step) for out in work(batch[s : s + step])]
        packed = pack(batch, pad_token_id, tree=share)
        where_rows, where_cols, targets, spans = [], [], [], []
        for b, (row, offset) in enumerate(zip(batch, packed.offsets)):
            for i, path in row.members:
                nodes = path[firsts[i] :]
                spans.append((b, i, len(where_cols), len(nodes)))
                where_rows += [b] * len(nodes)
                where_cols += [offset + c for c in nodes]
                targets += [*seqs[i][firsts[i] + 1 :], 0][: len(nodes)]  # the last node has no next token
        greedy: list[int] = []
        margins: list[float] = []
        token_nll: list[float] = []
        last: dict[int, torch.Tensor] = {}
        lasts = {start + n - 1: i for _, i, start, n in spans if n} if candidates is not None else {}
        target = torch.tensor(targets, dtype=torch.long, device=model.device)
        done = 0
        for logits in _logits(model, packed, torch.tensor(where_rows), torch.tensor(where_cols)):
            n = len(logits)
            greedy += logits.argmax(-1).tolist()
            margins += ties.margins(logits).tolist()
            picked = logits.gather(1, target[done : done + n, None])[:, 0]
            token_nll += (torch.logsumexp(logits, -1) - picked).tolist()
            for k in (k for k in lasts if done <= k < done + n):
                last[k] = logits[k - done].clone()  # not a view that keeps the whole chunk
            done += n
        probs: dict[int, tuple[float, ...]] = {}
        leads: dict[int, float] = {}
        if lasts:
            ks = sorted(last)
            stacked = torch.stack([last[k] for k in ks])
            values = candidate_probs(stacked, candidates)
            probs = {lasts[k]: tuple(v) for k, v in zip(ks, values.tolist())}
            if len(candidates) > 1:
                top = stacked[:, list(candidates)].topk(2, dim=-1).values
                lead = (top[:, 0] - top[:, 1]) / stacked.max(-1).values.abs().clamp(min=1.0)
                leads = {lasts[k]: v for k, v in zip(ks, lead.tolist())}
        out: list[list[tuple[int, Readout]]] = [[] for _ in batch]
        for b, i, start, n in spans:
            nll = token_nll[start : start + n - 1]
            loss = sum(nll) / len(nll) if nll else math.nan
            readout = Readout(
                tuple(greedy[start : start + n]),
                loss,
                probs.get(i),
                tuple(margins[start : start + n]),
                leads.get(i),
            )
            out[b].append((i, readout))
        if on_rows is not None:
            on_rows(len(spans))
        return out

    results: list[Readout | None] = [Readout((), math.nan) if not len(s) else None for s in seqs]
    with cpu_half.float32_linears(model):
        for row_out in run_batched(rows, work, batch_size, cost=len, max_tokens=max_tokens):
            for i, readout in row_out:
                results[i] = readout
    return results  # type: ignore[return-value]
