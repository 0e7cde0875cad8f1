"""The status taxonomy of a run, in one place: what each status means and which ones are scored.

The runner assigns them, the store keeps them as their text, the board ranks the scored ones.
"""

from __future__ import annotations

from enum import Enum


class Status(str, Enum):
    """How a run ended. Compares equal to its text ("OK" == Status.OK), which is what the store keeps."""

    OK = "OK"
    SALVAGED = "SALVAGED"
    TIMEOUT = "TIMEOUT"
    IMPORT_ERROR = "IMPORT_ERROR"
    SIGNATURE_MISMATCH = "SIGNATURE_MISMATCH"
    CRASHED = "CRASHED"
    OUT_OF_MEMORY = "OUT_OF_MEMORY"
    NO_CHECKPOINT = "NO_CHECKPOINT"
    INVALID_CHECKPOINT = "INVALID_CHECKPOINT"
    NON_FINITE_WEIGHTS = "NON_FINITE_WEIGHTS"
    SANDBOX_VIOLATION = "SANDBOX_VIOLATION"
    EVAL_ERROR = "EVAL_ERROR"

    __str__ = str.__str__
    __format__ = str.__format__

    @property
    def description(self) -> str:
        return DESCRIPTIONS[self]

    @property
    def scored(self) -> bool:
        return self in SCORED


DESCRIPTIONS: dict[Status, str] = {
    Status.OK: "the checkpoint is valid and was scored",
    Status.SALVAGED: "the budget ran out, but the last checkpoint in out/ was valid and was scored (as the organisers did)",
    Status.TIMEOUT: "the budget ran out and nothing valid was saved: an official attempt would score nothing",
    Status.IMPORT_ERROR: "the submission file fails to import (syntax error, missing package, error at import time)",
    Status.SIGNATURE_MISMATCH: "unlearn() cannot be called the official way (missing, wrong order, extra parameter without default)",
    Status.CRASHED: "unlearn() raised an exception or the process died",
    Status.OUT_OF_MEMORY: "the run ran out of memory (MemoryError, CUDA OOM, the memory cap or the OOM killer)",
    Status.NO_CHECKPOINT: "unlearn() returned but left nothing loadable in the output directory",
    Status.INVALID_CHECKPOINT: "the output cannot be scored as is (adapter only, no tokenizer, subfolder, incomplete shards, links out of out/, other architecture)",
    Status.NON_FINITE_WEIGHTS: "the saved weights contain NaN or inf",
    Status.SANDBOX_VIOLATION: "the submission failed after trying to use the network or read task data it was not given",
    Status.EVAL_ERROR: "the checkpoint passed validation but the evaluation failed",
}  # fmt: skip
#: the statuses whose checkpoint is scored
SCORED = (Status.OK, Status.SALVAGED)
