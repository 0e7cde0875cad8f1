"""What the audit's attacks share: scoring a checkpoint under a condition, model loading, encoding, saving.

`measure` runs the official inference (harness.inference.evaluate) on a checkpoint for a task, optionally
with other scored rows (a probe split) or without MIA/MMLU, and reads the per-row scores the official
scorer wrote (row_scores.csv) back as a `Measure`: per task, the forget and retain knowledge (qa exact
match) and regurgitation (sc ROUGE-L recall) means, optionally over a subset of rows. The attacks compare
such measures of the same checkpoint before and after an attack, and those of the untouched target and
the gold model under the same attack. `reference_memo` stores what an attack gave for a reference model
($UNLEARN_HARNESS_CACHE/audit), keyed by the content of the model and the task's files, so the target and
the gold model are attacked once per task, not once per audited checkpoint.
"""

from __future__ import annotations

import csv
import json
import shutil
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path

import torch

from harness.errors import HarnessError
from harness.scoring.csvio import RowScore
from tasks.spec import TaskSpec

#: the three models an attack is run on: the audited checkpoint and the task's two references
MODELS = ("checkpoint", "target", "gold")


@dataclass(frozen=True)
class Measure:
    """Mean knowledge and regurgitation of the forget and retain rows, per task and over tasks.

    ``forget_knowledge`` is the mean over tasks of each task's forget qa exact-match mean (the official
    knowledge terms before inversion), ``forget_regurgitation`` the same of sc ROUGE-L recall.
    """

    per_task: dict[str, dict[str, float]]
    rows: int

    def _mean(self, key: str) -> float | None:
        values = [v[key] for v in self.per_task.values() if key in v]
        return sum(values) / len(values) if values else None

    @property
    def forget_knowledge(self) -> float | None:
        return self._mean("forget_knowledge")

    @property
    def forget_regurgitation(self) -> float | None:
        return self._mean("forget_regurgitation")

    @property
    def retain_knowledge(self) -> float | None:
        return self._mean("retain_knowledge")

    @property
    def retain_regurgitation(self) -> float | None:
        return self._mean("retain_regurgitation")

    def to_json(self) -> dict[str, object]:
        return {
            "forget_knowledge": self.forget_knowledge,
            "forget_regurgitation": self.forget_regurgitation,
            "retain_knowledge": self.retain_knowledge,
            "retain_regurgitation": self.retain_regurgitation,
            "rows": self.rows,
            "per_task": self.per_task,
        }


def read_row_scores(run_dir: Path) -> list[RowScore]:
    """The per-row scores harness.scoring wrote into ``run_dir`` (row_scores.csv)."""
    path = Path(run_dir) / "row_scores.csv"
    if not path.is_file():
        raise HarnessError(f"{path}: missing (the scorer writes it next to evaluation_results.jsonl)")
    with path.open(newline="") as handle:
        return [
            RowScore(r["split"], r["task"], r["kind"], r["id"], float(r["score"]))
            for r in csv.DictReader(handle)
        ]


def summarize(rows: Iterable[RowScore], ids: set[str] | None = None, prefix: str = "") -> Measure:
    """A `Measure` of ``rows`` (only those in ``ids`` and starting with ``prefix``, when given)."""
    groups: dict[str, dict[str, list[float]]] = {}
    count = 0
    names = {"qa": "knowledge", "sc": "regurgitation"}
    for r in rows:
        if (ids is not None and r.id not in ids) or not r.id.startswith(prefix) or r.kind not in names:
            continue
        groups.setdefault(r.task, {}).setdefault(f"{r.split}_{names[r.kind]}", []).append(r.score)
        count += 1
    per_task = {
        task: {key: sum(v) / len(v) for key, v in sorted(values.items())}
        for task, values in sorted(groups.items())
    }
    return Measure(per_task, count)


def measure_run(
    checkpoint_dir: Path,
    task: TaskSpec,
    run_dir: Path,
    *,
    mia: bool = True,
    mmlu: bool = False,
    forget_rows: Path | None = None,
    retain_rows: Path | None = None,
    device: str | None = None,
) -> tuple[list[RowScore], object]:
    """Official inference + scoring of ``checkpoint_dir`` into ``run_dir``: (row scores, `Scores`).

    ``forget_rows`` / ``retain_rows`` replace the task's scored files (a probe split); ``mia`` and
    ``mmlu`` False leave those stages out (an attack that does not need them).
    """
    from harness.inference import evaluate

    changes: dict[str, object] = {}
    if not mia:
        changes.update(mia_member=None, mia_nonmember=None)
    if not mmlu:
        changes["mmlu_dir"] = None
    if forget_rows is not None:
        changes["eval_forget"] = forget_rows
    if retain_rows is not None:
        changes["eval_retain"] = retain_rows
    result = evaluate(
        Path(checkpoint_dir), replace(task, **changes), Path(run_dir), device=device, progress=False
    )
    return read_row_scores(result.run_dir), result.scores


def reference_dirs(task: TaskSpec) -> dict[str, Path | None]:
    """The task's untouched target and gold model directories (None where absent)."""
    gold = (
        task.gold_model_dir
        if task.gold_model_dir is not None and Path(task.gold_model_dir).is_dir()
        else None
    )
    return {"target": Path(task.model_dir) if task.model_dir is not None else None, "gold": gold}


def attacked_models(
    checkpoint_dir: Path, task: TaskSpec, references: bool, notes: list[str], what: str
) -> list[tuple[str, Path]]:
    """(name, directory) of each model an attack runs on: the checkpoint and, with ``references``, the
    task's target and gold model; a missing one adds a note "... no <name> model: <what>"."""
    models: dict[str, Path | None] = {"checkpoint": Path(checkpoint_dir)}
    if references:
        models.update(reference_dirs(task))
    chosen = []
    for name, path in models.items():
        if path is None:
            notes.append(f"task {task.name!r} has no {name} model: {what}")
        else:
            chosen.append((name, path))
    return chosen


def check_checkpoint(checkpoint_dir: Path) -> Path:
    """``checkpoint_dir`` as a Path, or one clear line when it is not a checkpoint directory."""
    checkpoint_dir = Path(checkpoint_dir)
    if not (checkpoint_dir / "config.json").is_file():
        raise HarnessError(f"{checkpoint_dir}: not a model checkpoint (no config.json)")
    return checkpoint_dir


@contextmanager
def _quiet() -> Iterator[None]:
    """No transformers progress bars (loading, saving shards) while the audit loads and saves copies."""
    from transformers.utils import logging

    was = logging.is_progress_bar_enabled()
    logging.disable_progress_bar()
    try:
        yield
    finally:
        if was:
            logging.enable_progress_bar()


def load_model(checkpoint_dir: Path, device: str | None = None, dtype: torch.dtype = torch.float32):
    """(model in eval mode, tokenizer with pad = eos) from a checkpoint directory, with transformers."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    checkpoint_dir = check_checkpoint(checkpoint_dir)
    dev = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    try:
        tokenizer = AutoTokenizer.from_pretrained(checkpoint_dir)
        with _quiet():
            model = AutoModelForCausalLM.from_pretrained(checkpoint_dir, dtype=dtype)
    except (OSError, ValueError, KeyError) as error:
        raise HarnessError(f"{checkpoint_dir}: cannot load the checkpoint ({first_line(error)})") from None
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    return model.to(dev).eval(), tokenizer


def save_model(model, tokenizer, out_dir: Path) -> Path:
    """Save a dense checkpoint (weights, config, tokenizer) to ``out_dir`` (replaced if present)."""
    out_dir = Path(out_dir)
    if out_dir.exists():
        shutil.rmtree(out_dir)
    out_dir.mkdir(parents=True)
    with _quiet():
        model.save_pretrained(out_dir)
    tokenizer.save_pretrained(out_dir)
    return out_dir


def answer_tokens(tokenizer, prompt: str, answer: str) -> tuple[list[int], list[int]]:
    """(prompt ids, answer ids): ``prompt`` as the scorer tokenizes it, the answer as ``" " + answer``
    continues it (the encoding the submissions train on: input + " " + output)."""
    prompt_ids = list(tokenizer(prompt)["input_ids"])
    full = list(tokenizer(prompt + " " + answer)["input_ids"])
    if full[: len(prompt_ids)] == prompt_ids:
        return prompt_ids, full[len(prompt_ids) :]
    return prompt_ids, list(tokenizer(" " + answer, add_special_tokens=False)["input_ids"])


def write_rows(rows: Iterable[dict[str, str]], path: Path) -> Path:
    """Scored rows (id, input, output, task) as a jsonl file the task data reader accepts."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def first_line(error: BaseException) -> str:
    """The one line a failed attack reports."""
    text = str(error).strip()
    return (text.splitlines() or [type(error).__name__])[0]


#: bump when an attack's computation changes: part of every memo key
MEMO_VERSION = 1


def _digest(paths: Iterable[Path | None], extra: object) -> str:
    import hashlib

    outer = hashlib.sha256(json.dumps([MEMO_VERSION, extra], sort_keys=True, default=str).encode())
    for root in paths:
        if root is None or not Path(root).exists():
            continue
        files = (
            sorted(p for p in Path(root).rglob("*") if p.is_file()) if Path(root).is_dir() else [Path(root)]
        )
        for path in files:
            outer.update(str(path.relative_to(root) if Path(root).is_dir() else path.name).encode())
            outer.update(hashlib.sha256(path.read_bytes()).digest())
    return outer.hexdigest()


def memo_root() -> Path:
    """<UNLEARN_HARNESS_CACHE or the platform user cache>/audit."""
    import os

    import platformdirs

    base = os.environ.get("UNLEARN_HARNESS_CACHE") or platformdirs.user_cache_dir("unlearn-harness")
    return Path(base) / "audit"


def reference_memo(kind: str, model_dir: Path, task: TaskSpec, settings: object, compute) -> dict:
    """What ``compute()`` (a JSON-able dict) gave for a reference model (the target, the gold model),
    stored under a key over the model's files, the task's scored and MIA files, ``kind`` and
    ``settings``: the references are the same for every checkpoint of a task, so they are attacked once."""
    import os
    import tempfile

    data = [task.eval_forget, task.eval_retain, task.mia_member, task.mia_nonmember]
    key = _digest([Path(model_dir), *data], [kind, settings])
    path = memo_root() / f"{kind}-{key[:32]}.json"
    if path.is_file():
        return json.loads(path.read_text())
    value = compute()
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".memo-")
    with os.fdopen(fd, "w") as handle:
        json.dump(value, handle)
    os.replace(tmp, path)
    return value


def measure_from_json(data: dict) -> Measure:
    return Measure(data["per_task"], data["rows"])
