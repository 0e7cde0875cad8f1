"""harness.inference.generation: the fast and the drafted generations equal the exact (official) loop.

Parity rule: the fast path must produce the exact path's tokens, every row (near ties are settled by the
exact loop, harness/inference/ties.py).
"""

from __future__ import annotations

import pytest
from parity import assert_same_or_near_tie, drafted, tiny_model
from worlds import is_canonical

from harness.inference import generation
from tasks.data import read_rows


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


def test_fast_generation_matches_exact_on_real_validation_prompts(lume) -> None:
    model, tokenizer, rows, _ = lume
    sample = rows[::45]  # 12 rows of both splits, short and long prompts
    prompts = [tokenizer(r.input).input_ids for r in sample]
    eos = tokenizer.eos_token_id
    exact = [generation.generate_exact(model, p, 8, eos) for p in prompts]
    fast = generation.generate_fast(model, prompts, 8, eos, batch_size=5)
    assert len(fast) == len(exact) == len(sample)
    assert_same_or_near_tie(model, prompts, exact, fast, 8, [r.id for r in sample])
    assert [generation.decode(tokenizer, t) for t in fast] == [generation.decode(tokenizer, t) for t in exact]


def test_decode_applies_the_cleanup_that_transformers_4_45_did(lume) -> None:
    _, tokenizer, _, _ = lume
    ids = tokenizer("Hello , world . It 's done !").input_ids + [tokenizer.eos_token_id]
    assert generation.decode(tokenizer, ids) == "Hello, world. It's done!"


def test_drafted_generation_matches_exact_on_real_validation_prompts(lume, continued) -> None:
    model, tokenizer, rows, _ = lume
    sample = rows[::45]
    eos = tokenizer.eos_token_id
    done, fast = drafted(model, tokenizer, sample, 8, batch_size=5)
    exact = [generation.generate_exact(model, p, 8, eos) for p in done.prompts]
    assert sum(continued) > 0  # a random model does not say the answers: the decoding loop takes over
    assert_same_or_near_tie(model, done.prompts, exact, fast, 8, [r.id for r in sample])

    # drafts that are (a prefix of) the generation itself are accepted, then decoding goes on from there
    def draft(tokens: list[int], keep: int) -> tuple[int, ...]:
        """The generation's first ``keep`` tokens and then a wrong one (all of it where it is shorter)."""
        if keep >= len(tokens):
            return tuple(tokens)
        return (*tokens[:keep], (tokens[keep] + 1) % model.config.vocab_size)

    for keep in (8, 3, 0):
        drafts = [[generation.Draft(draft(e, keep))] for e in exact]
        again = generation.generate_drafted(model, done.prompts, drafts, 8, eos, batch_size=5).tokens
        assert_same_or_near_tie(model, done.prompts, exact, again, 8, [r.id for r in sample])


def test_the_decoding_loop_takes_its_own_batch_cap(lume, monkeypatch) -> None:
    model, tokenizer, rows, _ = lume
    caps: list[int | None] = []
    decode = generation.decode_batched

    def spy(model, prompts, budgets, pad, batch_size, max_tokens=None, on_rows=None, **kwargs):
        caps.append(max_tokens)
        return decode(model, prompts, budgets, pad, batch_size, max_tokens, on_rows, **kwargs)

    monkeypatch.setattr(generation, "decode_batched", spy)
    prompts = [tokenizer(r.input).input_ids for r in rows[:6]]
    eos = tokenizer.eos_token_id
    wide = generation.generate_drafted(model, prompts, [()] * 6, 4, eos, 8, 64, decode_tokens=4096)
    narrow = generation.generate_drafted(model, prompts, [()] * 6, 4, eos, 8, 64)
    assert caps == [4096, 64] and wide.tokens == narrow.tokens


@pytest.mark.parametrize("which", ["target", "gold"])
def test_drafted_generation_equals_exact_on_the_tiny_task(
    tiny_world, tiny_task, which: str, continued
) -> None:
    model, tokenizer = tiny_model(tiny_task, which)
    rows = read_rows(tiny_task.eval_retain) + read_rows(tiny_task.eval_forget)
    max_new, eos = tiny_task.max_new_tokens, tokenizer.eos_token_id
    done, fast = drafted(model, tokenizer, rows, max_new)
    exact = [generation.generate_exact(model, p, max_new, eos) for p in done.prompts]
    assert fast == exact  # the tiny task: every row identical
    if which == "target":
        # the canonical target says every answer: the drafts settle every row, up to its EOS; another
        # machine's target (README, "Which worlds are canonical") nearly every one
        if is_canonical(tiny_world):
            assert sum(continued) == 0 and all(t[-1] == eos for t in fast)
        else:
            assert sum(continued) <= len(rows) // 10
    else:  # the gold model leaves the forget answers: the decoding loop goes on from its first own token
        assert sum(continued) >= len(rows) // 4


def test_drafted_generation_cuts_long_answers_at_max_new_tokens(tiny_task, continued) -> None:
    model, tokenizer = tiny_model(tiny_task, "target")
    rows = read_rows(tiny_task.eval_forget)
    done, fast = drafted(model, tokenizer, rows, 4)
    assert fast == [generation.generate_exact(model, p, 4, tokenizer.eos_token_id) for p in done.prompts]
    assert sum(continued) == 0 and max(len(t) for t in fast) == 4
    assert any(len(d[0].tokens) > 4 for d in done.drafts)
