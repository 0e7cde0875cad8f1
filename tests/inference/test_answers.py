"""harness.inference.answers: the fast path's answer pass (answer NLLs, drafts, MIA losses in one forest pass)."""

from __future__ import annotations

import pytest
from parity import assert_same_or_near_tie, drafted

from harness.inference import generation, losses


def test_a_row_whose_question_tokens_do_not_start_question_answer_gets_no_nll_draft(lume) -> None:
    model, tokenizer, rows, _ = lume

    # LUME glues question and answer with no separator: some joins merge into one token
    def follows(r) -> bool:
        prompt = tokenizer(r.input).input_ids
        return list(losses.answer_item(tokenizer, r.input, r.output).ids[: len(prompt)]) == prompt

    row = next(r for r in rows if not follows(r))
    prompt = tokenizer(row.input).input_ids
    item = losses.answer_item(tokenizer, row.input, row.output)
    done, fast = drafted(model, tokenizer, [row], 12)
    # only the spaced answer drafts it, checked as a sequence of its own in the same pass
    spaced = tuple(tokenizer(" " + row.output, add_special_tokens=False).input_ids)
    assert [d.tokens for d in done.drafts[0]] == [spaced] and done.drafts[0][0].greedy is not None
    exact = [generation.generate_exact(model, prompt, 12, tokenizer.eos_token_id)]
    assert_same_or_near_tie(model, [prompt], exact, fast, 12, [row.id])
    assert done.nll[0] == pytest.approx(losses.loss_exact(model, item), rel=1e-5)
