"""Official scoring of SemEval-2025 Task 4 (V3, with V1/V2 as legacy switches)."""
