"""harness.inference.forest: prefix-forest rows, their packing and what each sequence reads off them."""

from __future__ import annotations

import math

import pytest
import torch

from harness.inference import forest, mmlu


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
