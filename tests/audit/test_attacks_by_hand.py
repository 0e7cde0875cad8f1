"""Each attack's arithmetic on cases known by hand (no model): NF4/int8 round trips against bitsandbytes,
the MIA panel's AUCs on fixed token log-probabilities, extraction's shortest prefix, the relearning split,
the probe split built from the tiny world's templates, and the robust-forget formula."""

from __future__ import annotations

import math
import zlib

import pytest
import torch

from harness.audit import quantize
from harness.audit.common import Measure, RowScore, summarize
from harness.audit.core import AuditResult, bootstrap_forget
from harness.audit.extraction import shortest_prefix, strength
from harness.audit.mia_panel import DocumentStats, attack_scores, panel_aucs
from harness.audit.probes import QA_PARAPHRASES, paraphrase, reformat
from harness.audit.quantize import QuantizeResult
from harness.audit.relearn import Recipe, RelearnResult, document_key, split_documents
from tasks.data import Row


def _bnb():
    try:
        quantize.nf4_bnb(torch.ones(2, 64))
    except Exception as error:  # noqa: BLE001
        pytest.skip(f"bitsandbytes not usable here: {error}")


def test_nf4_round_trip_of_a_known_tensor_by_hand():
    # one block of 64: absmax 2.0; 1.0 -> 0.5 -> nearest code 0.4407 (|0.0593| < |0.0626| to 0.5626); -2 -> -1; 0.1 -> 0.05 -> 0.0796
    w = torch.zeros(1, 64)
    w[0, :4] = torch.tensor([2.0, 1.0, -2.0, 0.1])
    out = quantize.nf4_sim(w)
    expected = torch.tensor([2.0, 2 * 0.44070982933044434, -2.0, 2 * 0.07958029955625534])
    assert torch.allclose(out[0, :4], expected)
    assert torch.all(out[0, 4:] == 0)


def test_nf4_simulation_matches_bitsandbytes():
    _bnb()
    g = torch.Generator().manual_seed(0)
    for shape in [(128, 256), (100, 37), (3, 5)]:  # whole blocks, a ragged last block, less than a block
        w = torch.randn(*shape, generator=g) * 0.05
        assert torch.equal(quantize.nf4_sim(w), quantize.nf4_bnb(w))


def test_int8_simulation_matches_bitsandbytes_and_a_hand_case():
    w = torch.tensor(
        [[1.0, -0.5, 0.25, 0.0]]
    )  # absmax 1: 127, -63.5 -> -64 (round half to even), 31.75 -> 32
    assert torch.allclose(quantize.int8_sim(w), torch.tensor([[127.0, -64.0, 32.0, 0.0]]) / 127.0)
    _bnb()
    w = torch.randn(64, 96, generator=torch.Generator().manual_seed(1)) * 0.05
    assert torch.equal(quantize.int8_sim(w), quantize.int8_bnb(w))


def test_unknown_backend_and_bnb_unusable(monkeypatch):
    from harness.errors import HarnessError

    with pytest.raises(HarnessError, match="unknown quantization backend"):
        quantize.resolve_backend("gptq")

    def broken(*args, **kwargs):
        raise ImportError("No module named 'bitsandbytes'")

    monkeypatch.setattr(quantize, "nf4_bnb", broken)
    chosen, note = quantize.resolve_backend("auto")
    assert chosen == "sim" and "bitsandbytes not usable" in note
    with pytest.raises(HarnessError, match="bitsandbytes is not usable here"):
        quantize.resolve_backend("bnb")


def _doc(text, logprobs, mu=None, sigma=None):
    n = len(logprobs)
    return DocumentStats(text, tuple(logprobs), tuple(mu or [0.0] * n), tuple(sigma or [1.0] * n))


def test_mia_panel_scores_and_aucs_by_hand():
    # members: low loss; non-members: high loss, with one overlap to make the AUC non-trivial
    members = [_doc("aaaa", [-0.1, -0.2, -0.3, -2.0, -0.1]), _doc("abcd", [-1.0, -1.0, -1.0, -1.0, -1.0])]
    nonmembers = [_doc("bbbb", [-0.5, -0.5, -0.5, -0.5, -0.5]), _doc("xyzw", [-3.0, -2.0, -2.0, -2.0, -2.0])]
    scores = attack_scores(members + nonmembers, None)
    # loss = mean NLL: 0.54, 1.0, 0.5, 2.2 -> scores -0.54, -1.0, -0.5, -2.2
    assert scores["loss"] == pytest.approx([-0.54, -1.0, -0.5, -2.2])
    # min-k with k = 20% of 5 tokens: one token, the lowest log-prob
    assert scores["min_k"] == pytest.approx([-2.0, -1.0, -0.5, -3.0])
    z = [len(zlib.compress(t.encode())) for t in ("aaaa", "abcd", "bbbb", "xyzw")]
    assert scores["zlib"] == pytest.approx([-0.54 / z[0], -1.0 / z[1], -0.5 / z[2], -2.2 / z[3]])
    aucs = panel_aucs(members, nonmembers)
    # loss: pairs (member, non-member) where the member scores higher: (-0.54 vs -0.5: no, vs -2.2: yes),
    # (-1.0 vs -0.5: no, vs -2.2: yes) -> 2 of 4
    assert aucs["loss"] == pytest.approx(0.5)
    # min-k: (-2 vs -0.5 no, vs -3 yes), (-1 vs -0.5 no, vs -3 yes) -> 0.5
    assert aucs["min_k"] == pytest.approx(0.5)
    assert "reference" not in aucs


def test_min_k_pp_and_reference_by_hand():
    # Min-K%++ z = (logp - mu) / sigma; k = 20% of 5 tokens = the lowest z
    m = _doc("m", [-1.0] * 5, mu=[-2.0] * 5, sigma=[0.5] * 5)  # z = +2 everywhere
    n = _doc("n", [-1.0] * 5, mu=[-0.5] * 5, sigma=[1.0] * 5)  # z = -0.5
    assert attack_scores([m, n], None)["min_k_pp"] == pytest.approx([2.0, -0.5])
    assert panel_aucs([m], [n])["min_k_pp"] == 1.0
    assert panel_aucs([m], [n])["loss"] == 0.5  # the same losses: a tie counts one half
    # reference: the model's loss minus the reference's; the member dropped more below its reference
    ref_m, ref_n = _doc("m", [-3.0] * 5), _doc("n", [-1.5] * 5)
    aucs = panel_aucs([m], [n], [ref_m], [ref_n])
    assert attack_scores([m, n], [ref_m, ref_n])["reference"] == pytest.approx([2.0, 0.5])
    assert aucs["reference"] == 1.0


def test_extraction_shortest_prefix_by_hand():
    answer = [5, 6, 7, 8]
    assert shortest_prefix([5, 6, 7, 8], answer) == 0  # the prompt alone completes it
    assert shortest_prefix([9, 6, 7, 8], answer) == 1  # the first token must be given
    assert shortest_prefix([5, 6, 9, 8], answer) == 3  # a wrong third token: give three
    assert shortest_prefix([5, 6, 7, 9], answer) == 4  # even the last token is wrong
    assert strength(0, 4) == 1.0 and strength(3, 4) == 0.25 and strength(4, 4) == 0.0


def _row(i, task, kind, doc):
    return Row(id=f"{doc}{kind}{i}", input="x", output="y", task=task)


def test_relearn_split_keeps_documents_whole_and_is_fixed():
    rows = [
        _row(k, t, kind, f"{t}-d{d}-")
        for t in ("Task1", "Task2")
        for d in range(5)
        for kind, k in (("sc", 1), ("qa", 0))
    ]
    train, held = split_documents(rows, seed=0)
    assert split_documents(rows, seed=0) == (train, held)
    assert {document_key(r.id) for r in train}.isdisjoint({document_key(r.id) for r in held})
    for task in ("Task1", "Task2"):  # floor(5 / 2) = 2 documents of each task train
        assert len({document_key(r.id) for r in train if r.task == task}) == 2
    assert len(train) + len(held) == len(rows)


def test_relearn_share_of_hidden_by_hand():
    def measure(knowledge: float) -> Measure:
        return Measure({"Task1": {"forget_knowledge": knowledge}}, 4)

    result = RelearnResult(Recipe(lr=1e-3), 4, 4)
    result.before = {"checkpoint": measure(0.25), "target": measure(1.0), "gold": measure(0.0)}
    result.after = {"checkpoint": measure(0.75), "target": measure(1.0), "gold": measure(0.125)}
    # gain 0.5, minus the gold model's 0.125: 0.375 of the 0.75 it hides
    assert result.recovery_above_gold() == pytest.approx(0.375)
    assert result.share_of_hidden() == pytest.approx(0.5)
    assert result.to_json()["share_of_hidden"]["forget_knowledge"] == pytest.approx(0.5)
    result.before["checkpoint"] = measure(1.0)  # hides nothing: no share
    assert result.share_of_hidden() is None
    del result.before["target"]  # no target attacked (references=False): no share
    assert result.share_of_hidden() is None


def test_the_audit_table_says_the_share_relearning_brought_back():
    from rich.console import Console

    from harness.cli.audit import _render

    data = {
        "checkpoint": "ckpt", "task": "tiny", "timings": {"relearn": 1.0},
        "recovered": {"forget_knowledge": {"relearn": 0.375}, "forget_regurgitation": {"relearn": 0.1}},
        "relearn": {"share_of_hidden": {"forget_knowledge": 0.5}},
        "official_forget": 0.75, "official_forget_interval": None, "robust_forget": 0.375, "worst_attack": "relearn",
    }  # fmt: skip
    order = ["quantize:int8", "quantize:nf4", "relearn", "probes:paraphrase", "probes:format"]
    data["recovered"]["forget_knowledge"] = dict.fromkeys(order, 0.0)
    console = Console(record=True, width=200)
    _render(data, console)
    text = console.export_text()
    assert "relearning brought back 50% of the held-out forget knowledge it hides" in text
    at = [text.index(f"│ {name} ") for name in order]
    assert at == sorted(at)  # the rows in the audit's order, not a set's
    data["relearn"] = None  # the attack did not run: no such line
    console = Console(record=True, width=200)
    _render(data, console)
    assert "brought back" not in console.export_text()


def test_paraphrases_cover_every_question_of_the_tiny_world():
    from tasks.tiny.world import generate_world

    world = generate_world(0, "tiny")
    rows = world.forget + world.retain
    for r in rows:
        prompt = paraphrase(r)
        assert prompt is not None, f"no probe for {r.task} {r.kind}: {r.input!r}"
        assert prompt != r.input
    assert len(QA_PARAPHRASES) == 9
    assert reformat(Row("1qa0", "Who?", "Me", "Task1")) == "Question: Who?\nAnswer:"


def test_summarize_and_bootstrap():
    rows = [
        RowScore("forget", "Task1", "qa", "a", 1.0), RowScore("forget", "Task1", "qa", "b", 0.0),
        RowScore("forget", "Task2", "qa", "c", 1.0), RowScore("forget", "Task2", "sc", "d", 0.5),
        RowScore("retain", "Task1", "qa", "e", 1.0),
    ]  # fmt: skip
    m = summarize(rows)
    assert m.forget_knowledge == pytest.approx((0.5 + 1.0) / 2)
    assert m.forget_regurgitation == 0.5 and m.retain_knowledge == 1.0
    assert summarize(rows, ids={"a", "c"}).forget_knowledge == 1.0
    lo, hi = bootstrap_forget(rows)
    # Task2 has one qa row (always 1); Task1 resamples {1, 0}: 1 - (t1 + 1) / 2 lies in [0, 0.5]
    assert 0.0 <= lo <= 0.25 <= hi <= 0.5


def test_robust_forget_is_the_official_term_minus_the_worst_recovery():
    def measure(k):
        return Measure({"Task1": {"forget_knowledge": k, "forget_regurgitation": k}}, 1)

    result = AuditResult("ckpt", "tiny", official=measure(0.25))
    assert result.robust_forget == 0.75 and result.robust()[1] is None  # no attack ran
    q = QuantizeResult("sim", "test")
    q.measures = {"checkpoint": {"none": measure(0.25), "int8": measure(0.25), "nf4": measure(0.5)}}
    q.auc = {"checkpoint": {}}
    result.quantize = q
    assert q.recovered("nf4") == 0.25 and q.recovered("int8") == 0.0
    assert result.robust_forget == 0.5 and result.robust()[1] == "quantize:nf4"
    q.measures["checkpoint"]["nf4"] = measure(0.0)  # an attack that only hurts brings nothing back
    assert result.robust_forget == 0.75
    assert not math.isnan(result.to_json()["robust_forget"])
