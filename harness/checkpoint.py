"""Checkpoint validation: is what a submission left in out/ what the official scorer can load and score?

`validate(out_dir, reference_dir)` loads the checkpoint with AutoModelForCausalLM and AutoTokenizer
from out/ alone, checks the architecture and vocabulary against the input model, that every weight is
finite, hashes every file of out/ (weights, config, generation config, tokenizer: everything the
evaluation reads) and measures the parameter distance to the input model. "Unchanged" means the
weights and every file the evaluation reads equal the input model's. out/ must hold real files: a
symbolic link that leaves out/ (another run's checkpoint, the input model) or anything that is not a
regular file (a FIFO would hang the loader) is refused before anything is read. A failure carries a
status (NO_CHECKPOINT, INVALID_CHECKPOINT, NON_FINITE_WEIGHTS) and a one-line message that says how
to fix it. Whether the organisers' transformers 4.45.2 opens it: `official_env_problems` (the static
check, and the load in the official environment; `check`) and `OfficialLoad` (that load in the
background, while `run` scores).
"""

from __future__ import annotations

import fnmatch
import hashlib
import json
import math
import os
import stat
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from harness.envs.official import PendingLoad

WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth")
INDEX_NAMES = ("model.safetensors.index.json", "pytorch_model.bin.index.json")
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "tokenizer.model", "vocab.json")
ARCH_KEYS = ("model_type", "hidden_size", "num_hidden_layers", "num_attention_heads", "vocab_size")
SAVE_HINT = "model.save_pretrained(output_dir) and tokenizer.save_pretrained(output_dir)"
#: besides the weights, the files the evaluation reads (a change to any of them changes generations)
EVAL_FILE_PATTERNS = ("config.json", "generation_config.json", "tokenizer*", "special_tokens_map.json",
                      "added_tokens.json", "vocab.*", "merges.txt", "chat_template*", "*.model")  # fmt: skip
#: keys save_pretrained writes that change nothing the evaluation does
VOLATILE_KEYS = ("transformers_version", "_name_or_path")


@dataclass
class CheckpointReport:
    """The outcome of `validate`; `status` is None when the checkpoint is valid."""

    out_dir: Path
    status: str | None = None
    message: str = ""
    #: file name -> sha256, for every file of out/
    files: dict[str, str] = field(default_factory=dict)
    #: one hash over all files (names and contents): equal checkpoints have equal hashes
    sha256: str = ""
    #: files the evaluation reads (config, tokenizer...) that differ from the input model's
    changed_files: list[str] = field(default_factory=list)
    #: relative L2 distance ||w - w0|| / ||w0|| over the tensors both have, and the largest |w - w0|
    distance: float | None = None
    max_abs_diff: float | None = None
    unchanged: bool = False
    n_parameters: int = 0
    dtype: str = ""
    #: whether out/ was loaded in the official environment (`OfficialLoad.state`; None: not asked)
    official_env_load: str | None = None
    #: what keeps out/ from loading under transformers 4.45.2: the static check's lines, the load's problem,
    #: or why the load could not run (each also a run warning)
    official_env_problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.status is None

    def to_json(self) -> dict:
        return {
            "status": self.status or "VALID",
            "message": self.message,
            "files": self.files,
            "sha256": self.sha256,
            "distance": self.distance,
            "max_abs_diff": self.max_abs_diff,
            "unchanged": self.unchanged,
            "changed_files": self.changed_files,
            "n_parameters": self.n_parameters,
            "dtype": self.dtype,
            "official_env_load": self.official_env_load,
            "official_env_problems": self.official_env_problems,
        }


def sha256_file(path: Path, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def weight_files(directory: Path) -> list[Path]:
    """The weight files at the root of `directory` (no adapters), sorted by name."""
    return sorted(
        p
        for p in Path(directory).iterdir()
        if p.is_file()
        and p.suffix in WEIGHT_SUFFIXES
        and not p.name.startswith(("adapter_", "training_args"))
    )


def checkpoint_files(directory: Path) -> list[Path]:
    """Every regular file of `directory`, recursively, sorted by relative path."""
    directory = Path(directory)
    return sorted(
        (p for p in directory.rglob("*") if p.is_file()), key=lambda p: p.relative_to(directory).as_posix()
    )


def checkpoint_hash(directory: Path) -> tuple[str, dict[str, str]]:
    """(combined sha256, {relative path: sha256}) over every file of `directory`."""
    directory = Path(directory)
    files = {p.relative_to(directory).as_posix(): sha256_file(p) for p in checkpoint_files(directory)}
    combined = hashlib.sha256("".join(f"{n}:{h}\n" for n, h in sorted(files.items())).encode()).hexdigest()
    return combined, files


def _eval_file(name: str) -> bool:
    return "/" not in name and any(fnmatch.fnmatchcase(name, pattern) for pattern in EVAL_FILE_PATTERNS)


def _normalised(path: Path) -> object:
    data = path.read_bytes()
    if path.suffix == ".json":
        try:
            value = json.loads(data)
        except ValueError:
            return data
        if isinstance(value, dict):
            return {k: v for k, v in value.items() if k not in VOLATILE_KEYS}
        return value
    return data


def changed_eval_files(out_dir: Path, reference_dir: Path) -> list[str]:
    """Names of the non-weight files the evaluation reads that differ between the two directories
    (present in one only, or with other content; save_pretrained's version stamp aside)."""
    out, ref = Path(out_dir), Path(reference_dir)
    names = {p.name for d in (out, ref) for p in d.iterdir() if p.is_file() and _eval_file(p.name)}
    changed = []
    for name in sorted(names):
        a, b = out / name, ref / name
        if not (a.is_file() and b.is_file()) or _normalised(a) != _normalised(b):
            changed.append(name)
    return changed


#: `run` skips the load in the official environment where this is 0 (as `run --no-official-load`)
OFFICIAL_LOAD_ENV = "UNLEARN_HARNESS_OFFICIAL_LOAD"
#: the most seconds a run waits for that load once it has scored (it has run meanwhile)
OFFICIAL_LOAD_TIMEOUT_S = 300.0


def portable_problems(out_dir: Path) -> list[str]:
    """The static check: the fields of out/ whose meaning changed between transformers 5 and 4.45.2
    (tasks/portable.py), one line each with the fix."""
    from tasks.portable import portability_problems

    problems = [f"out/{line}" for line in portability_problems(Path(out_dir))]
    if problems:
        problems[-1] += (
            "; the reference entries write these fields after saving (unlearn_common.loadable_by_4_45)"
        )
    return problems


def _does_not_load(problem: str) -> str:
    return f"out/ does not load under the organisers' transformers 4.45.2 ({problem})"


def official_env_problems(out_dir: Path, *, load: bool = False) -> list[str]:
    """What in out/ the organisers' transformers 4.45.2 would refuse or misread, each with the fix.

    The static check (`portable_problems`) always runs; with ``load``, where the official environment
    exists (`unlearn-harness env official`), the checkpoint is also loaded there with AutoTokenizer and
    AutoModelForCausalLM (a few seconds: another interpreter and transformers release). `run` does the
    same load in the background while it scores (`OfficialLoad`).
    """
    from harness.envs import official

    problems = portable_problems(out_dir)
    env = official.locate() if load else None
    if env is not None:
        problem = official.loads(env, Path(out_dir))
        if problem is not None:
            problems.append(_does_not_load(problem))
    return problems


class OfficialLoad:
    """out/ loading in the official environment in the background. `prepare` starts the worker ahead (its
    imports, most of the seconds, run while the submission does), `begin` names out/ right after
    validation, `finish` collects the answer once the run has scored. `state` is what the run records
    (checkpoint.official_env_load): ``ready``, ``running``, then ``loaded`` or ``problems``; ``failed:
    <why>`` where the worker could not answer; ``skipped: <why>`` where nothing was started."""

    def __init__(self, state: str, pending: PendingLoad | None = None) -> None:
        self.state, self._pending = state, pending

    @classmethod
    def prepare(cls, *, enabled: bool = True) -> OfficialLoad:
        """Start the worker where `enabled` and the official environment exists; it is never created here."""
        from harness.envs import official
        from harness.errors import HarnessError

        if not enabled:
            return cls(f"skipped: turned off (--no-official-load or {OFFICIAL_LOAD_ENV}=0)")
        env = official.locate()
        if env is None:
            return cls("skipped: no official environment (`unlearn-harness env official` creates it)")
        try:
            return cls("ready", official.prepare_load(env))
        except (HarnessError, OSError) as error:
            return cls(f"failed: {error}")

    def begin(self, out_dir: Path) -> OfficialLoad:
        """Have the worker load out/ (a prepared load; otherwise nothing to do)."""
        if self._pending is not None and self.state == "ready":
            self._pending.begin(Path(out_dir))
            self.state = "running"
        return self

    def finish(self, timeout: float | None = None) -> list[str]:
        """Wait for the load (at most `timeout` seconds, default OFFICIAL_LOAD_TIMEOUT_S; then it is ended):
        the lines to warn with, worded as `official_env_problems` (the problem where out/ does not load; one
        line where the load failed)."""
        from harness.errors import HarnessError

        if self._pending is not None:
            pending, self._pending = self._pending, None
            try:
                problem = pending.result(OFFICIAL_LOAD_TIMEOUT_S if timeout is None else timeout)
            # a warning, never the run's failure
            except (HarnessError, OSError, ValueError, KeyError) as error:
                reason = str(error).strip().splitlines()
                self.state = f"failed: {reason[0] if reason else type(error).__name__}"
            else:
                self.state = "loaded" if problem is None else "problems"
                return [] if problem is None else [_does_not_load(problem)]
        if self.state.startswith("failed: "):
            return [f"out/ was not loaded in the official environment: {self.state[len('failed: ') :]}"]
        return []

    def cancel(self) -> None:
        """End a worker still running (the run is ending otherwise, or has no checkpoint to load)."""
        if self._pending is not None:
            self._pending.cancel()
            self._pending = None


def _foreign_entries(out: Path) -> str | None:
    """A message when out/ holds a symbolic link that leaves it, or something other than files and folders."""
    root = out.resolve()
    for path in sorted(out.rglob("*")):
        name = path.relative_to(out).as_posix()
        if path.is_symlink():
            target = path.resolve()
            if target != root and root not in target.parents:
                return (
                    f"out/{name} is a symbolic link to {os.readlink(path)}, outside out/: the checkpoint must be "
                    f"real files written by the submission; save with {SAVE_HINT}"
                )
            continue
        mode = path.lstat().st_mode
        if not (stat.S_ISREG(mode) or stat.S_ISDIR(mode)):
            return f"out/{name} is not a regular file (a FIFO, socket or device): save only files in out/"
    return None


def iter_tensors(directory: Path) -> Iterator[tuple[str, object]]:
    """(name, tensor) over the weight files of `directory`, one tensor in memory at a time where possible."""
    import torch
    from safetensors import safe_open

    for path in weight_files(directory):
        if path.suffix == ".safetensors":
            with safe_open(str(path), framework="pt") as handle:
                for key in handle.keys():
                    yield key, handle.get_tensor(key)
        else:
            state = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
            yield from state.items()


def _fail(report: CheckpointReport, status: str, message: str) -> CheckpointReport:
    report.status = status
    report.message = message
    return report


def _structure(report: CheckpointReport, out: Path) -> CheckpointReport | None:
    """File-level checks before anything is loaded; returns the report on failure."""
    # Stays whole: the checks run in the order a user's mistakes should be reported, each with its fix.
    if out.is_symlink() or not out.is_dir() or not any(out.iterdir()):
        return _fail(report, "NO_CHECKPOINT", f"out/ is empty: unlearn() saved nothing; call {SAVE_HINT}")
    if (foreign := _foreign_entries(out)) is not None:
        return _fail(report, "INVALID_CHECKPOINT", foreign)
    has_config = (out / "config.json").is_file()
    weights = weight_files(out)
    adapters = [
        p.name for p in out.iterdir() if p.name.startswith("adapter_model") or p.name == "adapter_config.json"
    ]
    if adapters and not weights:
        return _fail(
            report,
            "INVALID_CHECKPOINT",
            f"out/ holds only a LoRA adapter ({', '.join(sorted(adapters))}): the scorer loads a full model; "
            "merge it first: model = model.merge_and_unload(); then " + SAVE_HINT,
        )
    if not has_config and not weights:
        nested = sorted(p.parent for p in out.rglob("config.json") if p.parent != out)
        if nested:
            where = nested[0].relative_to(out)
            return _fail(
                report,
                "INVALID_CHECKPOINT",
                f"the checkpoint is in out/{where}/, not in out/ itself: the scorer loads the output directory "
                "directly; save to the root of out/ (save_pretrained(output_dir))",
            )
        return _fail(
            report,
            "NO_CHECKPOINT",
            f"out/ holds no model (no config.json, no weight files); call {SAVE_HINT}",
        )
    if not has_config:
        return _fail(report, "INVALID_CHECKPOINT", f"out/ has weights but no config.json; call {SAVE_HINT}")
    if not weights:
        return _fail(
            report, "INVALID_CHECKPOINT", f"out/ has config.json but no weight files; call {SAVE_HINT}"
        )
    for index_name in INDEX_NAMES:
        index = out / index_name
        if not index.is_file():
            continue
        try:
            shards = sorted(set(json.loads(index.read_text())["weight_map"].values()))
        except (ValueError, KeyError, AttributeError) as exc:
            return _fail(report, "INVALID_CHECKPOINT", f"out/{index_name} is unreadable ({exc})")
        missing = [s for s in shards if not (out / s).is_file()]
        if missing:
            return _fail(
                report,
                "INVALID_CHECKPOINT",
                f"sharded save incomplete: out/{index_name} names {len(missing)} missing shard(s) "
                f"({', '.join(missing[:3])}); the run was probably killed while saving: save to a temporary "
                "directory, then move it into out/",
            )
    if not any((out / name).is_file() for name in TOKENIZER_FILES):
        return _fail(
            report,
            "INVALID_CHECKPOINT",
            "no tokenizer in out/: the scorer loads the tokenizer from the output directory; "
            "call tokenizer.save_pretrained(output_dir)",
        )
    return None


def warm_up(reference_dir: Path) -> None:
    """Import torch, transformers and the model class of `reference_dir` (meant for a background thread
    while the submission runs, so that validation after the run does not pay for the imports)."""
    try:
        from transformers import AutoConfig, AutoTokenizer  # noqa: F401
        from transformers.models.auto.modeling_auto import MODEL_FOR_CAUSAL_LM_MAPPING

        MODEL_FOR_CAUSAL_LM_MAPPING[type(AutoConfig.from_pretrained(reference_dir))]
    except Exception:  # noqa: BLE001 - only an optimisation; validate() reports real problems
        return


def validate(out_dir: Path, reference_dir: Path, *, distance: bool = True) -> CheckpointReport:
    """Validate the checkpoint in `out_dir` against the input model in `reference_dir`."""
    # Stays whole: one sequence of checks, each ending the validation with its own status and fix, under
    # one transformers logging context; split, the early returns would have to travel through every piece.
    out = Path(out_dir)
    report = CheckpointReport(out_dir=out)
    if (failed := _structure(report, out)) is not None:
        return failed
    report.sha256, report.files = checkpoint_hash(out)

    import torch
    import transformers
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    verbosity = transformers.logging.get_verbosity()
    bars = transformers.utils.logging.is_progress_bar_enabled()
    transformers.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()
    try:
        try:
            config = AutoConfig.from_pretrained(out)
            ref_config = AutoConfig.from_pretrained(reference_dir)
        except Exception as exc:  # noqa: BLE001 - any loader failure is the checkpoint's problem
            return _fail(report, "INVALID_CHECKPOINT", f"out/config.json does not load: {_one_line(exc)}")
        for key in ARCH_KEYS:
            got, want = getattr(config, key, None), getattr(ref_config, key, None)
            if got != want:
                return _fail(
                    report,
                    "INVALID_CHECKPOINT",
                    f"architecture differs from the input model: {key} is {got!r}, expected {want!r}",
                )
        try:
            tokenizer = AutoTokenizer.from_pretrained(out)
            ref_tokenizer = AutoTokenizer.from_pretrained(reference_dir)
        except Exception as exc:  # noqa: BLE001
            return _fail(
                report,
                "INVALID_CHECKPOINT",
                f"the tokenizer in out/ does not load ({_one_line(exc)}); call tokenizer.save_pretrained(output_dir)",
            )
        if len(tokenizer) != len(ref_tokenizer) or tokenizer.get_vocab() != ref_tokenizer.get_vocab():
            return _fail(
                report,
                "INVALID_CHECKPOINT",
                f"vocabulary differs from the input model ({len(tokenizer)} tokens, expected "
                f"{len(ref_tokenizer)}); save the input model's tokenizer unchanged",
            )
        try:
            model, info = AutoModelForCausalLM.from_pretrained(out, dtype="auto", output_loading_info=True)
        except Exception as exc:  # noqa: BLE001
            return _fail(
                report, "INVALID_CHECKPOINT", f"AutoModelForCausalLM cannot load out/: {_one_line(exc)}"
            )
    finally:
        transformers.logging.set_verbosity(verbosity)
        if bars:
            transformers.utils.logging.enable_progress_bar()
    tied = set(getattr(model, "_tied_weights_keys", None) or [])
    missing = [k for k in info.get("missing_keys", []) if k not in tied and not k.startswith("lm_head")]
    if missing or info.get("mismatched_keys"):
        bad = missing or [str(k) for k in info["mismatched_keys"]]
        return _fail(
            report,
            "INVALID_CHECKPOINT",
            f"the weights in out/ do not fit the model: {len(bad)} tensor(s) missing or misshaped "
            f"(e.g. {bad[0]}); save the whole model with save_pretrained",
        )
    state = model.state_dict()
    report.n_parameters = sum(t.numel() for t in model.parameters())
    report.dtype = str(next(iter(state.values())).dtype).removeprefix("torch.")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # element-wise passes over small tensors: extra threads only contend
    try:
        for name, tensor in state.items():
            if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
                bad = int((~torch.isfinite(tensor)).sum())
                return _fail(
                    report,
                    "NON_FINITE_WEIGHTS",
                    f"{bad} non-finite value(s) (NaN/inf) in {name}: the training diverged; lower the learning "
                    "rate or clip gradients, and save only finite weights",
                )
        if distance:
            _distance(report, state, reference_dir)
            report.changed_files = changed_eval_files(out, reference_dir)
            report.unchanged = report.unchanged and not report.changed_files
    finally:
        torch.set_num_threads(threads)
    del model, state
    if report.unchanged:
        report.message = "unchanged: the checkpoint equals the input model (a no-op); still scored"
    elif report.max_abs_diff == 0.0 and report.changed_files:
        report.message = (
            f"valid (the weights equal the input model's; changed: {', '.join(report.changed_files)})"
        )
    else:
        report.message = "valid"
    return report


def _distance(report: CheckpointReport, state: dict, reference_dir: Path) -> None:
    import torch

    squared_delta = squared_ref = 0.0
    max_abs = 0.0
    compared = 0
    for name, ref in iter_tensors(Path(reference_dir)):
        mine = state.get(name)
        if mine is None or mine.shape != ref.shape or not ref.is_floating_point() or not ref.numel():
            continue
        compared += 1
        reference = ref.float()
        squared_ref += float(torch.linalg.vector_norm(reference)) ** 2
        if torch.equal(mine.detach().to(ref.dtype), ref):
            continue
        delta = mine.detach().float() - reference
        squared_delta += float(torch.linalg.vector_norm(delta)) ** 2
        max_abs = max(max_abs, float(delta.abs().max()))
    if compared == 0:
        return
    report.distance = math.sqrt(squared_delta / squared_ref) if squared_ref else math.sqrt(squared_delta)
    report.max_abs_diff = max_abs
    report.unchanged = max_abs == 0.0


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}"[:300]
