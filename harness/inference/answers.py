"""The fast path's loss stage: answer NLLs, drafts of the generations and MIA losses, in one forest pass.

Per forget/retain row two sequences go into the prefix forest (forest.read): the official NLL sequence
tokens(question + answer), and the question's own tokens followed by tokens(" " + answer), which is
what a model that regurgitates generates after a prompt ending without a space (the official NLL glues
question and answer with no separator, official-scoring.md 2.3). Where question + answer starts with the
question's tokens the two share them; a MIA member document that begins with a row's question shares
it too. The argmax along either sequence after the question is the greedy generation for as long as the
model follows it (generation.accept_draft), so generation.generate_drafted only decodes what the drafts
leave open.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from transformers import PreTrainedModel, PreTrainedTokenizerBase

from harness.inference import forest, generation, losses


@dataclass(frozen=True)
class AnswerPass:
    """Per row: the prompt (the question's tokens), the answer NLL and the checked drafts of its
    generation; per document: its MIA loss."""

    prompts: list[list[int]]
    nll: list[float]
    drafts: list[list[generation.Draft]]
    document_nll: list[float]


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
    documents: Sequence[str] = (),
    progress: Callable[[int], Callable[[int], None]] | None = None,
) -> AnswerPass:
    """The answer NLLs of question/answer pairs, the drafts of their generations and the MIA losses of
    ``documents``, in one batched pass. ``progress(total)`` returns the callback counting sequences done.
    """
    prompts = tokens(tokenizer, questions)
    glued = [
        losses.LossItem(tuple(ids), len(p))
        for ids, p in zip(tokens(tokenizer, [q + a for q, a in zip(questions, answers)]), prompts)
    ]
    spaced = tokens(tokenizer, [" " + a for a in answers], add_special_tokens=False)
    docs = tokens(tokenizer, documents)  # labels = input ids: read from the first position
    follows = [_follows(item, p) for item, p in zip(glued, prompts)]
    # the spaced draft has a sequence of its own unless it is the NLL sequence's own answer
    extra = [
        i
        for i, (item, p, s) in enumerate(zip(glued, prompts, spaced))
        if p and s and not (follows[i] and tuple(s) == item.ids[len(p) :])
    ]
    seqs = [it.ids for it in glued] + [(*prompts[i], *spaced[i]) for i in extra] + docs
    firsts = [it.first for it in glued] + [len(prompts[i]) - 1 for i in extra] + [0] * len(docs)
    on_rows = progress(len(seqs)) if progress is not None else None
    readouts = forest.read(
        model, seqs, firsts, tokenizer.eos_token_id, batch_size, max_tokens, on_rows=on_rows
    )
    n = len(glued)
    checked = dict(zip(extra, readouts[n : n + len(extra)]))
    drafts = []
    for i, (item, p, s) in enumerate(zip(glued, prompts, spaced)):
        row: list[generation.Draft] = []
        if follows[i]:  # the NLL sequence's answer tokens, read off after the question
            row.append(generation.Draft(item.ids[len(p) :], readouts[i].greedy, readouts[i].margins))
        if i in checked:
            row.append(generation.Draft(tuple(s), checked[i].greedy, checked[i].margins))
        drafts.append(row)
    return AnswerPass(
        prompts, [r.loss for r in readouts[:n]], drafts, [r.loss for r in readouts[n + len(extra) :]]
    )


def _follows(item: losses.LossItem, prompt: Sequence[int]) -> bool:
    """Whether question+answer's tokens start with the question's own (non-empty) tokens."""
    return len(prompt) >= 1 and item.ids[: len(prompt)] == tuple(prompt)
