"""harness.inference.mmlu: the open-instruct prompts and the letter choices, fast equal to exact."""

from __future__ import annotations

from pathlib import Path

import pytest

from harness.inference import mmlu
from tasks.data import MmluItem, MmluSubject, read_mmlu


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
        assert pe == pf  # a near tie goes to choose_exact (ties.py)
        assert probs_f == pytest.approx(probs_e, rel=1e-4)
