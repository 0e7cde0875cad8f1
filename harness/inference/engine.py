"""`evaluate`: one checkpoint through the official inference stages into a run directory, then scored.

Stages, in the official order: retain generations + answer NLL, forget generations + answer NLL, MIA
member/non-member losses, MMLU choices. The fast path runs the answer NLL of both splits and the MIA
losses first, in one prefix-forest pass that also drafts the generations (answers.answer_pass), then
decodes what the drafts left open (generation.generate_drafted); the files, their columns and their
rows are the same either way. The artifacts are the official ones (official-scoring.md 2.3, 2.7, 4):
forget_0.csv / retain_0.csv, mia_results/{member,nonmember}_0.csv, mmlu_results/<subject>.csv and
mmlu_results/metrics.json; then harness.scoring.score_directory writes evaluation_results.jsonl.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import pandas as pd
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from harness.errors import HarnessError
from harness.files import write_atomic, write_text_atomic
from harness.inference import answers, cache, distributed, generation, losses, mmlu
from harness.inference.loading import load_checkpoint, resolve_device, resolve_dtype
from tasks.data import read_mia, read_mmlu, read_rows
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


@dataclass
class EvalResult:
    """What `evaluate` produced: the scores, where the artifacts are, seconds per stage, cache hit or not."""

    scores: Scores
    run_dir: Path
    timings: dict[str, float] = field(default_factory=dict)
    cached: bool = False


@dataclass(frozen=True)
class _Runner:
    """The model, tokenizer and path choice shared by the stages."""

    model: object
    tokenizer: object
    exact: bool
    batch_size: int
    max_tokens: int | None
    max_new_tokens: int
    progress: Progress | None
    decode_tokens: int | None = None

    @property
    def pad(self) -> int:
        return self.tokenizer.eos_token_id

    def _bar(self, label: str, total: int) -> Callable[[int], None]:
        if self.progress is None:
            return lambda n: None
        task_id = self.progress.add_task(label, total=total)
        return lambda n: self.progress.advance(task_id, n)

    def generate(
        self,
        label: str,
        prompts: Sequence[Sequence[int]],
        drafts: Sequence[Sequence[generation.Draft]] = (),
    ) -> list[str]:
        """Generations; on the fast path, following the drafts of each row if given."""
        advance = self._bar(label, len(prompts))
        if self.exact:
            tokens = []
            for p in prompts:
                tokens.append(generation.generate_exact(self.model, p, self.max_new_tokens, self.pad))
                advance(1)
        else:
            tokens = generation.generate_drafted(
                self.model,
                prompts,
                drafts or [()] * len(prompts),
                self.max_new_tokens,
                self.pad,
                self.batch_size,
                self.max_tokens,
                on_rows=advance,
                decode_tokens=self.decode_tokens,
            )
        return [generation.decode(self.tokenizer, t) for t in tokens]

    def losses(self, label: str, items: Sequence[losses.LossItem]) -> list[float]:
        advance = self._bar(label, len(items))
        if self.exact:
            out = []
            for it in items:
                out.append(losses.loss_exact(self.model, it))
                advance(1)
            return out
        return losses.losses_fast(
            self.model, items, self.pad, self.batch_size, self.max_tokens, on_rows=advance
        )

    def answer_pass(self, label: str, rows: Sequence, documents: Sequence[str]) -> answers.AnswerPass:
        """Fast path: the answer NLLs, the drafts of the generations and the MIA losses (answers.answer_pass)."""
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

    def choices(self, label: str, prompts: Sequence[Sequence[int]], candidates: list[int]):
        advance = self._bar(label, len(prompts))
        if self.exact:
            out = []
            for p in prompts:
                out.append(mmlu.choose_exact(self.model, p, candidates))
                advance(1)
            return out
        return mmlu.choose_fast(
            self.model, prompts, candidates, self.pad, self.batch_size, self.max_tokens, on_rows=advance
        )


@contextmanager
def _progress(enabled: bool) -> Iterator[Progress | None]:
    if not enabled:
        yield None
        return
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with Progress(*columns, console=Console(stderr=True)) as bar:
        yield bar


def _write_csv(frame: pd.DataFrame, path: Path) -> None:
    write_atomic(path, lambda tmp: frame.to_csv(tmp, index=False))


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
    }


def _mmlu_files(task: TaskSpec) -> list[Path]:
    if task.mmlu_dir is None:
        return []
    folder = Path(task.mmlu_dir)
    subjects = task.mmlu_subjects or sorted(
        p.name[: -len("_test.csv")] for p in (folder / "test").glob("*_test.csv")
    )
    return [folder / split / f"{s}_{split}.csv" for s in subjects for split in ("dev", "test")]


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
) -> EvalResult:
    """Run the official inference on ``checkpoint_dir`` for ``task`` into ``run_dir`` and score it.

    ``exact`` runs the official one-row loops (slow; for parity); otherwise the batched fast path, with
    at most ``batch_size`` rows and ``max_tokens`` padded tokens per batch (defaults per device type;
    the decoding loop's default on a CPU is larger, DEFAULT_DECODE_TOKENS).
    Under torchrun/accelerate (WORLD_SIZE > 1) each process evaluates a shard and rank 0 writes the
    merged artifacts; ``processes_quirk`` keeps the official multi-process padding duplicates instead.
    """
    from harness.scoring import score_directory

    started = time.perf_counter()
    checkpoint_dir, run_dir = Path(checkpoint_dir), Path(run_dir)
    for name in ("eval_forget", "eval_retain"):
        path = getattr(task, name)
        if path is None or not Path(path).exists():
            raise HarnessError(f"task {task.name!r}: {name} is missing ({path})")
    dev = resolve_device(device)
    torch_dtype = resolve_dtype(task, dev, dtype)
    world = distributed.init_world(dev)
    quirk = processes_quirk and world.size > 1
    size = batch_size or DEFAULT_BATCH.get(dev.type, 32)
    tokens = max_tokens or DEFAULT_TOKENS.get(dev.type, DEFAULT_TOKENS["cpu"])
    decode_tokens = max_tokens or DEFAULT_DECODE_TOKENS.get(dev.type, DEFAULT_DECODE_TOKENS["cpu"])
    mia_paths = [task.mia_member, task.mia_nonmember]
    have_mia = all(p is not None and Path(p).exists() for p in mia_paths)
    key = None
    if use_cache:
        data = [task.eval_forget, task.eval_retain, *(mia_paths if have_mia else []), *_mmlu_files(task)]
        settings = _settings(task, exact, batch_size, max_tokens, dev, torch_dtype, processes_quirk, world)
        key = cache.eval_key(checkpoint_dir, data, settings)
        entry = cache.lookup(key)
        if entry is not None:
            timings: dict[str, float] = {}
            if world.main:
                run_dir.mkdir(parents=True, exist_ok=True)
                timings = cache.restore(entry, run_dir)
            scores = distributed.broadcast(
                score_directory(run_dir, mmlu_threshold=task.mmlu_threshold) if world.main else None, world
            )
            return EvalResult(scores=scores, run_dir=run_dir, timings=timings, cached=True)

    timings = {}
    t0 = time.perf_counter()
    model, tokenizer = load_checkpoint(checkpoint_dir, dev, torch_dtype)
    timings["load"] = time.perf_counter() - t0
    artifacts: list[Path] = []
    with _progress(progress and world.main) as bar:
        runner = _Runner(model, tokenizer, exact, size, tokens, task.max_new_tokens, bar, decode_tokens)
        groups = {}
        if have_mia:
            groups = {
                "member": distributed.shard(read_mia(task.mia_member), world, quirk),
                "nonmember": distributed.shard(read_mia(task.mia_nonmember), world, quirk),
            }
        docs = [d for group in groups.values() for d in group]
        split_artifacts, nll = _run_splits(runner, task, run_dir, world, quirk, timings, docs)
        artifacts += split_artifacts
        if have_mia:
            t0 = time.perf_counter()
            if nll is None:  # the exact path: one document at a time, after the splits
                ids = answers.tokens(tokenizer, [d.document for d in docs])
                nll = runner.losses(
                    "MIA: member + non-member losses", [losses.LossItem(tuple(i), 0) for i in ids]
                )
            for (group, part), part_nll in zip(groups.items(), _cut_like(nll, groups.values())):
                records = [{"id": d.id, "nll": n} for d, n in zip(part, part_nll)]
                artifacts += _merge_write(
                    records, ["id", "nll"], run_dir / "mia_results", group, world, quirk
                )
            timings["mia"] = time.perf_counter() - t0
        if task.mmlu_dir is not None:
            t0 = time.perf_counter()
            artifacts += _run_mmlu(runner, task, run_dir, world)
            timings["mmlu"] = time.perf_counter() - t0
    timings["total"] = time.perf_counter() - started
    scores = None
    if world.main:
        if key is not None:
            cache.store(key, run_dir, artifacts, timings)
        scores = score_directory(run_dir, mmlu_threshold=task.mmlu_threshold)
    scores = distributed.broadcast(scores, world)
    return EvalResult(scores=scores, run_dir=run_dir, timings=timings, cached=False)


def _run_splits(
    runner: _Runner,
    task: TaskSpec,
    run_dir: Path,
    world: distributed.World,
    quirk: bool,
    timings: dict,
    documents: Sequence,
) -> tuple[list[Path], list[float] | None]:
    """Generations and answer NLL of the retain and the forget rows, into retain_0.csv and forget_0.csv.

    The exact path runs the official loop: retain first, each split's generations and then its NLL. The
    fast path takes both splits and the MIA ``documents`` at once: one loss pass, whose expected answers
    draft the generations (answers.answer_pass), then one batched call decodes what the drafts did not
    settle. Returns the files written and, on the fast path, the documents' MIA losses.
    """
    tokenizer = runner.tokenizer
    splits = {
        split: distributed.shard(read_rows(getattr(task, f"eval_{split}")), world, quirk)
        for split in ("retain", "forget")  # the official order: retain first
    }
    outputs: dict[str, list[str]] = {}
    nll: dict[str, list[float]] = {}
    document_nll = None
    if runner.exact:
        for split, rows in splits.items():
            t0 = time.perf_counter()
            prompts = answers.tokens(tokenizer, [r.input for r in rows])
            outputs[split] = runner.generate(f"{split}: generations", prompts)
            timings[f"{split}_generation"] = time.perf_counter() - t0
            t0 = time.perf_counter()
            items = [losses.answer_item(tokenizer, r.input, r.output, p) for r, p in zip(rows, prompts)]
            nll[split] = runner.losses(f"{split}: answer NLL", items)
            timings[f"{split}_nll"] = time.perf_counter() - t0
    else:
        rows = [r for part in splits.values() for r in part]
        t0 = time.perf_counter()
        label = "retain + forget: answer NLL" + (", MIA losses" if documents else "")
        done = runner.answer_pass(label, rows, [d.document for d in documents])
        timings["losses"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        texts = runner.generate("retain + forget: generations", done.prompts, done.drafts)
        timings["generation"] = time.perf_counter() - t0
        outputs = dict(zip(splits, _cut_like(texts, splits.values())))
        nll = dict(zip(splits, _cut_like(done.nll, splits.values())))
        document_nll = done.document_nll
    artifacts = []
    for split, rows in splits.items():
        records = [
            {"id": r.id, "task": r.task, "input": r.input, "expected_output": r.output,
             "model_output": o, "nll": n}
            for r, o, n in zip(rows, outputs[split], nll[split])
        ]  # fmt: skip
        artifacts += _merge_write(records, OUTPUT_COLUMNS, run_dir, split, world, quirk)
    return artifacts, document_nll


def _cut_like(values: Sequence, parts) -> list[list]:
    """``values`` (the parts' results, concatenated in order) cut back into one list per part."""
    out, start = [], 0
    for part in parts:
        out.append(list(values[start : start + len(part)]))
        start += len(part)
    return out


def _merge_write(
    records: list[dict], columns: list[str], folder: Path, name: str, world: distributed.World, quirk: bool
) -> list[Path]:
    """Write ``<name>_0.csv`` (all shards merged in file order) or, with the quirk, one file per rank."""
    parts = distributed.gather(records, world)
    if not world.main:
        return []
    if quirk:  # the official multi-process run: each process writes <split>_<process_index>.csv
        paths = [folder / f"{name}_{rank}.csv" for rank in range(world.size)]
        for part, path in zip(parts, paths):
            _write_csv(pd.DataFrame(part, columns=columns), path)
        return paths
    path = folder / f"{name}_0.csv"
    _write_csv(pd.DataFrame([r for part in parts for r in part], columns=columns), path)
    return [path]


def _run_mmlu(runner: _Runner, task: TaskSpec, run_dir: Path, world: distributed.World) -> list[Path]:
    """MMLU choices for every subject (sharded over processes), the per-subject CSVs and metrics.json."""
    from harness.scoring.mmlu import aggregate_mmlu

    tokenizer = runner.tokenizer
    subjects = read_mmlu(task.mmlu_dir, task.mmlu_subjects)
    candidates = mmlu.answer_token_ids(tokenizer)
    flat: list[tuple[int, int, list[int]]] = []
    for s_index, subject in enumerate(subjects):
        prompts = mmlu.build_prompts(subject, tokenizer, task.mmlu_shots, task.mmlu_max_prompt_tokens)
        flat += [(s_index, i, ids) for i, ids in enumerate(answers.tokens(tokenizer, prompts))]
    mine = distributed.shard(flat, world)
    chosen = runner.choices("MMLU: choices", [ids for _, _, ids in mine], candidates)
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
        paths.append(mmlu.write_subject_csv(task.mmlu_dir, result, out_dir))
        per_subject[subject.name] = correct
    metrics = aggregate_mmlu(per_subject)
    path = out_dir / "metrics.json"
    write_text_atomic(path, json.dumps(metrics))
    return [*paths, path]
