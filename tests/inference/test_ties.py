"""harness.inference.ties and the near-tie fallback: leads by hand, and the fallback's rows settled by
the exact loop (all of them under an infinite tolerance, none under a negative one, the exact tokens
either way), which runs only through a row's last near tie; MIA loss pairs closer than the tolerance
are computed again."""

from __future__ import annotations

import math
from types import SimpleNamespace

import pytest
import torch
from mini_model import make_word_olmo

from harness.inference import generation, losses, mia, ties
from tasks.data import MiaDoc


def test_relative_leads_by_hand() -> None:
    logits = torch.tensor([[3.0, 1.0, 2.9], [-0.5, 0.25, 0.0], [10.0, 10.0, 0.0]])
    assert ties.margins(logits).tolist() == pytest.approx([0.1 / 3.0, 0.25, 0.0])
    assert ties.margins(torch.tensor([[1.0]])).tolist() == [math.inf]
    assert ties.tolerance(torch.bfloat16) > ties.tolerance(torch.float16) > ties.tolerance(torch.float32)


@pytest.fixture(scope="module")
def word_model(tmp_path_factory):
    from transformers import AutoModelForCausalLM

    folder = make_word_olmo(
        tmp_path_factory.mktemp("word"), hidden_size=32, intermediate_size=64, num_layers=2
    )
    return AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32).eval()


@pytest.mark.parametrize("tolerance, settled", [(math.inf, 6), (-1.0, 0)])
def test_the_fallback_settles_rows_below_the_tolerance(word_model, monkeypatch, tolerance, settled) -> None:
    prompts = [[3 + i, 10 + 2 * i, 7] for i in range(6)]
    exact = [generation.generate_exact(word_model, p, 5, 0) for p in prompts]
    monkeypatch.setattr(ties, "tolerance", lambda dtype: tolerance)
    drafts = [[generation.Draft(tuple(e[:2]))] if i % 2 else [] for i, e in enumerate(exact)]
    done = generation.generate_drafted(word_model, prompts, drafts, 5, 0, batch_size=4)
    assert done.tokens == exact
    assert len(done.exact_rows) == settled
    # every pick is unsure under an infinite tolerance: the exact loop runs each row to its end
    assert done.exact_steps == (sum(len(e) for e in exact) if settled else 0)
    assert (done.exact_seconds > 0) == bool(settled)  # what settling cost, reported with the count


def test_close_member_and_nonmember_losses_are_computed_again(monkeypatch) -> None:
    counted: dict[str, int] = {}
    seconds_of: list[float] = []

    def count_exact(stage: str, n: int, seconds: float) -> None:
        counted[stage] = counted.get(stage, 0) + n
        seconds_of.append(seconds)

    evaluator = SimpleNamespace(
        model=SimpleNamespace(dtype=torch.bfloat16),
        tokenizer=lambda texts: SimpleNamespace(input_ids=[[1, 2]] * len(texts)),
        count_exact=count_exact,
    )
    exact_values = iter([9.0, 8.0])
    monkeypatch.setattr(losses, "loss_exact", lambda model, item: next(exact_values))
    docs = [MiaDoc(str(i), f"doc {i}") for i in range(4)]
    # members 0, 1 and non-members 2, 3: 1 (2.00) and 2 (2.01) are within bf16's tolerance; 0 and 3 are not
    out = mia.settle(evaluator, docs, [1.0, 2.0, 2.01, 5.0], members=2)
    assert out == [1.0, 9.0, 8.0, 5.0] and counted == {"MIA losses": 2}
    assert len(seconds_of) == 1 and seconds_of[0] >= 0  # the time of the one round that settled the pair
    # in float32 the same pair is far apart: nothing is computed again
    evaluator.model.dtype = torch.float32
    assert mia.settle(evaluator, docs, [1.0, 2.0, 2.01, 5.0], members=2) == [1.0, 2.0, 2.01, 5.0]
    # bf16 losses: a pair 0.05 / 2.05 = 2.4% apart is settled by the loss tolerance (1%), not the 5% of leads
    evaluator.model.dtype = torch.bfloat16
    assert ties.loss_tolerance(torch.bfloat16) < 0.05 / 2.05 < ties.tolerance(torch.bfloat16)
    assert mia.settle(evaluator, docs, [1.0, 2.0, 2.05, 5.0], members=2) == [1.0, 2.0, 2.05, 5.0]


@pytest.fixture
def forwards(word_model):
    """The forward passes of the word model during a test."""
    calls: list[int] = []
    handle = word_model.register_forward_hook(lambda module, args, out: calls.append(1))
    yield calls
    handle.remove()


def test_the_exact_loop_stops_after_the_last_near_tie_of_a_candidate_it_follows(word_model, forwards) -> None:
    prompt = [5, 12, 7]
    exact = generation.generate_exact(word_model, prompt, 6, 0)
    assert len(exact) == 6 and 0 not in exact  # no EOS within the budget: every step is a forward pass
    calls = forwards
    calls.clear()
    # the candidate is the exact generation: the loop runs through step 2 (3 forward passes) and stops
    assert generation.generate_exact(word_model, prompt, 6, 0, follow=exact, until=2) == exact
    assert len(calls) == 3
    calls.clear()
    # a candidate that leaves the exact tokens at step 1 (before `until`): the loop runs to its own end
    wrong = [exact[0], (exact[1] + 1) % 50, *exact[2:]]
    assert generation.generate_exact(word_model, prompt, 6, 0, follow=wrong, until=3) == exact
    assert len(calls) == 6
    calls.clear()
    # beyond `until` the candidate is taken as it is: its picks there were not near ties
    later = [*exact[:4], (exact[4] + 1) % 50, exact[5]]
    assert generation.generate_exact(word_model, prompt, 6, 0, follow=later, until=1) == later
    assert len(calls) == 2
