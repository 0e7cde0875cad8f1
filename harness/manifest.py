"""The manifest of a run: everything needed to trace a number on the board back to how it was made.

One JSON file per run directory (manifest.json, written atomically): the submission (sha256 and the
path of its copy), parameters, task, harness version and git sha, package versions, Python, device and
driver, seeds, timings per stage, budget used, peak memory, isolation mode, the evaluation's limit (a
partial evaluation) and the outcome.
"""

from __future__ import annotations

import json
import os
import platform
import shutil
import subprocess
import sys
from dataclasses import asdict, dataclass, field, fields
from functools import cache
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

from harness import __version__
from harness.files import write_text_atomic
from tasks.determinism import cpu_vendor
from tasks.spec import TaskSpec

MANIFEST_NAME = "manifest.json"
PACKAGES = (
    "torch",
    "transformers",
    "tokenizers",
    "safetensors",
    "datasets",
    "accelerate",
    "deepspeed",
    "peft",
    "bitsandbytes",
    "numpy",
    "pandas",
    "pyarrow",
    "rouge-score",
    "scikit-learn",
)


@dataclass
class Manifest:
    """Provenance of one run (serialised as manifest.json)."""

    run_id: str
    created_at: str
    status: str
    message: str
    submission: dict[str, Any]  # name, path, sha256, copy, siblings
    variant: str
    params: dict[str, Any]
    task: dict[str, Any]
    launcher: str
    processes: int
    isolation: str
    budget_s: float
    budget_used_s: float | None = None
    timings: dict[str, float] = field(default_factory=dict)
    peak_rss_mb: float | None = None
    peak_gpu_mb: float | None = None
    memory_cap_mb: float | None = None
    #: a partial evaluation (--limit N): rows per split, MIA documents per side, MMLU questions per subject;
    #: None: the whole scored data (the only comparable evaluation)
    limit: int | None = None
    seeds: dict[str, Any] = field(default_factory=dict)
    checkpoint: dict[str, Any] | None = None
    harness: dict[str, Any] = field(default_factory=dict)
    python: dict[str, str] = field(default_factory=dict)
    packages: dict[str, str | None] = field(default_factory=dict)
    device: dict[str, Any] = field(default_factory=dict)
    command: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    violations: list[str] = field(default_factory=list)
    returncode: int | None = None
    #: the child's kernel settings (tasks.determinism on CPU; {} when it ran with the machine's own kernels)
    kernels: dict[str, str] = field(default_factory=dict)
    #: what the isolation gave the child (harness.isolation.describe)
    isolation_detail: str = ""


def task_summary(task: TaskSpec) -> dict[str, Any]:
    """The task's spec as plain JSON (paths as strings)."""
    out: dict[str, Any] = {}
    for f in fields(task):
        value = getattr(task, f.name)
        out[f.name] = (
            str(value) if isinstance(value, Path) else list(value) if isinstance(value, tuple) else value
        )
    return out


@cache
def git_sha() -> str | None:
    """The harness checkout's commit (with '+dirty' when it has local changes); None outside git."""
    repo = Path(__file__).resolve().parents[1]
    if shutil.which("git") is None or not (repo / ".git").exists():
        return None
    try:
        sha = subprocess.run(
            ["git", "-C", str(repo), "rev-parse", "HEAD"],
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(repo), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            timeout=10,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return sha + ("+dirty" if dirty else "")


def package_versions() -> dict[str, str | None]:
    out: dict[str, str | None] = {}
    for name in PACKAGES:
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            out[name] = None
    return out


@cache
def device_info() -> dict[str, Any]:
    """CPU (with its vendor: a tiny world trained on an Intel processor is not the canonical one), and on
    CUDA the GPU names and driver version."""
    info: dict[str, Any] = {
        "platform": platform.platform(),
        "cpu": platform.processor() or platform.machine(),
        "cpu_vendor": cpu_vendor(),
    }
    info["cpu_count"] = os.cpu_count()
    try:
        import torch

        info["cuda"] = torch.cuda.is_available()
        if info["cuda"]:
            info["gpus"] = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
            info["cuda_version"] = torch.version.cuda
    except ImportError:
        info["cuda"] = False
    if info.get("cuda") and shutil.which("nvidia-smi"):
        try:
            driver = subprocess.run(
                ["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
                capture_output=True,
                text=True,
                timeout=20,
            ).stdout.split()
            info["driver"] = driver[0] if driver else None
        except (OSError, subprocess.SubprocessError):
            info["driver"] = None
    return info


def environment() -> dict[str, Any]:
    """The parts of the manifest that describe the machine and software, not the run."""
    return {
        "harness": {"version": __version__, "git_sha": git_sha()},
        "python": {
            "version": platform.python_version(),
            "implementation": platform.python_implementation(),
            "executable": sys.executable,
        },
        "packages": package_versions(),
        "device": device_info(),
    }


def write_manifest(run_dir: Path, manifest: Manifest) -> Path:
    """Write manifest.json into `run_dir` atomically; returns its path."""
    path = Path(run_dir) / MANIFEST_NAME
    write_text_atomic(path, json.dumps(asdict(manifest), indent=2, default=str) + "\n")
    return path
