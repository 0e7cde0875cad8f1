"""The evaluation engine: batched, faithful inference for generations, answer NLL, MIA losses and MMLU.

`evaluate(checkpoint_dir, task, run_dir)` writes the official scorer's artifacts into ``run_dir`` and scores
them with harness.scoring. engine.py runs the stages; evaluator.py holds the evaluation object and its
verbs (generate, loss, choices; exact and fast); mia.py the MIA stage; the modules beside them each loop.
"""

from harness.inference.engine import EvalResult, evaluate
from harness.inference.evaluator import Evaluator, ExactEvaluator, FastEvaluator, make_evaluator

__all__ = ["EvalResult", "Evaluator", "ExactEvaluator", "FastEvaluator", "evaluate", "make_evaluator"]
