"""Reading task data and describing tasks: the real SemEval-2025 Task 4 tasks and the embedded tiny world."""
