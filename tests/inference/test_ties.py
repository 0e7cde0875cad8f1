"""harness.inference.ties and the near-tie fallback: leads by hand, and the fallback's rows settled by
the exact loop (all of them under an infinite tolerance, none under a negative one, the exact tokens
either way); MIA loss pairs closer than the tolerance are computed again."""

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


def test_close_member_and_nonmember_losses_are_computed_again(monkeypatch) -> None:
    counted: dict[str, int] = {}
    evaluator = SimpleNamespace(
        model=SimpleNamespace(dtype=torch.bfloat16),
        tokenizer=lambda texts: SimpleNamespace(input_ids=[[1, 2]] * len(texts)),
        count_exact=lambda stage, n: counted.__setitem__(stage, counted.get(stage, 0) + n),
    )
    exact_values = iter([9.0, 8.0])
    monkeypatch.setattr(losses, "loss_exact", lambda model, item: next(exact_values))
    docs = [MiaDoc(str(i), f"doc {i}") for i in range(4)]
    # members 0, 1 and non-members 2, 3: 1 (2.00) and 2 (2.01) are within bf16's tolerance; 0 and 3 are not
    out = mia.settle(evaluator, docs, [1.0, 2.0, 2.01, 5.0], members=2)
    assert out == [1.0, 9.0, 8.0, 5.0] and counted == {"MIA losses": 2}
    # in float32 the same pair is far apart: nothing is computed again
    evaluator.model.dtype = torch.float32
    assert mia.settle(evaluator, docs, [1.0, 2.0, 2.01, 5.0], members=2) == [1.0, 2.0, 2.01, 5.0]
