"""The CPU threads an in-process evaluation runs with.

A small model gains little from a second intra-op thread and loses much when another process holds a
core: every operation then waits at OpenMP's barrier for the thread the scheduler has set aside.
`benchmarks/eval_threads.py` (the tiny task, 2 cores, `evaluate` of the target / gold model, float32):
0.131 / 0.212 s on two threads and 0.191 / 0.266 s on one when the machine is free; with the other core
busy, 0.391 / 0.844 s on two and 0.180 / 0.289 s on one. The outputs do not depend on the count (every
file byte-identical on one and two threads, float32 and bfloat16, target and gold). So a CPU evaluation
of a model below `SMALL_MODEL_PARAMETERS` runs on one thread; larger models and GPUs keep torch's
setting. ``UNLEARN_HARNESS_EVAL_THREADS=N`` chooses N for every CPU evaluation. This module runs under
transformers 4.45.2 too (the official environment's worker).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager

import torch

from harness.errors import HarnessError

THREADS_ENV = "UNLEARN_HARNESS_EVAL_THREADS"
#: below this many parameters a CPU evaluation runs on one thread (the tiny world's models have ~1M)
SMALL_MODEL_PARAMETERS = 10_000_000


def eval_threads(model: torch.nn.Module, device: torch.device) -> int | None:
    """The intra-op threads to evaluate ``model`` on ``device`` with: UNLEARN_HARNESS_EVAL_THREADS where
    set, else 1 for a model below SMALL_MODEL_PARAMETERS on a CPU; None leaves torch's setting."""
    if device.type != "cpu":
        return None
    given = os.environ.get(THREADS_ENV, "").strip()
    if given:
        if not given.isdigit() or int(given) < 1:
            raise HarnessError(f"{THREADS_ENV}={given!r}: expected a positive number of threads")
        return int(given)
    return 1 if sum(p.numel() for p in model.parameters()) < SMALL_MODEL_PARAMETERS else None


@contextmanager
def cpu_threads(count: int | None) -> Iterator[None]:
    """torch's intra-op threads set to ``count`` inside the block (None: unchanged), restored after."""
    before = torch.get_num_threads()
    if count is not None and count != before:
        torch.set_num_threads(count)
    try:
        yield
    finally:
        if torch.get_num_threads() != before:
            torch.set_num_threads(before)
