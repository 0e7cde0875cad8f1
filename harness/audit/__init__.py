"""Robustness audit of an unlearned checkpoint: is the forget set forgotten, or only hidden?

One module per attack (quantize, relearn, probes, mia_panel, extraction), each a function from a
checkpoint and a task to a small typed result; `audit()` (core.py) runs them, computes the headline
"robust forget" and writes audit.json into the run directory.
"""

from harness.audit.core import ATTACKS, AuditResult, audit, bootstrap_forget, write_audit

__all__ = ["ATTACKS", "AuditResult", "audit", "bootstrap_forget", "write_audit"]
