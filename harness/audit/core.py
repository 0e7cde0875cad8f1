"""`audit()`: every attack on one checkpoint, the headline "robust forget", and audit.json in the run directory.

Robust forget (knowledge): with ``K`` the checkpoint's forget knowledge under the official prompts (the
mean over tasks of the forget qa exact-match means: 1 - K is the mean of the official forget knowledge
terms) and ``d_a`` what attack ``a`` brings back (quantization: after - before; probes: under the probe
- official; relearning: the held-out gain minus the gold model's gain, at least 0),

    robust_forget = 1 - min(1, K + max(0, d_int8, d_nf4, d_relearn, d_paraphrase, d_format))

so it equals the official forget knowledge term (1 - K) when no attack brings anything back and falls by
the most any one attack recovers. The same formula over sc ROUGE-L recall gives
``robust_forget_regurgitation``. ``official_forget`` (1 - K) comes with a 95% bootstrap interval over
the forget qa rows (resampled within each task, 1,000 draws, seed 0). An attack that fails (bad input)
reports one line in ``errors`` and the others still run; it then drops out of the maximum.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from harness.audit.common import (
    Measure,
    RowScore,
    check_checkpoint,
    first_line,
    measure_run,
    reference_dirs,
    summarize,
)
from harness.audit.extraction import ExtractionResult, run_extraction
from harness.audit.mia_panel import MiaPanelResult, run_mia_panel
from harness.audit.probes import ProbeResult, run_probes
from harness.audit.quantize import QuantizeResult, run_quantize
from harness.audit.relearn import RelearnResult, run_relearn
from harness.errors import HarnessError
from harness.files import make_folder, write_text_atomic
from tasks.spec import TaskSpec

ATTACKS = ("quantize", "relearn", "probes", "mia_panel", "extraction")
AUDIT_VERSION = 1


def bootstrap_forget(rows: Sequence[RowScore], kind: str = "qa", n: int = 1000, seed: int = 0):
    """95% interval of 1 - (mean over tasks of the forget ``kind`` row means), rows resampled per task."""
    groups: dict[str, list[float]] = {}
    for r in rows:
        if r.split == "forget" and r.kind == kind:
            groups.setdefault(r.task, []).append(r.score)
    if not groups:
        return None
    rng = np.random.default_rng(seed)
    draws = np.zeros(n)
    for values in groups.values():
        v = np.asarray(values)
        draws += v[rng.integers(0, len(v), size=(n, len(v)))].mean(axis=1)
    draws = 1.0 - draws / len(groups)
    return [float(np.quantile(draws, 0.025)), float(np.quantile(draws, 0.975))]


@dataclass
class AuditResult:
    """The audit of one checkpoint on one task: each attack's result, errors, timings and the headline."""

    checkpoint: str
    task: str
    official: Measure | None = None
    official_interval: list[float] | None = None
    quantize: QuantizeResult | None = None
    relearn: RelearnResult | None = None
    probes: ProbeResult | None = None
    mia_panel: MiaPanelResult | None = None
    extraction: ExtractionResult | None = None
    errors: dict[str, str] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)

    def recoveries(self, key: str = "forget_knowledge") -> dict[str, float]:
        """Attack -> what it brought back of the forget ``key`` (see the module docstring)."""
        out: dict[str, float | None] = {}
        if self.quantize is not None:
            out.update({f"quantize:{s}": self.quantize.recovered(s, key) for s in ("int8", "nf4")})
        if self.relearn is not None:
            out["relearn"] = self.relearn.recovery_above_gold(key)
        if self.probes is not None:
            out.update({f"probes:{f}": self.probes.recovered(f, key) for f in self.probes.counts})
        return {k: v for k, v in out.items() if v is not None}

    def robust(self, key: str = "forget_knowledge") -> tuple[float | None, str | None]:
        """(robust forget over ``key``, the attack that set it; None when nothing recovered anything)."""
        base = getattr(self.official, key) if self.official is not None else None
        if base is None:
            return None, None
        rec = self.recoveries(key)
        worst = max(rec, key=rec.get) if rec else None
        gain = max(0.0, rec[worst]) if worst is not None else 0.0
        return 1.0 - min(1.0, base + gain), (worst if gain > 0 else None)

    @property
    def robust_forget(self) -> float | None:
        return self.robust()[0]

    @property
    def official_forget(self) -> float | None:
        k = self.official.forget_knowledge if self.official is not None else None
        return None if k is None else 1.0 - k

    def to_json(self) -> dict[str, object]:
        robust_reg, worst_reg = self.robust("forget_regurgitation")
        out: dict[str, object] = {
            "audit_version": AUDIT_VERSION,
            "checkpoint": self.checkpoint,
            "task": self.task,
            "robust_forget": self.robust_forget,
            "worst_attack": self.robust()[1],
            "official_forget": self.official_forget,
            "official_forget_interval": self.official_interval,
            "robust_forget_regurgitation": robust_reg,
            "worst_attack_regurgitation": worst_reg,
            "recovered": {"forget_knowledge": self.recoveries(), "forget_regurgitation": self.recoveries("forget_regurgitation")},
            "official": self.official.to_json() if self.official is not None else None,
        }  # fmt: skip
        for name in ATTACKS:
            value = getattr(self, name)
            out[name] = value.to_json() if value is not None else None
        out.update(errors=self.errors, notes=self.notes, timings=self.timings)
        return out


def _line(error: BaseException) -> str:
    return (
        first_line(error)
        if isinstance(error, HarnessError)
        else f"{type(error).__name__}: {first_line(error)}"
    )


def _say(progress: bool, message: str) -> None:
    if progress:
        print(f"audit: {message}", file=sys.stderr, flush=True)


def audit(
    checkpoint_dir: Path,
    task: TaskSpec,
    run_dir: Path,
    *,
    attacks: Sequence[str] | None = None,
    progress: bool = False,
    backend: str = "auto",
    device: str | None = None,
) -> AuditResult:
    """Run ``attacks`` (default: all of `ATTACKS`) on ``checkpoint_dir``; write ``run_dir``/audit.json."""
    checkpoint_dir = check_checkpoint(checkpoint_dir)
    chosen = list(attacks) if attacks is not None else list(ATTACKS)
    unknown = [a for a in chosen if a not in ATTACKS]
    if unknown:
        raise HarnessError(f"unknown attack {unknown[0]!r} (choose from {', '.join(ATTACKS)})")
    for name in ("eval_forget", "eval_retain"):
        if getattr(task, name) is None or not Path(getattr(task, name)).exists():
            raise HarnessError(f"task {task.name!r}: {name} is missing ({getattr(task, name)})")
    run_dir = Path(run_dir)
    make_folder(run_dir)  # a --run-dir it cannot write fails now, not after the attacks
    work = run_dir / "audit"
    result = AuditResult(str(checkpoint_dir), task.name)
    if reference_dirs(task)["gold"] is None:
        result.notes.append(
            f"task {task.name!r} has no gold model: relearning recovery and MIA AUCs are not gold-relative"
        )
        _say(progress, result.notes[-1])
    t0 = time.perf_counter()
    try:
        rows, _ = measure_run(checkpoint_dir, task, work / "official", device=device)
        result.official, result.official_interval = summarize(rows), bootstrap_forget(rows)
    except Exception as error:  # noqa: BLE001 - without it there is no headline, but the attacks still run
        result.errors["official"] = _line(error)
        _say(progress, f"official scoring failed: {result.errors['official']}")
    result.timings["official"] = time.perf_counter() - t0
    runners: dict[str, Callable[[], object]] = {
        "quantize": lambda: run_quantize(
            checkpoint_dir, task, work / "quantize", backend=backend, device=device
        ),
        "relearn": lambda: run_relearn(checkpoint_dir, task, work / "relearn", device=device),
        "probes": lambda: run_probes(checkpoint_dir, task, work / "probes", device=device),
        "mia_panel": lambda: run_mia_panel(checkpoint_dir, task, work / "mia_panel", device=device),
        "extraction": lambda: run_extraction(checkpoint_dir, task, work / "extraction", device=device),
    }
    for name in chosen:
        t0 = time.perf_counter()
        _say(progress, f"{name} ...")
        try:
            setattr(result, name, runners[name]())
        except Exception as error:  # noqa: BLE001 - one attack's failure must not stop the others
            result.errors[name] = _line(error)
            _say(progress, f"{name} failed: {result.errors[name]}")
        result.timings[name] = time.perf_counter() - t0
        _say(progress, f"{name} done in {result.timings[name]:.1f} s")
    result.timings["total"] = sum(result.timings.values())
    write_audit(result, run_dir)
    return result


def write_audit(result: AuditResult, run_dir: Path) -> Path:
    """``run_dir``/audit.json, written atomically (harness.files)."""
    path = Path(run_dir) / "audit.json"
    write_text_atomic(path, json.dumps(result.to_json(), indent=1, allow_nan=True))
    return path
