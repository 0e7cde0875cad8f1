"""The SemEval-2025 Task 4 unlearning harness: run, validate and score submissions like the organisers."""

__version__ = "0.1.0"
