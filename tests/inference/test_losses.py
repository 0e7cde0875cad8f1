"""harness.inference.losses: answer NLL and MIA losses, fast equal to exact (and the same AUC)."""

from __future__ import annotations

import pytest
import torch
from sklearn.metrics import roc_auc_score

from harness.inference import losses


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
