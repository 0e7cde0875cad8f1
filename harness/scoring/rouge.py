"""ROUGE-L recall exactly as rouge_score 0.1.2 computes it for the official regurgitation score, faster.

The official scorer calls ``RougeScorer(['rouge1', 'rougeL'], use_stemmer=True).score(target, pred)``
and keeps ``['rougeL'].recall`` = LCS(target tokens, prediction tokens) / len(target tokens)
(official-scoring.md section 2.5). We tokenize with rouge_score's own tokenizer (its regexes and its
Porter stemmer, memoised per word) and compute the same integer LCS with a bit-parallel algorithm
instead of the quadratic Python table, so the float is identical and thousands of rows take well
under a second. ROUGE-1 is not computed: it enters no score.
"""

from __future__ import annotations

from functools import lru_cache
from types import SimpleNamespace

__all__ = ["lcs_length", "rouge_l_recall", "rouge_tokens"]


@lru_cache(maxsize=1)
def _stemmer() -> SimpleNamespace:
    """The Porter stemmer rouge_score uses, with each word's stem remembered. Built on first use: importing
    rouge_score pulls in nltk (seconds), which commands that never score should not pay."""
    from rouge_score.tokenizers import DefaultTokenizer

    stemmer = DefaultTokenizer(use_stemmer=True)._stemmer  # the exact stemmer object rouge_score builds
    return SimpleNamespace(stem=lru_cache(maxsize=1 << 18)(stemmer.stem))


@lru_cache(maxsize=1 << 16)
def rouge_tokens(text: str) -> tuple[str, ...]:
    """rouge_score's tokens of `text`: lowercased, non-[a-z0-9] runs as spaces, words over 3 chars stemmed."""
    from rouge_score import tokenize

    return tuple(tokenize.tokenize(text, _stemmer()))


def lcs_length(a: tuple[str, ...], b: tuple[str, ...]) -> int:
    """Length of the longest common subsequence of two token sequences (Hyyrö's bit-parallel method)."""
    if not a or not b:
        return 0
    masks: dict[str, int] = {}
    for position, token in enumerate(a):
        masks[token] = masks.get(token, 0) | (1 << position)
    full = (1 << len(a)) - 1
    v = full
    for token in b:
        match = masks.get(token)
        if match:
            u = v & match
            v = ((v + u) | (v - u)) & full
    return len(a) - v.bit_count()


def rouge_l_recall(target: str, prediction: str) -> float:
    """``RougeScorer(['rougeL'], use_stemmer=True).score(target, prediction)['rougeL'].recall``.

    rouge_score returns the int 0 when either side has no tokens; we return 0.0 (equal, and it sums
    the same way in the per-task means).
    """
    target_tokens, prediction_tokens = rouge_tokens(target), rouge_tokens(prediction)
    if not target_tokens or not prediction_tokens:
        return 0.0
    return lcs_length(target_tokens, prediction_tokens) / len(target_tokens)
