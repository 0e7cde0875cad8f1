"""`evaluate`: one checkpoint through the official inference stages into a run directory, then scored.

Stages, in the official order: retain generations + answer NLL, forget generations + answer NLL, MIA
member/non-member losses (mia.py), MMLU choices. Each stage only calls the evaluation object's verbs
(evaluator.py: generate, loss, choices, in an exact and a fast implementation). The fast path runs the
answer NLL of both splits and the MIA losses first, in one prefix-forest pass that also drafts the
generations (FastEvaluator.answer_pass), then decodes what the drafts left open; the files, their
columns and their rows are the same either way. The artifacts are the official ones
(official-scoring.md 2.3, 2.7, 4): forget_0.csv / retain_0.csv, mia_results/{member,nonmember}_0.csv,
mmlu_results/<subject>.csv and mmlu_results/metrics.json; then harness.scoring.score_directory writes
evaluation_results.jsonl. A partial evaluation (``limit``) reads only the first rows of each split, the
first documents of each MIA side and the first test questions of each MMLU subject, on either path.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import torch
import transformers
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from harness.errors import HarnessError
from harness.files import write_text_atomic
from harness.inference import answers, cache, cpu_half, distributed, losses, mia, mmlu, ties
from harness.inference.evaluator import Evaluator, FastEvaluator, make_evaluator
from harness.inference.loading import load_checkpoint, resolve_device, resolve_dtype
from harness.inference.numerics import NUMERICS
from harness.inference.outputs import cut_like, merge_write
from harness.inference.threads import cpu_threads, eval_threads
from tasks.data import MmluSubject, read_mmlu, read_rows
from tasks.spec import TaskSpec

if TYPE_CHECKING:
    from harness.scoring import Scores

#: starting batch size of the fast path (halved on out-of-memory)
DEFAULT_BATCH = {"cuda": 64, "cpu": 64}
#: starting padded-token cap of one batch (rows x longest row; halved on out-of-memory): on CPU a forward
#: pass costs about its padded tokens, so short rows are not padded to long ones; CUDA takes big batches
DEFAULT_TOKENS = {"cuda": 1 << 16, "cpu": 1024}
#: the same cap for the batches of the decoding loop: its steps cost mostly per call on a CPU at these
#: sizes, so fewer, fuller batches (fewer steps in all) win over less prompt padding
DEFAULT_DECODE_TOKENS = {"cuda": 1 << 16, "cpu": 4096}
OUTPUT_COLUMNS = ["id", "task", "input", "expected_output", "model_output", "nll"]
#: the fast path's record of the rows it settled with the exact loop at a near tie
NEAR_TIES = "near_ties.json"
#: the timings key of the seconds the fast path spent settling near ties (part of the stages' times)
NEAR_TIE_SECONDS = "near_ties"


@dataclass
class EvalResult:
    """What `evaluate` produced: the scores, where the artifacts are, seconds per stage, cache hit or not."""

    scores: Scores
    run_dir: Path
    timings: dict[str, float] = field(default_factory=dict)
    cached: bool = False


@contextmanager
def _progress(enabled: bool) -> Iterator[Progress | None]:
    if not enabled:
        yield None
        return
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with Progress(*columns, console=Console(stderr=True)) as bar:
        yield bar


def _settings(
    task: TaskSpec, exact: bool, batch_size: int | None, max_tokens: int | None, device, dtype, quirk, world
) -> dict:
    return {
        "exact": exact,
        "batch_size": None if exact else batch_size,
        "max_tokens": None if exact else max_tokens,
        "device": device.type,
        "dtype": str(dtype),
        "max_new_tokens": task.max_new_tokens,
        "mmlu_subjects": list(task.mmlu_subjects) if task.mmlu_subjects is not None else None,
        "mmlu_shots": task.mmlu_shots,
        "mmlu_max_prompt_tokens": task.mmlu_max_prompt_tokens,
        "processes": world.size,
        "processes_quirk": quirk and world.size > 1,
        "transformers": transformers.__version__,
        "numerics": NUMERICS,
        # ATen's vector kernels round differently (bf16: other generations), so a CPU result names them
        "cpu_kernels": torch.backends.cpu.get_cpu_capability() if device.type == "cpu" else None,
        # bf16 products on the matrix unit (AMX) round otherwise, and the fast path keeps them (cpu_half.py)
        "cpu_amx": cpu_half.has_amx() if device.type == "cpu" else None,
    }


def _mia_files(task: TaskSpec) -> list[Path]:
    return [task.mia_member, task.mia_nonmember] if mia.available(task) else []


def _mmlu_files(task: TaskSpec) -> list[Path]:
    if task.mmlu_dir is None:
        return []
    folder = Path(task.mmlu_dir)
    subjects = task.mmlu_subjects or sorted(
        p.name[: -len("_test.csv")] for p in (folder / "test").glob("*_test.csv")
    )
    return [folder / split / f"{s}_{split}.csv" for s in subjects for split in ("dev", "test")]


def _check_limit(limit: int | None) -> None:
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 1):
        raise HarnessError(f"--limit must be a positive integer, not {limit!r}")


# Stays whole (75 lines, a third of them signature and docstring): its body is the stage sequence.
def evaluate(
    checkpoint_dir: Path,
    task: TaskSpec,
    run_dir: Path,
    *,
    exact: bool = False,
    batch_size: int | None = None,
    max_tokens: int | None = None,
    device: str | None = None,
    dtype: str | None = None,
    use_cache: bool = True,
    processes_quirk: bool = False,
    progress: bool = True,
    limit: int | None = None,
) -> EvalResult:
    """Run the official inference on ``checkpoint_dir`` for ``task`` into ``run_dir`` and score it.

    ``exact`` runs the official one-row loops (slow; for parity); otherwise the batched fast path, with
    at most ``batch_size`` rows and ``max_tokens`` padded tokens per batch (defaults per device type;
    the decoding loop's default on a CPU is larger, DEFAULT_DECODE_TOKENS).
    Under torchrun/accelerate (WORLD_SIZE > 1) each process evaluates a shard and rank 0 writes the
    merged artifacts; ``processes_quirk`` keeps the official multi-process padding duplicates instead.
    ``limit`` makes a partial evaluation (not comparable with a full one): the first ``limit`` rows of each
    split, documents of each MIA side and test questions of each MMLU subject.
    """
    from harness.scoring import score_directory

    started = time.perf_counter()
    checkpoint_dir, run_dir = Path(checkpoint_dir), Path(run_dir)
    _check_limit(limit)
    for name in ("eval_forget", "eval_retain"):
        path = getattr(task, name)
        if path is None or not Path(path).exists():
            raise HarnessError(f"task {task.name!r}: {name} is missing ({path})")
    dev = resolve_device(device)
    torch_dtype = resolve_dtype(task, dev, dtype)
    world = distributed.init_world(dev)
    key = None
    if use_cache:
        data = [task.eval_forget, task.eval_retain, *_mia_files(task), *_mmlu_files(task)]
        settings = _settings(task, exact, batch_size, max_tokens, dev, torch_dtype, processes_quirk, world)
        if limit is not None:  # only then: a full evaluation keeps the key it had before --limit existed
            settings["limit"] = limit
        key = cache.eval_key(checkpoint_dir, data, settings)
        hit = _from_cache(key, task, run_dir, world)
        if hit is not None:
            return hit

    timings = {}
    t0 = time.perf_counter()
    model, tokenizer = load_checkpoint(checkpoint_dir, dev, torch_dtype)
    timings["load"] = time.perf_counter() - t0
    with cpu_threads(eval_threads(model, dev)), _progress(progress and world.main) as bar:
        evaluator = make_evaluator(
            model,
            tokenizer,
            exact=exact,
            max_new_tokens=task.max_new_tokens,
            progress=bar,
            batch_size=batch_size or DEFAULT_BATCH.get(dev.type, 32),
            max_tokens=max_tokens or DEFAULT_TOKENS.get(dev.type, DEFAULT_TOKENS["cpu"]),
            decode_tokens=max_tokens or DEFAULT_DECODE_TOKENS.get(dev.type, DEFAULT_DECODE_TOKENS["cpu"]),
        )
        quirk = processes_quirk and world.size > 1
        artifacts = _run_stages(evaluator, task, run_dir, world, quirk, timings, limit)
    if isinstance(evaluator, FastEvaluator):
        # the exact loop's seconds at near ties, already inside the stages' times (ties.py)
        timings[NEAR_TIE_SECONDS] = sum(evaluator.exact_seconds.values())
        if world.main:
            artifacts.append(_write_near_ties(evaluator, run_dir, torch_dtype))
    timings["total"] = time.perf_counter() - started
    scores = None
    if world.main:
        if key is not None:
            cache.store(key, run_dir, artifacts, timings)
        scores = score_directory(run_dir, mmlu_threshold=task.mmlu_threshold)
    scores = distributed.broadcast(scores, world)
    return EvalResult(scores=scores, run_dir=run_dir, timings=timings, cached=False)


def _write_near_ties(evaluator: FastEvaluator, run_dir: Path, dtype) -> Path:
    """near_ties.json: how many rows of each stage the fast path settled with the exact loop (ties.py), and
    the decoding steps the exact loop took for the generation rows among them."""
    path = run_dir / NEAR_TIES
    payload = {
        "dtype": str(dtype),
        "tolerance": ties.tolerance(dtype),
        "loss_tolerance": ties.loss_tolerance(dtype),
        "exact_rows": evaluator.exact_rows,
        "exact_steps": evaluator.exact_steps,
    }
    write_text_atomic(path, json.dumps(payload, sort_keys=True))
    return path


def near_ties(run_dir: Path, field: str = "exact_rows") -> dict[str, int] | None:
    """The rows the fast path settled with the exact loop, per stage (None: not a fast-path run); with
    ``field="exact_steps"``, the decoding steps the exact loop took for them (empty before 3 Dec 2026)."""
    try:
        payload = json.loads((Path(run_dir) / NEAR_TIES).read_text())
        return payload["exact_rows"] if field == "exact_rows" else payload.get(field, {})
    except (OSError, ValueError, KeyError):
        return None


def _from_cache(key: str, task: TaskSpec, run_dir: Path, world: distributed.World) -> EvalResult | None:
    """The cached evaluation under `key`, restored into `run_dir` and scored; None on a miss."""
    from harness.scoring import score_directory

    entry = cache.lookup(key)
    if entry is None:
        return None
    timings: dict[str, float] = {}
    if world.main:
        run_dir.mkdir(parents=True, exist_ok=True)
        timings = cache.restore(entry, run_dir)
    scores = distributed.broadcast(
        score_directory(run_dir, mmlu_threshold=task.mmlu_threshold) if world.main else None, world
    )
    return EvalResult(scores=scores, run_dir=run_dir, timings=timings, cached=True)


def _run_stages(
    evaluator: Evaluator,
    task: TaskSpec,
    run_dir: Path,
    world: distributed.World,
    quirk: bool,
    timings: dict,
    limit: int | None = None,
) -> list[Path]:
    """The stages in the official order: retain + forget, MIA, MMLU; returns the files written.

    Every input is read before the first file is written, so bad data leaves no half-written run."""
    groups = mia.read_groups(task, world, quirk, limit) if mia.available(task) else {}
    subjects = (
        read_mmlu(task.mmlu_dir, task.mmlu_subjects, limit=limit) if task.mmlu_dir is not None else None
    )
    splits = _run_splits(evaluator, task, run_dir, world, quirk, timings, mia.documents(groups), limit)
    artifacts = list(splits.artifacts)
    if groups:
        t0 = time.perf_counter()
        artifacts += mia.run(evaluator, groups, run_dir, world, quirk, read=splits.document_nll)
        timings["mia"] = time.perf_counter() - t0
    if subjects is not None:
        t0 = time.perf_counter()
        artifacts += _run_mmlu(evaluator, task, subjects, run_dir, world, limit)
        timings["mmlu"] = time.perf_counter() - t0
    return artifacts


@dataclass(frozen=True)
class _SplitsDone:
    """What the splits stage wrote, and the MIA losses when the fast path read them in the same pass."""

    artifacts: list[Path]
    document_nll: list[float] | None


def _run_splits(
    evaluator: Evaluator,
    task: TaskSpec,
    run_dir: Path,
    world: distributed.World,
    quirk: bool,
    timings: dict,
    documents: Sequence,
    limit: int | None = None,
) -> _SplitsDone:
    """Generations and answer NLL of the retain and the forget rows, into retain_0.csv and forget_0.csv.

    The exact path runs the official loop: retain first, each split's generations and then its NLL. The
    fast path takes both splits and the MIA ``documents`` at once: one loss pass, whose expected answers
    draft the generations (FastEvaluator.answer_pass), then one batched call decodes what the drafts did
    not settle. ``limit``: the first rows of each split only (taken before sharding).
    """
    tokenizer = evaluator.tokenizer
    splits = {
        split: distributed.shard(read_rows(getattr(task, f"eval_{split}"), limit=limit), world, quirk)
        for split in ("retain", "forget")  # the official order: retain first
    }
    outputs: dict[str, list[str]] = {}
    nll: dict[str, list[float]] = {}
    document_nll = None
    if isinstance(evaluator, FastEvaluator):
        rows = [r for part in splits.values() for r in part]
        t0 = time.perf_counter()
        label = "retain + forget: answer NLL" + (", MIA losses" if documents else "")
        done = evaluator.answer_pass(label, rows, [d.document for d in documents])
        timings["losses"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        texts = evaluator.generate("retain + forget: generations", done.prompts, done.drafts)
        timings["generation"] = time.perf_counter() - t0
        outputs = dict(zip(splits, cut_like(texts, splits.values())))
        nll = dict(zip(splits, cut_like(done.nll, splits.values())))
        document_nll = done.document_nll
    else:
        for split, rows in splits.items():
            t0 = time.perf_counter()
            prompts = answers.tokens(tokenizer, [r.input for r in rows])
            outputs[split] = evaluator.generate(f"{split}: generations", prompts)
            timings[f"{split}_generation"] = time.perf_counter() - t0
            t0 = time.perf_counter()
            items = [losses.answer_item(tokenizer, r.input, r.output, p) for r, p in zip(rows, prompts)]
            nll[split] = evaluator.loss(f"{split}: answer NLL", items)
            timings[f"{split}_nll"] = time.perf_counter() - t0
    artifacts = []
    for split, rows in splits.items():
        records = [
            {"id": r.id, "task": r.task, "input": r.input, "expected_output": r.output,
             "model_output": o, "nll": n}
            for r, o, n in zip(rows, outputs[split], nll[split])
        ]  # fmt: skip
        artifacts += merge_write(records, OUTPUT_COLUMNS, run_dir, split, world, quirk)
    return _SplitsDone(artifacts, document_nll)


def _run_mmlu(
    evaluator: Evaluator,
    task: TaskSpec,
    subjects: list[MmluSubject],
    run_dir: Path,
    world: distributed.World,
    limit: int | None = None,
) -> list[Path]:
    """MMLU choices for every subject of `subjects` (read from the task's folder, sharded over processes),
    the per-subject CSVs and metrics.json; ``limit``: the first test questions of each subject only."""
    from harness.scoring.mmlu import aggregate_mmlu

    tokenizer = evaluator.tokenizer
    candidates = mmlu.answer_token_ids(tokenizer)
    flat: list[tuple[int, int, list[int]]] = []
    for s_index, subject in enumerate(subjects):
        prompts = mmlu.build_prompts(subject, tokenizer, task.mmlu_shots, task.mmlu_max_prompt_tokens)
        flat += [(s_index, i, ids) for i, ids in enumerate(answers.tokens(tokenizer, prompts))]
    mine = distributed.shard(flat, world)
    chosen = evaluator.choices("MMLU: choices", [ids for _, _, ids in mine], candidates)
    parts = distributed.gather(list(zip([(s, i) for s, i, _ in mine], chosen)), world)
    if not world.main:
        return []
    merged = [pair for part in parts for pair in part]
    out_dir = run_dir / "mmlu_results"
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    per_subject: dict[str, list[bool]] = {}
    for s_index, subject in enumerate(subjects):
        picks = [choice for (s, _), choice in merged if s == s_index]
        correct = [mmlu.LETTERS[pred] == item.answer for (pred, _), item in zip(picks, subject.test)]
        result = mmlu.SubjectResult(subject.name, correct, [probs for _, probs in picks])
        paths.append(mmlu.write_subject_csv(task.mmlu_dir, result, out_dir, limit))
        per_subject[subject.name] = correct
    metrics = aggregate_mmlu(per_subject)
    path = out_dir / "metrics.json"
    write_text_atomic(path, json.dumps(metrics))
    return [*paths, path]
