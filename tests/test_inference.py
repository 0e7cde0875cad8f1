"""The evaluation engine: unit checks of its pieces and exact-vs-fast parity on real prompts and the tiny task.

Parity rule (issue 4): the fast path must produce the exact path's tokens; a row may differ only where the
exact path's top two logits at the first differing step are within 1e-4 (a float-rounding near tie).
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import pickle
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import torch
from sklearn.metrics import roc_auc_score

from harness.inference import answers, batching, distributed, evaluate, forest, generation, losses, mmlu
from harness.inference.synthetic import random_olmo, train_tokenizer
from tasks.data import MMLU_CATEGORIES, MmluItem, MmluSubject, read_mia, read_mmlu, read_rows

NEAR_TIE = 1e-4


@pytest.fixture(scope="module", autouse=True)
def _one_thread():
    """One torch thread: on a shared 2-core machine two threads stall each other (results do not change)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


# --- pieces ------------------------------------------------------------------------------------------------


def test_left_pad_puts_padding_on_the_left() -> None:
    batch = batching.left_pad([[5, 6, 7], [8]], pad_token_id=0)
    assert batch.input_ids.tolist() == [[5, 6, 7], [0, 0, 8]]
    assert batch.attention_mask.tolist() == [[1, 1, 1], [0, 0, 1]]


def test_shards_are_contiguous_and_the_quirk_pads_like_accelerate() -> None:
    items = list(range(10))
    plain = [distributed.shard(items, distributed.World(r, 3)) for r in range(3)]
    assert plain == [[0, 1, 2, 3], [4, 5, 6], [7, 8, 9]]
    quirk = [distributed.shard(items, distributed.World(r, 3), quirk=True) for r in range(3)]
    # floor(10/3) + 1 = 4 rows each, the last row repeated
    assert quirk == [[0, 1, 2, 3], [4, 5, 6, 6], [7, 8, 9, 9]]
    # even when P divides n, every shard gets one duplicate (official-scoring.md 2.12)
    assert [distributed.shard([0, 1, 2, 3], distributed.World(r, 2), quirk=True) for r in range(2)] == [
        [0, 1, 1],
        [2, 3, 3],
    ]


def test_run_batched_sorts_by_length_keeps_order_and_halves_on_oom() -> None:
    seen: list[list[str]] = []

    def work(chunk: list[str]) -> list[str]:
        if len(chunk) > 2:
            raise RuntimeError("CUDA out of memory. Tried to allocate 1 GiB")
        seen.append(chunk)
        return [s.upper() for s in chunk]

    items = ["aa", "b", "cccc", "ddd", "e"]
    assert batching.run_batched(items, work, 8, cost=len) == ["AA", "B", "CCCC", "DDD", "E"]
    assert seen == [["cccc", "ddd"], ["aa", "b"], ["e"]]  # longest first, ties in input order


def test_run_batched_reraises_other_errors() -> None:
    def work(chunk: list[int]) -> list[int]:
        raise ValueError("boom")

    with pytest.raises(ValueError, match="boom"):
        batching.run_batched([1, 2], work, 2, cost=lambda x: x)


def _check_caps(chunks: list[list[str]], batch_size: int, max_tokens: int) -> None:
    for chunk in chunks:
        assert len(chunk) <= batch_size
        assert len(chunk) == 1 or len(chunk) * max(len(s) for s in chunk) <= max_tokens


def test_run_batched_token_budget_respects_both_caps_and_keeps_order() -> None:
    # short and long items: a row cap alone would pad the short ones to the longest
    items = [("x" * n) for n in (3, 40, 5, 38, 4, 41, 6, 39, 2, 60, 5, 3, 37, 4)]
    seen: list[list[str]] = []

    def work(chunk: list[str]) -> list[int]:
        seen.append(chunk)
        return [len(s) for s in chunk]

    assert batching.run_batched(items, work, 4, cost=len, max_tokens=120) == [len(s) for s in items]
    _check_caps(seen, 4, 120)
    assert sorted(s for chunk in seen for s in chunk) == sorted(items)
    # longest first, and no batch mixes the long items (37-60) with the short ones (2-6)
    assert seen[0][0] == "x" * 60
    assert all(max(map(len, c)) < 10 or min(map(len, c)) > 30 for c in seen)
    # without a budget: consecutive runs of batch_size, as before
    seen.clear()
    batching.run_batched(items, work, 4, cost=len)
    assert [len(c) for c in seen] == [4, 4, 4, 2]


def test_plan_batches_stays_within_both_caps() -> None:
    costs = sorted(
        [97, 90, 88, 71, 70, 70, 64, 33, 30, 24, 20, 19, 17, 15, 12, 12, 11, 9, 9, 8], reverse=True
    )
    for batch_size, max_tokens in ((64, 2048), (4, 2048), (64, 150), (3, 60), (64, 1)):
        plan = batching.plan_batches(costs, batch_size, max_tokens)
        assert sum(plan) == len(costs)
        start = 0
        for k in plan:
            assert 1 <= k <= batch_size
            assert k == 1 or k * costs[start] <= max_tokens
            start += k


def test_run_batched_token_budget_halves_on_oom() -> None:
    items = [("x" * n) for n in (30, 31, 29, 8, 9, 7, 30, 6)]
    seen: list[list[str]] = []

    def work(chunk: list[str]) -> list[str]:
        if len(chunk) * max(len(s) for s in chunk) > 64:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 1 GiB")
        seen.append(chunk)
        return [s.upper() for s in chunk]

    assert batching.run_batched(items, work, 8, cost=len, max_tokens=256) == [s.upper() for s in items]
    _check_caps(seen, 8, 64)


def test_accept_draft() -> None:
    eos, stop = 0, {0}
    draft = [5, 6, 7]
    # a draft fully accepted ends at EOS: finished without decoding
    assert generation.accept_draft([5, 6, 7, eos], draft, 48, stop) == ([5, 6, 7, eos], True)
    # ... or goes on after it: the token after the draft, then decoding continues
    assert generation.accept_draft([5, 6, 7, 9], draft, 48, stop) == ([5, 6, 7, 9], False)
    # the first mismatch is the model's own token; EOS there ends the generation
    assert generation.accept_draft([5, 8, 1, 1], draft, 48, stop) == ([5, 8], False)
    assert generation.accept_draft([5, eos, 1, 1], draft, 48, stop) == ([5, eos], True)
    assert generation.accept_draft([4, 6, 7, eos], draft, 48, stop) == ([4], False)
    # an answer longer than max_new_tokens is cut there
    assert generation.accept_draft([5, 6, 7, eos], draft, 2, stop) == ([5, 6], True)
    assert generation.accept_draft([5, 6, 7, eos], draft, 3, stop) == ([5, 6, 7], True)
    # an EOS inside the draft, predicted, ends it there
    assert generation.accept_draft([5, eos, 7, 8], [5, eos, 7], 48, stop) == ([5, eos], True)
    with pytest.raises(ValueError):
        generation.accept_draft([5, 6], draft, 48, stop)


def _subject(n_dev: int = 2) -> MmluSubject:
    dev = [MmluItem(f"Q{i}?", "w", "x", "y", "z", "B") for i in range(n_dev)]
    return MmluSubject(
        "high_school_geography", dev, [MmluItem("Where?", "here", "there", "nan", "none", "A")]
    )


class _WordTokenizer:
    """Counts whitespace-separated words as tokens (enough for the shot-fallback rule)."""

    def __call__(self, text: str | list[str], add_special_tokens: bool = True):
        ids = [t.split() for t in text] if isinstance(text, list) else text.split()
        return type("Enc", (), {"input_ids": ids})()


def test_mmlu_prompt_has_the_double_space_and_shots() -> None:
    prompt = mmlu.build_prompts(_subject(), _WordTokenizer(), shots=5, max_tokens=2048)[0]
    assert prompt == (
        "The following are multiple choice questions (with answers) about  high school geography.\n\n"
        "Q0?\nA. w\nB. x\nC. y\nD. z\nAnswer: B\n\n"
        "Q1?\nA. w\nB. x\nC. y\nD. z\nAnswer: B\n\n"
        "Where?\nA. here\nB. there\nC. nan\nD. none\nAnswer:"
    )


def test_mmlu_prompt_drops_shots_while_over_the_limit() -> None:
    # header 12 words, each shot 11 words, the test item 10 words: 2 shots = 44, 1 shot = 33, 0 shots = 22
    prompts = [mmlu.build_prompts(_subject(), _WordTokenizer(), 5, limit)[0] for limit in (44, 43, 33, 32, 5)]
    shots = [p.count("Answer: B") for p in prompts]
    assert shots == [2, 1, 1, 0, 0]


# --- a random OLMo with a BPE trained on the real prompts (the real-data parity tests) ----------------------


@pytest.fixture(scope="module")
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


def _exact_step_gap(model, prompt: list[int], max_new: int, step: int) -> float:
    """The exact path's top-2 logit gap at generation step ``step`` (the official call, with its logits)."""
    out = model.generate(
        torch.tensor([prompt]),
        max_new_tokens=max_new,
        do_sample=False,
        use_cache=True,
        pad_token_id=model.generation_config.eos_token_id,
        output_logits=True,
        return_dict_in_generate=True,
    )
    top = out.logits[step][0].float().topk(2).values
    return float(top[0] - top[1])


def _assert_same_or_near_tie(model, prompts, exact, fast, max_new, labels) -> None:
    for prompt, a, b, label in zip(prompts, exact, fast, labels):
        if a == b:
            continue
        step = next(i for i, (x, y) in enumerate(zip(a + [None], b + [None])) if x != y)
        gap = _exact_step_gap(model, prompt, max_new, step)
        print(f"near tie: row {label} differs at step {step}, exact top-2 gap {gap:.3g}")
        assert gap <= NEAR_TIE, f"row {label}: fast path differs at step {step} with a top-2 gap of {gap}"


def test_fast_generation_matches_exact_on_real_validation_prompts(lume) -> None:
    model, tokenizer, rows, _ = lume
    sample = rows[::45]  # 12 rows of both splits, short and long prompts
    prompts = [tokenizer(r.input).input_ids for r in sample]
    eos = tokenizer.eos_token_id
    exact = [generation.generate_exact(model, p, 8, eos) for p in prompts]
    fast = generation.generate_fast(model, prompts, 8, eos, batch_size=5)
    assert len(fast) == len(exact) == len(sample)
    _assert_same_or_near_tie(model, prompts, exact, fast, 8, [r.id for r in sample])
    assert [generation.decode(tokenizer, t) for t in fast] == [generation.decode(tokenizer, t) for t in exact]


def test_decode_applies_the_cleanup_that_transformers_4_45_did(lume) -> None:
    _, tokenizer, _, _ = lume
    ids = tokenizer("Hello , world . It 's done !").input_ids + [tokenizer.eos_token_id]
    assert generation.decode(tokenizer, ids) == "Hello, world. It's done!"


def test_fast_losses_match_exact_and_give_the_same_auc(lume) -> None:
    model, tokenizer, rows, (members, nonmembers) = lume
    answers = [losses.answer_item(tokenizer, r.input, r.output) for r in rows[::80]]
    docs = [losses.document_item(tokenizer, d.document) for d in members + nonmembers]
    items = answers + docs
    exact = [losses.loss_exact(model, it) for it in items]
    fast = losses.losses_fast(model, items, tokenizer.eos_token_id, batch_size=5)
    assert fast == pytest.approx(exact, rel=1e-5)
    labels = [1] * len(members) + [0] * len(nonmembers)
    n = len(answers)
    auc_exact = roc_auc_score(labels, [-x for x in exact[n:]])
    auc_fast = roc_auc_score(labels, [-x for x in fast[n:]])
    assert auc_fast == auc_exact


def test_answer_loss_labels_only_the_answer_tokens(lume) -> None:
    model, tokenizer, _, _ = lume
    item = losses.answer_item(tokenizer, "The capital is", " Paris.")
    ids = torch.tensor([item.ids])
    with torch.inference_mode():
        logits = model(ids).logits[0].float()
    by_hand = torch.nn.functional.cross_entropy(logits[item.start - 1 : -1], ids[0, item.start :])
    assert losses.loss_exact(model, item) == pytest.approx(float(by_hand), rel=1e-6)
    assert losses.losses_fast(model, [item], tokenizer.eos_token_id, 4)[0] == pytest.approx(
        float(by_hand), rel=1e-5
    )


def test_fast_mmlu_choices_match_exact_on_real_subjects(lume, shared_data: Path) -> None:
    model, tokenizer, _, _ = lume
    subjects = read_mmlu(shared_data / "mmlu", ["college_physics", "electrical_engineering", "anatomy"])
    candidates = mmlu.answer_token_ids(tokenizer)
    assert candidates == [tokenizer.encode(" " + x, add_special_tokens=False)[-1] for x in "ABCD"]
    prompts = []
    for subject in subjects:
        texts = mmlu.build_prompts(subject, tokenizer, shots=5, max_tokens=2048)[:2]
        prompts += [tokenizer(p).input_ids for p in texts]
    exact = [mmlu.choose_exact(model, p, candidates) for p in prompts]
    fast = mmlu.choose_fast(model, prompts, candidates, tokenizer.eos_token_id, batch_size=4)
    for (pe, probs_e), (pf, probs_f) in zip(exact, fast):
        if pe != pf:
            top = sorted(probs_e, reverse=True)
            assert top[0] - top[1] <= NEAR_TIE
        assert probs_f == pytest.approx(probs_e, rel=1e-4)


def test_a_forest_row_gives_each_sequence_what_it_has_alone(lume, monkeypatch) -> None:
    model, tokenizer, rows, (members, _) = lume
    question = tokenizer(rows[0].input).input_ids
    answer = tokenizer(rows[0].output, add_special_tokens=False).input_ids
    other, third = tokenizer(" Paris is").input_ids, tokenizer(" and").input_ids
    doc = tokenizer(members[0].document).input_ids
    seqs = [question + answer, question + other, question + third, third, doc, question + answer]
    firsts = [len(question) - 1, len(question) - 1, 0, 0, 0, 3]
    candidates = mmlu.answer_token_ids(tokenizer)
    # the question runs once for the four sequences that begin with it
    assert sum(len(r) for r in forest.plan_rows(seqs, 4096)) <= sum(map(len, seqs)) - 3 * len(question)
    # the output layer on the positions asked for; the whole forward; no tree mask (as flash attention)
    for setting in ("plain head", "whole forward", "no tree mask"):
        if setting == "whole forward":
            monkeypatch.setattr(forest, "PLAIN_HEAD", frozenset())
        if setting == "no tree mask":
            monkeypatch.setattr(forest, "shares_prefixes", lambda model: False)
        got = forest.read(model, seqs, firsts, tokenizer.eos_token_id, 3, candidates=candidates)
        for seq, first, readout in zip(seqs, firsts, got):
            with torch.inference_mode():
                alone = model(torch.tensor([seq])).logits[0].float()
            assert readout.greedy == tuple(alone[first:].argmax(-1).tolist())
            if len(seq) - first < 2:  # no next token to score
                assert math.isnan(readout.loss)
            else:
                labels = torch.tensor(seq[first + 1 :])
                by_hand = torch.nn.functional.cross_entropy(alone[first:-1], labels)
                assert readout.loss == pytest.approx(float(by_hand), rel=1e-5)
            _, probs = mmlu.choose_exact(model, seq, candidates)
            assert readout.probs == pytest.approx(probs, rel=1e-4)


def test_plan_rows_runs_each_shared_prefix_once_within_the_capacity() -> None:
    header = [1, 2, 3, 4, 5, 6]
    seqs = [header + [7, 8], [9, 9, 9], header + [7, 9, 9], header + [8], header[:2] + [5], header + [7, 8]]
    rows = forest.plan_rows(seqs, capacity=100)
    seen = sorted(i for row in rows for i, _ in row.members)
    assert seen == list(range(len(seqs)))
    for row in rows:
        for i, path in row.members:  # each sequence is a path of its row's nodes, root first
            assert [row.tokens[n] for n in path] == seqs[i]
            assert [row.parents[n] for n in path] == [-1, *path[:-1]]
    # the header once, its three tails, the duplicate nothing, [1, 2, 5] its 5, [9, 9, 9] all of it
    assert sum(len(r) for r in rows) == 6 + 2 + 2 + 1 + 1 + 3
    assert all(len(r) <= 9 for r in forest.plan_rows(seqs, capacity=9))
    assert len(forest.plan_rows(seqs, capacity=100, share=False)) == len(seqs)
    # costly attention (a high pair cost): sequences sharing little get rows of their own
    assert len(forest.plan_rows(seqs, capacity=100, pair_cost=1.0)) > len(rows)


def test_pack_lets_each_node_see_its_ancestors_and_itself() -> None:
    rows = forest.plan_rows([(1, 2, 3), (1, 2, 4, 5), (1, 6), (7,)], capacity=100)
    packed = forest.pack(rows, pad_token_id=0)
    assert packed.input_ids.tolist() == [[1, 2, 3, 4, 5, 6, 7]]
    assert packed.position_ids.tolist() == [[0, 1, 2, 2, 3, 1, 0]]
    seen = packed.attention_mask[0, 0].int().tolist()
    assert seen[2] == [1, 1, 1, 0, 0, 0, 0]  # 3 after 1, 2
    assert seen[4] == [1, 1, 0, 1, 1, 0, 0]  # 5 after 1, 2, 4: not 3
    assert seen[5] == [1, 0, 0, 0, 0, 1, 0]  # 6 after 1
    assert seen[6] == [0, 0, 0, 0, 0, 0, 1]  # 7: a root of its own
    two = forest.pack(forest.plan_rows([(1, 2, 3), (4,)], capacity=100, share=False), 0, tree=False)
    assert two.input_ids.tolist() == [[1, 2, 3], [0, 0, 4]]
    assert two.attention_mask.tolist() == [[1, 1, 1], [0, 0, 1]]  # plain rows: the usual 2-D mask
    padded = forest.pack(forest.plan_rows([(1, 2, 3), (4,)], capacity=100, share=False), 0, tree=True)
    assert padded.attention_mask[1, 0].int().tolist() == [[1, 0, 0], [0, 1, 0], [0, 0, 1]]


def _drafted(model, tokenizer, rows, max_new: int, batch_size: int = 16, max_tokens: int | None = 2048):
    """The fast path's answer pass and drafted generation over ``rows`` (as evaluate runs them)."""
    done = answers.answer_pass(
        model, tokenizer, [r.input for r in rows], [r.output for r in rows], batch_size, max_tokens
    )
    tokens = generation.generate_drafted(
        model, done.prompts, done.drafts, max_new, tokenizer.eos_token_id, batch_size, max_tokens
    )
    return done, tokens


@pytest.fixture
def continued(monkeypatch) -> list[int]:
    """Counts the rows that drafted generation hands on to the batched decoding loop."""
    counts: list[int] = []
    decode = generation.generate_fast

    def spy(model, prompts, *args, **kwargs):
        counts.append(len(prompts))
        return decode(model, prompts, *args, **kwargs)

    monkeypatch.setattr(generation, "generate_fast", spy)
    return counts


def test_drafted_generation_matches_exact_on_real_validation_prompts(lume, continued) -> None:
    model, tokenizer, rows, _ = lume
    sample = rows[::45]
    eos = tokenizer.eos_token_id
    done, fast = _drafted(model, tokenizer, sample, 8, batch_size=5)
    exact = [generation.generate_exact(model, p, 8, eos) for p in done.prompts]
    assert sum(continued) > 0  # a random model does not say the answers: the decoding loop takes over
    _assert_same_or_near_tie(model, done.prompts, exact, fast, 8, [r.id for r in sample])

    # drafts that are (a prefix of) the generation itself are accepted, then decoding goes on from there
    def draft(tokens: list[int], keep: int) -> tuple[int, ...]:
        """The generation's first ``keep`` tokens and then a wrong one (all of it where it is shorter)."""
        if keep >= len(tokens):
            return tuple(tokens)
        return (*tokens[:keep], (tokens[keep] + 1) % model.config.vocab_size)

    for keep in (8, 3, 0):
        drafts = [[generation.Draft(draft(e, keep))] for e in exact]
        again = generation.generate_drafted(model, done.prompts, drafts, 8, eos, batch_size=5)
        _assert_same_or_near_tie(model, done.prompts, exact, again, 8, [r.id for r in sample])


def test_the_decoding_loop_takes_its_own_batch_cap(lume, monkeypatch) -> None:
    model, tokenizer, rows, _ = lume
    caps: list[int | None] = []
    decode = generation.generate_fast

    def spy(model, prompts, budgets, pad, batch_size, max_tokens=None, on_rows=None):
        caps.append(max_tokens)
        return decode(model, prompts, budgets, pad, batch_size, max_tokens, on_rows)

    monkeypatch.setattr(generation, "generate_fast", spy)
    prompts = [tokenizer(r.input).input_ids for r in rows[:6]]
    eos = tokenizer.eos_token_id
    wide = generation.generate_drafted(model, prompts, [()] * 6, 4, eos, 8, 64, decode_tokens=4096)
    narrow = generation.generate_drafted(model, prompts, [()] * 6, 4, eos, 8, 64)
    assert caps == [4096, 64] and wide == narrow


def test_a_row_whose_question_tokens_do_not_start_question_answer_gets_no_nll_draft(lume) -> None:
    model, tokenizer, rows, _ = lume

    # LUME glues question and answer with no separator: some joins merge into one token
    def follows(r) -> bool:
        prompt = tokenizer(r.input).input_ids
        return list(losses.answer_item(tokenizer, r.input, r.output).ids[: len(prompt)]) == prompt

    row = next(r for r in rows if not follows(r))
    prompt = tokenizer(row.input).input_ids
    item = losses.answer_item(tokenizer, row.input, row.output)
    done, fast = _drafted(model, tokenizer, [row], 12)
    # only the spaced answer drafts it, checked as a sequence of its own in the same pass
    spaced = tuple(tokenizer(" " + row.output, add_special_tokens=False).input_ids)
    assert [d.tokens for d in done.drafts[0]] == [spaced] and done.drafts[0][0].greedy is not None
    exact = [generation.generate_exact(model, prompt, 12, tokenizer.eos_token_id)]
    _assert_same_or_near_tie(model, [prompt], exact, fast, 12, [row.id])
    assert done.nll[0] == pytest.approx(losses.loss_exact(model, item), rel=1e-5)


# --- the tiny task end to end ---------------------------------------------------------------------------------


def _read(run_dir: Path) -> dict[str, pd.DataFrame]:
    files = sorted(p for p in run_dir.rglob("*.csv") if p.name != "row_scores.csv")
    return {str(p.relative_to(run_dir)): pd.read_csv(p, keep_default_na=False) for p in files}


def _assert_same_artifacts(a: Path, b: Path) -> None:
    """Same files; identical text, ids and choices; losses and probabilities equal up to float rounding."""
    left, right = _read(a), _read(b)
    assert sorted(left) == sorted(right)
    for name, frame in left.items():
        other = right[name]
        assert list(frame.columns) == list(other.columns), name
        assert len(frame) == len(other), name
        for column in frame.columns:
            if column == "nll" or column.endswith("_probs"):
                assert other[column].tolist() == pytest.approx(frame[column].tolist(), rel=1e-4), (
                    name,
                    column,
                )
            else:
                assert frame[column].tolist() == other[column].tolist(), (name, column)
    metrics = [d / "mmlu_results" / "metrics.json" for d in (a, b)]
    assert metrics[0].is_file() == metrics[1].is_file()
    if metrics[0].is_file():
        assert json.loads(metrics[0].read_text()) == json.loads(metrics[1].read_text())


@pytest.fixture(scope="module")
def tiny_runs(tiny_task, tmp_path_factory: pytest.TempPathFactory):
    """The tiny task evaluated by the exact path and by the fast path at batch sizes 1, 7 and 32."""
    root = tmp_path_factory.mktemp("tiny-runs")
    model_dir = tiny_task.model_dir
    runs = {
        "exact": evaluate(model_dir, tiny_task, root / "exact", exact=True, use_cache=False, progress=False)
    }
    for size in (1, 7, 32):
        runs[size] = evaluate(
            model_dir, tiny_task, root / f"b{size}", batch_size=size, use_cache=False, progress=False
        )
    return runs


def _tiny_model(tiny_task, which: str):
    from harness.inference.loading import load_checkpoint

    model_dir = tiny_task.model_dir if which == "target" else tiny_task.gold_model_dir
    return load_checkpoint(model_dir, torch.device("cpu"), torch.float32)


@pytest.mark.parametrize("which", ["target", "gold"])
def test_drafted_generation_equals_exact_on_the_tiny_task(tiny_task, which: str, continued) -> None:
    model, tokenizer = _tiny_model(tiny_task, which)
    rows = read_rows(tiny_task.eval_retain) + read_rows(tiny_task.eval_forget)
    max_new, eos = tiny_task.max_new_tokens, tokenizer.eos_token_id
    done, fast = _drafted(model, tokenizer, rows, max_new)
    exact = [generation.generate_exact(model, p, max_new, eos) for p in done.prompts]
    assert fast == exact  # the tiny task: every row identical
    if which == "target":  # it says every answer: the drafts settle every row, up to its EOS
        assert sum(continued) == 0 and all(t[-1] == eos for t in fast)
    else:  # the gold model leaves the forget answers: the decoding loop goes on from its first own token
        assert sum(continued) >= len(rows) // 4


def test_drafted_generation_cuts_long_answers_at_max_new_tokens(tiny_task, continued) -> None:
    model, tokenizer = _tiny_model(tiny_task, "target")
    rows = read_rows(tiny_task.eval_forget)
    done, fast = _drafted(model, tokenizer, rows, 4)
    assert fast == [generation.generate_exact(model, p, 4, tokenizer.eos_token_id) for p in done.prompts]
    assert sum(continued) == 0 and max(len(t) for t in fast) == 4
    assert any(len(d[0].tokens) > 4 for d in done.drafts)


def test_tiny_task_writes_the_official_layout(tiny_runs, tiny_task) -> None:
    run_dir = tiny_runs[32].run_dir
    for name in ("forget_0.csv", "retain_0.csv", "mia_results/member_0.csv", "mia_results/nonmember_0.csv"):
        assert (run_dir / name).is_file(), name
    forget = pd.read_csv(run_dir / "forget_0.csv")
    assert list(forget.columns) == ["id", "task", "input", "expected_output", "model_output", "nll"]
    assert forget["id"].tolist() == [r.id for r in read_rows(tiny_task.eval_forget)]
    metrics = json.loads((run_dir / "mmlu_results" / "metrics.json").read_text())
    assert list(metrics) == ["average_acc", "subcat_acc", "cat_acc"]
    # open-instruct's order; a subset of subjects leaves the unevaluated (sub)categories out
    order = MMLU_CATEGORIES.subcategory_order()
    assert list(metrics["subcat_acc"]) == [s for s in order if s in metrics["subcat_acc"]] != []
    assert (
        list(metrics["cat_acc"]) == [c for c in MMLU_CATEGORIES.categories if c in metrics["cat_acc"]] != []
    )
    subject = read_mmlu(tiny_task.mmlu_dir, tiny_task.mmlu_subjects)[0]
    frame = pd.read_csv(run_dir / "mmlu_results" / f"{subject.name}.csv")
    assert list(frame.columns) == [
        *"012345",
        "correct",
        "choiceA_probs",
        "choiceB_probs",
        "choiceC_probs",
        "choiceD_probs",
    ]
    assert (run_dir / "evaluation_results.jsonl").is_file()
    assert tiny_runs[32].timings["total"] > 0 and not tiny_runs[32].cached


def test_tiny_task_fast_path_equals_exact_path(tiny_runs) -> None:
    exact, fast = tiny_runs["exact"], tiny_runs[32]
    _assert_same_artifacts(exact.run_dir, fast.run_dir)  # every generated row identical on the tiny task
    assert fast.scores.auc == exact.scores.auc
    assert fast.scores.mmlu_average == exact.scores.mmlu_average
    assert fast.scores.terms == exact.scores.terms


@pytest.mark.parametrize("size", [1, 7])
def test_tiny_task_is_batch_size_invariant(tiny_runs, size: int) -> None:
    _assert_same_artifacts(tiny_runs[32].run_dir, tiny_runs[size].run_dir)
    assert tiny_runs[size].scores.final_score == tiny_runs[32].scores.final_score


def test_cache_hits_and_never_returns_a_stale_entry(tiny_task, tmp_path: Path, monkeypatch) -> None:
    from safetensors.torch import load_file, save_file

    monkeypatch.setenv("UNLEARN_HARNESS_CACHE", str(tmp_path / "cache"))
    model_dir = tmp_path / "model"
    shutil.copytree(tiny_task.model_dir, model_dir)
    # generations, NLL and MIA with short generations keep this test quick; the key covers every file read
    task = dataclasses.replace(tiny_task, mmlu_dir=None, max_new_tokens=4)
    first = evaluate(model_dir, task, tmp_path / "r1", progress=False)
    second = evaluate(model_dir, task, tmp_path / "r2", progress=False)
    assert (first.cached, second.cached) == (False, True)
    _assert_same_artifacts(first.run_dir, second.run_dir)
    assert second.scores.task_aggregate == first.scores.task_aggregate
    assert second.scores.auc == first.scores.auc
    assert not evaluate(model_dir, task, tmp_path / "r3", use_cache=False, progress=False).cached
    assert (
        evaluate(
            model_dir, dataclasses.replace(task, max_new_tokens=5), tmp_path / "r4", progress=False
        ).cached
        is False
    )

    weights = model_dir / "model.safetensors"
    tensors = load_file(weights)
    name = next(k for k in tensors if "lm_head" in k or "embed" in k)
    tensors[name] = tensors[name] * -1.0
    save_file(tensors, weights, metadata={"format": "pt"})
    third = evaluate(model_dir, task, tmp_path / "r5", progress=False)
    assert not third.cached
    changed = pd.read_csv(third.run_dir / "retain_0.csv")["nll"].tolist()
    assert changed != pd.read_csv(first.run_dir / "retain_0.csv")["nll"].tolist()


DRIVER = """
import pickle, sys
from pathlib import Path
from harness.inference import evaluate
task = pickle.loads(Path(sys.argv[1]).read_bytes())
out = Path(sys.argv[2])
evaluate(task.model_dir, task, out / "plain", use_cache=False, progress=False)
evaluate(task.model_dir, task, out / "quirk", use_cache=False, progress=False, processes_quirk=True)
"""


@pytest.fixture(scope="module")
def torchrun_runs(tiny_task, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny task evaluated by 2 CPU processes under torchrun (gloo), without and with the quirk."""
    tmp = tmp_path_factory.mktemp("torchrun")
    (tmp / "task.pkl").write_bytes(pickle.dumps(tiny_task))
    (tmp / "driver.py").write_text(DRIVER)
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"]
    command += [str(tmp / "driver.py"), str(tmp / "task.pkl"), str(tmp)]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run(
        command, capture_output=True, text=True, timeout=300, cwd=Path(__file__).parents[1], env=env
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return tmp


def test_two_processes_under_torchrun_equal_one_process(tiny_runs, torchrun_runs: Path) -> None:
    _assert_same_artifacts(tiny_runs[32].run_dir, torchrun_runs / "plain")


def test_torchrun_quirk_keeps_the_official_duplicates(tiny_task, torchrun_runs: Path) -> None:
    n = len(read_rows(tiny_task.eval_forget))
    parts = [pd.read_csv(torchrun_runs / "quirk" / f"forget_{rank}.csv") for rank in range(2)]
    assert [len(p) for p in parts] == [n // 2 + 1, n // 2 + 1]
    assert parts[1]["id"].iloc[-1] == parts[1]["id"].iloc[-2]  # the last row repeated
    assert not (torchrun_runs / "quirk" / "forget_2.csv").exists()
