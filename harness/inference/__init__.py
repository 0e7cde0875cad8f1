"""The evaluation engine: batched, faithful inference for generations, answer NLL, MIA losses and MMLU.

`evaluate(checkpoint_dir, task, run_dir)` writes the official scorer's artifacts into ``run_dir`` and scores
them with harness.scoring; see engine.py for the stages and the modules beside it for each loop.
"""

from harness.inference.engine import EvalResult, evaluate

__all__ = ["EvalResult", "evaluate"]
