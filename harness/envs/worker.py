"""The project's own worker, run by the official environment's interpreter (official.py).

    python -m harness.envs.worker REQUEST.json|- ANSWER.json [--quiet] [--background]

With ``-`` the request is read from stdin once the imports are done (a worker started ahead of its request).
``--background``: at the lowest CPU priority (os.nice), so that a worker started while a submission runs
takes only the CPU time nothing else wants.

Verbs (the request's "verb"):
- ``evaluate``: the exact path (the official one-row loops) of a checkpoint on a task, its MMLU and its
  scoring, into a run directory; answers the official results object.
- ``load``: whether a checkpoint loads with AutoTokenizer and AutoModelForCausalLM here; answers the
  first line of the error where it does not.
It imports only what runs under transformers 4.45.2 (the exact path, loading, scoring); the answer is
{"error": line} for a user's mistake, and a traceback on stderr for anything else.
"""

from __future__ import annotations

import json
import os
import sys
from dataclasses import fields
from pathlib import Path


def _task(fields_json: dict):
    from tasks.spec import PATH_FIELDS, TaskSpec

    values = {}
    for f in fields(TaskSpec):
        if f.name not in fields_json:
            continue
        value = fields_json[f.name]
        if f.name in PATH_FIELDS and value is not None:
            value = Path(value)
        elif f.name == "mmlu_subjects" and value is not None:
            value = tuple(value)
        values[f.name] = value
    return TaskSpec(**values)


def _evaluate(request: dict, progress: bool) -> dict:
    from harness.inference import evaluate

    result = evaluate(
        Path(request["checkpoint"]),
        _task(request["task"]),
        Path(request["run_dir"]),
        exact=True,
        device=request.get("device"),
        dtype=request.get("dtype"),
        use_cache=False,
        progress=progress,
        limit=request.get("limit"),
    )
    return {"results": result.scores.results(), "timings": result.timings}


def _load(request: dict) -> dict:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    checkpoint = request["checkpoint"]
    try:
        AutoTokenizer.from_pretrained(checkpoint)
        # in bfloat16, as the organisers' scorer loads it (official-scoring.md 2.2; half the memory of
        # float32), and without trust_remote_code: out/ is a submission's, and nothing in it is executed
        AutoModelForCausalLM.from_pretrained(checkpoint, torch_dtype=torch.bfloat16)
    except Exception as error:  # what the organisers' scorer would have hit: report it, never crash
        text = str(error).strip()
        return {"loads": False, "problem": f"{type(error).__name__}: {text.splitlines()[0] if text else ''}"}
    return {"loads": True}


def main(argv: list[str]) -> int:
    from harness.errors import HarnessError

    answer_path = Path(argv[1])
    if "--background" in argv and hasattr(os, "nice"):
        os.nice(19)
    # the imports first (seconds): a worker started ahead (official.WorkerHandle) pays them while its
    # caller is still busy, then waits on stdin for the request
    import torch  # noqa: F401
    import transformers
    from transformers import AutoModelForCausalLM, AutoTokenizer  # noqa: F401

    text = sys.stdin.read() if argv[0] == "-" else Path(argv[0]).read_text()
    if not text.strip():
        return 0  # the caller went away without a request (official.WorkerHandle.cancel)
    request = json.loads(text)
    try:
        verb = request["verb"]
        if verb == "evaluate":
            answer = _evaluate(request, progress="--quiet" not in argv)
        elif verb == "load":
            answer = _load(request)
        else:
            answer = {"error": f"unknown worker verb {verb!r}"}
    except HarnessError as error:
        answer = {"error": str(error)}
    answer["transformers"] = transformers.__version__
    answer_path.write_text(json.dumps(answer))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
