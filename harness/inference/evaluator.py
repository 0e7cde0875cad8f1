"""The evaluation object: one loaded model and its three verbs, in an exact and a fast implementation.

    generate(label, prompts)            greedy generations as text        generation.py
    loss(label, items)                  mean CE over labelled positions   losses.py
    choices(label, prompts, candidates) MMLU letter pick and probabilities mmlu.py

`ExactEvaluator` makes the official calls one row at a time (the reference for every parity test);
`FastEvaluator` batches them (prefix forest, KV-cache decoding) and adds `answer_pass`, the one forest
pass that reads the answer NLLs, the drafts of the generations and the MIA losses together
(answers.py). `make_evaluator` picks one; the stages in engine.py and mia.py only call the verbs.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from rich.progress import Progress

from harness.inference import answers, generation, losses, mmlu

__all__ = ["Evaluator", "ExactEvaluator", "FastEvaluator", "make_evaluator"]


@dataclass(frozen=True)
class Evaluator:
    """The model, its tokenizer and the progress display shared by the verbs."""

    model: object
    tokenizer: object
    max_new_tokens: int
    progress: Progress | None
    #: per stage, the rows the fast path handed to the exact loop at a near tie (ties.py)
    exact_rows: dict[str, int] = field(default_factory=dict)
    #: per stage, the decoding steps the exact loop took to settle those rows (generations)
    exact_steps: dict[str, int] = field(default_factory=dict)
    #: per stage, the seconds the exact loop took to settle them (inside the stage's own time)
    exact_seconds: dict[str, float] = field(default_factory=dict)

    @property
    def pad(self) -> int:
        return self.tokenizer.eos_token_id

    def count_exact(self, stage: str, n: int, steps: int = 0, seconds: float = 0.0) -> None:
        self.exact_rows[stage] = self.exact_rows.get(stage, 0) + n
        if steps:
            self.exact_steps[stage] = self.exact_steps.get(stage, 0) + steps
        if seconds:
            self.exact_seconds[stage] = self.exact_seconds.get(stage, 0.0) + seconds

    def _bar(self, label: str, total: int) -> Callable[[int], None]:
        if self.progress is None:
            return lambda n: None
        task_id = self.progress.add_task(label, total=total)
        return lambda n: self.progress.advance(task_id, n)

    def generate(
        self, label: str, prompts: Sequence[Sequence[int]], drafts: Sequence[Sequence[generation.Draft]] = ()
    ) -> list[str]:
        """The greedy generation of each prompt, decoded (official-scoring.md 2.2)."""
        raise NotImplementedError

    def loss(self, label: str, items: Sequence[losses.LossItem]) -> list[float]:
        """The mean next-token CE over each item's labelled positions (official-scoring.md 2.3, 2.7)."""
        raise NotImplementedError

    def choices(
        self, label: str, prompts: Sequence[Sequence[int]], candidates: list[int]
    ) -> list[tuple[int, list[float]]]:
        """Per prompt: the index of the likeliest candidate token and the candidates' probabilities."""
        raise NotImplementedError


@dataclass(frozen=True)
class ExactEvaluator(Evaluator):
    """The official loops: ``model.generate``, ``model(ids, labels=...).loss`` and the last logits, one row each."""

    def generate(
        self, label: str, prompts: Sequence[Sequence[int]], drafts: Sequence[Sequence[generation.Draft]] = ()
    ) -> list[str]:
        advance = self._bar(label, len(prompts))
        tokens = []
        for p in prompts:
            tokens.append(generation.generate_exact(self.model, p, self.max_new_tokens, self.pad))
            advance(1)
        return [generation.decode(self.tokenizer, t) for t in tokens]

    def loss(self, label: str, items: Sequence[losses.LossItem]) -> list[float]:
        advance = self._bar(label, len(items))
        out = []
        for it in items:
            out.append(losses.loss_exact(self.model, it))
            advance(1)
        return out

    def choices(
        self, label: str, prompts: Sequence[Sequence[int]], candidates: list[int]
    ) -> list[tuple[int, list[float]]]:
        advance = self._bar(label, len(prompts))
        out = []
        for p in prompts:
            out.append(mmlu.choose_exact(self.model, p, candidates))
            advance(1)
        return out


@dataclass(frozen=True)
class FastEvaluator(Evaluator):
    """Batched verbs: at most `batch_size` rows and `max_tokens` padded tokens per batch (halved on OOM)."""

    batch_size: int = 64
    max_tokens: int | None = None
    decode_tokens: int | None = None

    def generate(
        self, label: str, prompts: Sequence[Sequence[int]], drafts: Sequence[Sequence[generation.Draft]] = ()
    ) -> list[str]:
        """Generations; each row follows its checked drafts (answer_pass) as far as they go."""
        drafted = generation.generate_drafted(
            self.model,
            prompts,
            drafts or [()] * len(prompts),
            self.max_new_tokens,
            self.pad,
            self.batch_size,
            self.max_tokens,
            on_rows=self._bar(label, len(prompts)),
            decode_tokens=self.decode_tokens,
        )
        self.count_exact("generations", len(drafted.exact_rows), drafted.exact_steps, drafted.exact_seconds)
        return [generation.decode(self.tokenizer, t) for t in drafted.tokens]

    def loss(self, label: str, items: Sequence[losses.LossItem]) -> list[float]:
        advance = self._bar(label, len(items))
        return losses.losses_fast(
            self.model, items, self.pad, self.batch_size, self.max_tokens, on_rows=advance
        )

    def choices(
        self, label: str, prompts: Sequence[Sequence[int]], candidates: list[int]
    ) -> list[tuple[int, list[float]]]:
        advance = self._bar(label, len(prompts))
        return mmlu.choose_fast(
            self.model, prompts, candidates, self.pad, self.batch_size, self.max_tokens, on_rows=advance,
            on_exact=lambda n, seconds: self.count_exact("MMLU", n, seconds=seconds),
        )  # fmt: skip

    def answer_pass(self, label: str, rows: Sequence, documents: Sequence[str]) -> answers.AnswerPass:
        """The answer NLLs of `rows`, the drafts of their generations and the MIA losses of `documents`."""
        return answers.answer_pass(
            self.model,
            self.tokenizer,
            [r.input for r in rows],
            [r.output for r in rows],
            self.batch_size,
            self.max_tokens,
            documents,
            progress=lambda total: self._bar(label, total),
        )


def make_evaluator(
    model: object,
    tokenizer: object,
    *,
    exact: bool,
    max_new_tokens: int,
    progress: Progress | None = None,
    batch_size: int = 64,
    max_tokens: int | None = None,
    decode_tokens: int | None = None,
) -> Evaluator:
    """The exact evaluator, or the fast one with these batch limits."""
    if exact:
        return ExactEvaluator(model, tokenizer, max_new_tokens, progress)
    return FastEvaluator(
        model, tokenizer, max_new_tokens, progress,
        batch_size=batch_size, max_tokens=max_tokens, decode_tokens=decode_tokens,
    )  # fmt: skip
