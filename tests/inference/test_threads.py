"""The CPU threads of an in-process evaluation (harness/inference/threads.py): one for a small model, the
count UNLEARN_HARNESS_EVAL_THREADS names, torch's own elsewhere; and the outputs do not depend on it."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from harness.errors import HarnessError
from harness.inference import engine, evaluate, threads
from harness.inference.threads import THREADS_ENV, cpu_threads, eval_threads

CPU = torch.device("cpu")


def test_small_models_get_one_thread_and_the_variable_chooses(monkeypatch) -> None:
    small = torch.nn.Linear(10, 10)
    monkeypatch.delenv(THREADS_ENV, raising=False)
    assert eval_threads(small, CPU) == 1
    assert eval_threads(small, torch.device("cuda")) is None  # a GPU keeps torch's setting
    monkeypatch.setattr(threads, "SMALL_MODEL_PARAMETERS", 100)  # 110 parameters: not small any more
    assert eval_threads(small, CPU) is None
    monkeypatch.setenv(THREADS_ENV, "3")
    assert eval_threads(small, CPU) == 3
    for bad in ("0", "two", "-1"):
        monkeypatch.setenv(THREADS_ENV, bad)
        with pytest.raises(HarnessError, match=f"{THREADS_ENV}='{bad}': expected a positive number"):
            eval_threads(small, CPU)


def test_cpu_threads_sets_and_restores() -> None:
    before = torch.get_num_threads()
    with cpu_threads(None):
        assert torch.get_num_threads() == before
    with pytest.raises(RuntimeError), cpu_threads(before + 1):
        assert torch.get_num_threads() == before + 1
        raise RuntimeError("restored even so")
    assert torch.get_num_threads() == before


def test_the_tiny_evaluation_runs_on_one_thread_with_the_same_outputs(tiny_task, tmp_path: Path, monkeypatch):
    seen: list[int] = []
    stages = engine._run_stages

    def spy(*args, **kwargs):
        seen.append(torch.get_num_threads())
        return stages(*args, **kwargs)

    monkeypatch.setattr(engine, "_run_stages", spy)
    monkeypatch.delenv(THREADS_ENV, raising=False)
    with cpu_threads(2):
        evaluate(tiny_task.gold_model_dir, tiny_task, tmp_path / "auto", use_cache=False, progress=False)
        assert torch.get_num_threads() == 2  # the caller's setting is back
        monkeypatch.setenv(THREADS_ENV, "2")
        evaluate(tiny_task.gold_model_dir, tiny_task, tmp_path / "two", use_cache=False, progress=False)
    assert seen == [1, 2]
    files = sorted(p.relative_to(tmp_path / "auto") for p in (tmp_path / "auto").rglob("*") if p.is_file())
    assert len(files) > 5
    for name in files:  # every CSV, the results line, near_ties.json: byte for byte
        assert (tmp_path / "auto" / name).read_bytes() == (tmp_path / "two" / name).read_bytes(), name
