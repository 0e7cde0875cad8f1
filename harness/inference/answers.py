"""The fast path's answer stage: the answer NLL of each forget/retain row, and drafts of its generation.

One forward pass per batch gives both. Each row is a tree (batching.Tree): the official NLL sequence
tokens(question + answer), and as a branch that sees only the question, tokens(" " + answer), which is
what a model that regurgitates generates after a prompt ending without a space (the official NLL glues
question and answer with no separator, official-scoring.md 2.3). The argmax along either is the greedy
generation for as long as the model follows it (generation.accept_draft), so generation.generate_drafted
only decodes what the drafts leave open.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from transformers import PreTrainedModel, PreTrainedTokenizerBase

from harness.inference import generation, losses


@dataclass(frozen=True)
class AnswerPass:
    """Per row: the prompt (the question's tokens), the answer NLL and the checked drafts of its generation."""

    prompts: list[list[int]]
    nll: list[float]
    drafts: list[list[generation.Draft]]


def tokens(tokenizer: PreTrainedTokenizerBase, texts: Sequence[str], **kwargs) -> list[list[int]]:
    """``tokenizer(text).input_ids`` of each text, tokenised as one batch (the same ids, less overhead)."""
    return tokenizer(list(texts), **kwargs).input_ids if texts else []


def answer_pass(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    questions: Sequence[str],
    answers: Sequence[str],
    batch_size: int,
    max_tokens: int | None = None,
    progress: Callable[[int], Callable[[int], None]] | None = None,
) -> AnswerPass:
    """The answer NLLs of question/answer pairs and the drafts of their generations, in one batched pass.

    ``progress(total)`` returns the callback that counts the items done.
    """
    prompts = tokens(tokenizer, questions)
    glued = tokens(tokenizer, [q + a for q, a in zip(questions, answers)])
    spaced = tokens(tokenizer, [" " + a for a in answers], add_special_tokens=False)
    items = [losses.answer_tokens_item(*args) for args in zip(prompts, glued, spaced)]
    # where question+answer's tokens do not start with the question's, the NLL sequence cannot carry the
    # spaced draft: it is checked by an item of its own (question + spaced answer) in the same pass
    checks = {
        i: losses.LossItem((*p, *s), len(p), draft=True)
        for i, (item, p, s) in enumerate(zip(items, prompts, spaced))
        if not item.draft and p and s
    }
    work = items + list(checks.values())
    on_rows = progress(len(work)) if progress is not None else None
    results = losses.losses_with_drafts(model, work, tokenizer.eos_token_id, batch_size, max_tokens, on_rows)
    checked = dict(zip(checks, results[len(items) :]))
    drafts = [
        _drafts(item, result, s, checked.get(i))
        for i, (item, result, s) in enumerate(zip(items, results, spaced))
    ]
    return AnswerPass(prompts, [r.loss for r in results[: len(items)]], drafts)


def _drafts(
    item: losses.LossItem,
    result: losses.LossResult,
    spaced: Sequence[int],
    check: losses.LossResult | None,
) -> list[generation.Draft]:
    """A row's drafts in the order generation._pick tries them: the answer tokens of the NLL sequence,
    then the spaced answer (checked as the item's branch, or by ``check`` where the item has none)."""
    if result.greedy is None:
        return [generation.Draft(tuple(spaced), check.greedy if check is not None else None)]
    drafts = [generation.Draft(item.ids[item.start :], result.greedy)]
    if result.branch_greedy is not None:
        drafts.append(generation.Draft(item.branch, result.branch_greedy))
    return drafts
