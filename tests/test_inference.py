"""The evaluation engine: unit checks of its pieces and exact-vs-fast parity on real prompts and the tiny task.

Parity rule (issue 4): the fast path must produce the exact path's tokens; a row may differ only where the
exact path's top two logits at the first differing step are within 1e-4 (a float-rounding near tie).
"""

from __future__ import annotations

import dataclasses
import json
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

from harness.inference import batching, distributed, evaluate, generation, losses, mmlu
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


def _subject(n_dev: int = 2) -> MmluSubject:
    dev = [MmluItem(f"Q{i}?", "w", "x", "y", "z", "B") for i in range(n_dev)]
    return MmluSubject(
        "high_school_geography", dev, [MmluItem("Where?", "here", "there", "nan", "none", "A")]
    )


class _WordTokenizer:
    """Counts whitespace-separated words as tokens (enough for the shot-fallback rule)."""

    def __call__(self, text: str, add_special_tokens: bool = True):
        return type("Enc", (), {"input_ids": text.split()})()


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
