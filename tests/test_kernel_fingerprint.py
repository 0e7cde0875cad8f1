"""benchmarks/kernel_fingerprint.py: comparing two machines' fingerprints names the first op that differs."""

from __future__ import annotations

import copy
import importlib.util
import json
from pathlib import Path

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


def _module():
    spec = importlib.util.spec_from_file_location("kernel_fingerprint", BENCHMARKS / "kernel_fingerprint.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_a_comparison_names_the_groups_and_the_first_op_that_differ() -> None:
    fingerprint = _module()
    saved = json.loads((BENCHMARKS / "fingerprints" / "intel-xeon-amx-2026-12-04.json").read_text())
    assert saved["kernels"]["vendor"] == "GenuineIntel" and len(saved["step"]) > 1000
    assert fingerprint.compare(saved, saved) == [
        "sgemm: same",
        "init: same",
        "vml: same",
        "schedule: same",
        f"step: same ({len(saved['step'])} op outputs)",
    ]
    other = copy.deepcopy(saved)
    other["sgemm"][2] = "0" * 16
    other["vml"]["exp"] = "0" * 16
    other["step"][7][1] = "0" * 16
    other["step"][9][1] = "0" * 16
    lines = fingerprint.compare(saved, other)
    assert lines[0] == f"sgemm: differs in 1 of {len(saved['sgemm'])}" and lines[1] == "init: same"
    assert lines[2] == "vml: differs in exp"
    assert lines[3] == "schedule: same"
    assert lines[4] == f"step: first difference at op output 7 of {len(saved['step'])}: {saved['step'][7][0]}"
    older = copy.deepcopy(saved)
    older["kernels"]["python"] = "3.10.0"
    assert (
        fingerprint.compare(saved, older)[0]
        == f"settings differ: python {saved['kernels']['python']} here, 3.10.0 there"
    )
    shorter = copy.deepcopy(saved)
    shorter["step"] = shorter["step"][:-1]  # another op sequence (another torch or transformers)
    assert fingerprint.compare(saved, shorter)[4].startswith(
        f"step: first difference at op output {len(saved['step']) - 1}"
    )
