"""MIA panel: four membership attacks beside the official loss attack, on the same member/non-member documents.

For each document the model's next-token log-probabilities are read in one forward pass over
``tokenizer(document).input_ids`` (the official MIA loss is their negative mean, official-scoring.md
2.7), with the mean and standard deviation of log p over the vocabulary at each position (Min-K%++).
Every attack turns a document into a score where higher means "looks like a member", and its AUC is the
official one: ``compute_auc`` (sklearn's roc_curve + auc, members = 1) on the negated score.

- ``loss``: minus the mean token NLL (the official attack);
- ``zlib``: minus the mean token NLL divided by the zlib-compressed length of the text in bytes
  (Carlini et al. 2021);
- ``min_k``: the mean of the lowest k = 20% token log-probabilities (Shi et al. 2024; at least one token);
- ``min_k_pp``: the same over ``(log p(x_t) - mu_t) / sigma_t`` (Min-K%++, Zhang et al. 2025);
- ``reference``: minus (mean NLL under the model - mean NLL under a reference model), with the
  untouched target as the reference (Carlini et al. 2022's reference attack).

An ideal unlearning scores the gold model's AUC, not 0.5, so each AUC is also reported relative to
the gold model's (checkpoint minus gold; 0 is ideal).
"""

from __future__ import annotations

import math
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import torch

from harness.audit.common import attacked_models, check_checkpoint, load_model, reference_memo
from harness.scoring import compute_auc
from tasks.data import read_mia
from tasks.spec import TaskSpec

ATTACKS = ("loss", "zlib", "min_k", "min_k_pp", "reference")
MIN_K = 0.2


@dataclass(frozen=True)
class DocumentStats:
    """Per token of one document (positions 1..T-1): log p of the actual token, and mu / sigma of log p."""

    text: str
    logprobs: tuple[float, ...]
    mu: tuple[float, ...]
    sigma: tuple[float, ...]

    @property
    def nll(self) -> float:
        return -sum(self.logprobs) / len(self.logprobs)


def _lowest_mean(values: list[float], k: float) -> float:
    n = max(1, int(len(values) * k))
    return sum(sorted(values)[:n]) / n


def attack_scores(docs: list[DocumentStats], reference: list[DocumentStats] | None, k: float = MIN_K):
    """Attack -> one score per document (higher: more member-like); ``reference`` aligned with ``docs``."""
    out: dict[str, list[float]] = {
        "loss": [-d.nll for d in docs],
        "zlib": [-d.nll / len(zlib.compress(d.text.encode("utf-8"))) for d in docs],
        "min_k": [_lowest_mean(list(d.logprobs), k) for d in docs],
        "min_k_pp": [
            _lowest_mean([(lp - m) / s if s > 0 else 0.0 for lp, m, s in zip(d.logprobs, d.mu, d.sigma)], k)
            for d in docs
        ],
    }
    if reference is not None:
        out["reference"] = [-(d.nll - r.nll) for d, r in zip(docs, reference)]
    return out


def panel_aucs(
    members: list[DocumentStats], nonmembers: list[DocumentStats], ref_members=None, ref_nonmembers=None
):
    """Attack -> AUC (official convention: compute_auc on the negated score)."""
    refs = None if ref_members is None else ref_members + ref_nonmembers
    scores = attack_scores(members + nonmembers, refs)
    n = len(members)
    return {name: compute_auc([-s for s in v[:n]], [-s for s in v[n:]]) for name, v in scores.items()}


@torch.inference_mode()
def document_stats(model, tokenizer, texts: list[str]) -> list[DocumentStats]:
    """One forward pass per document (no padding, like the official loss call)."""
    out = []
    for text in texts:
        ids = torch.tensor([tokenizer(text)["input_ids"]], device=model.device)
        logp = torch.log_softmax(model(ids).logits[0, :-1].float(), dim=-1)
        picked = logp.gather(-1, ids[0, 1:].unsqueeze(-1)).squeeze(-1)
        probs = logp.exp()
        mu = (probs * logp).sum(-1)
        sigma = ((probs * logp.square()).sum(-1) - mu.square()).clamp(min=0).sqrt()
        out.append(DocumentStats(text, tuple(picked.tolist()), tuple(mu.tolist()), tuple(sigma.tolist())))
    return out


@dataclass
class MiaPanelResult:
    """Model -> attack -> AUC, and the checkpoint's AUC minus the gold model's per attack."""

    auc: dict[str, dict[str, float]] = field(default_factory=dict)
    members: int = 0
    nonmembers: int = 0
    notes: list[str] = field(default_factory=list)

    def relative_to_gold(self) -> dict[str, float] | None:
        if "gold" not in self.auc or "checkpoint" not in self.auc:
            return None
        gold = self.auc["gold"]
        return {a: v - gold[a] for a, v in self.auc["checkpoint"].items() if a in gold and not math.isnan(v)}

    def to_json(self) -> dict[str, object]:
        return {
            "members": self.members,
            "nonmembers": self.nonmembers,
            "min_k": MIN_K,
            "auc": self.auc,
            "relative_to_gold": self.relative_to_gold(),
            "notes": self.notes,
        }


def run_mia_panel(
    checkpoint_dir: Path, task: TaskSpec, work_dir: Path | None = None, *, device: str | None = None
) -> MiaPanelResult:
    """The panel for the checkpoint, the target and the gold model (the target is every one's reference)."""
    checkpoint_dir = check_checkpoint(checkpoint_dir)
    result = MiaPanelResult()
    if task.mia_member is None or task.mia_nonmember is None:
        result.notes.append(f"task {task.name!r} has no MIA member/non-member files: the panel is skipped")
        return result
    members, nonmembers = read_mia(task.mia_member), read_mia(task.mia_nonmember)
    texts = [d.document for d in members] + [d.document for d in nonmembers]
    result.members, result.nonmembers = len(members), len(nonmembers)
    stats: dict[str, list[DocumentStats]] = {}
    for model_name, path in attacked_models(checkpoint_dir, task, True, result.notes, "not in the panel"):

        def attack(path: Path = path) -> dict:
            model, tokenizer = load_model(path, device=device)
            docs = document_stats(model, tokenizer, texts)
            return {"docs": [[d.text, d.logprobs, d.mu, d.sigma] for d in docs]}

        done = attack() if model_name == "checkpoint" else reference_memo("mia", path, task, device, attack)
        stats[model_name] = [
            DocumentStats(t, tuple(lp), tuple(mu), tuple(sd)) for t, lp, mu, sd in done["docs"]
        ]
    n = len(members)
    reference = stats.get("target")
    for model_name, docs in stats.items():
        ref_m, ref_n = (reference[:n], reference[n:]) if reference is not None else (None, None)
        result.auc[model_name] = panel_aucs(docs[:n], docs[n:], ref_m, ref_n)
    return result
