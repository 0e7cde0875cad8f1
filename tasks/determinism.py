"""Kernel and reproducibility settings that make a CPU run independent of the vector instruction set.

On x86_64 a float32 PyTorch run takes different code paths on different processors, and each path rounds
differently: ATen picks its vectorised kernels (softmax, log-softmax, SDPA attention, layer norm, SiLU,
``normal_`` initialisation, ...) by the CPU's best ISA (``ATEN_CPU_CAPABILITY`` overrides it), and MKL
picks its GEMM kernels by processor, vendor and cache sizes. Measured on an AVX-512 AMD EPYC with
torch 2.13 (README, "Which worlds are canonical"): the tiny world built under ATEN ``default``, ``avx2``
and native gives three different target models.

This module owns the fix, for any process that trains or scores on a CPU:

- `reproducible_cpu_env` gives the environment variables to set on a **child** before it imports torch:
  ATen's portable ``default`` kernels, MKL's ``COMPATIBLE`` CNR branch (the only branch MKL keeps on
  non-Intel CPUs: ``MKL_CBWR=AVX2`` silently falls back to ``AUTO`` on AMD), a fixed thread count,
  oneDNN limited to SSE4.1 with strict float math, and cuBLAS's deterministic workspace.
- `apply_in_process` applies what can still be applied inside a running interpreter (the same variables
  for the libraries that have not read them yet, threads, ``torch.use_deterministic_algorithms``, cuDNN
  and TF32 flags, oneDNN off) and returns `describe()`.
- `describe` says what is in effect (for a manifest); `problems` lists where that differs from the
  settings, so a child can refuse to run under the wrong kernels.

What these settings do not cover: aarch64 (ATen's ``default`` there is NEON code and there is no MKL),
another torch / MKL build, Intel processors (measured: an Intel Xeon with AMX trains another tiny world
than the AMD EPYC processors do under the same settings, cause not found; README, "Which worlds are
canonical"), and GPUs (deterministic algorithms make a GPU run repeatable on one GPU model,
not equal to a CPU run). This module imports neither harness nor leaderboard, and torch only when called.
"""

from __future__ import annotations

import ctypes
import os
import platform
from pathlib import Path

#: ATen's kernel set: ``default`` is compiled for the x86_64 baseline, so every x86_64 CPU runs it
CPU_CAPABILITY = "default"
#: MKL's conditional-numerical-reproducibility branch: SSE2 code, documented the same on Intel and AMD
MKL_BRANCH = "COMPATIBLE"
#: oneDNN's ISA ceiling (torch's float32 matmul goes to MKL, not oneDNN; this bounds any other use)
ONEDNN_ISA = "SSE41"
#: the branch numbers `mkl_cbwr_get` returns (oneMKL's MKL_CBWR_* constants)
_MKL_BRANCH_NAMES = {
    1: "OFF",
    2: "AUTO",
    3: "COMPATIBLE",
    4: "SSE2",
    6: "SSSE3",
    7: "SSE4_1",
    8: "SSE4_2",
    9: "AVX",
    10: "AVX2",
    12: "AVX512",
    14: "AVX512_E1",
}


def reproducible_cpu_env(threads: int = 1) -> dict[str, str]:
    """The environment variables that fix a child process's CPU kernels, to add to its environment.

    They must be in the child's environment before it imports torch (ATen reads ``ATEN_CPU_CAPABILITY``
    at its first kernel dispatch, MKL reads ``MKL_CBWR`` at its first call). ``threads`` is the thread
    count of every pool (OpenMP, MKL, OpenBLAS): reductions split by thread, so it is part of the result.
    The mapping is also what a run's manifest records as its kernel settings.
    """
    if not isinstance(threads, int) or isinstance(threads, bool) or threads < 1:
        raise ValueError(f"threads must be a positive integer, got {threads!r}")
    count = str(threads)
    return {
        "ATEN_CPU_CAPABILITY": CPU_CAPABILITY,
        "MKL_CBWR": MKL_BRANCH,
        "MKL_DYNAMIC": "FALSE",  # MKL may not pick fewer threads than asked
        "MKL_NUM_THREADS": count,
        "OMP_NUM_THREADS": count,
        "OPENBLAS_NUM_THREADS": count,
        "ONEDNN_MAX_CPU_ISA": ONEDNN_ISA,
        "DNNL_MAX_CPU_ISA": ONEDNN_ISA,  # the name older oneDNN builds read
        "ONEDNN_DEFAULT_FPMATH_MODE": "STRICT",  # no implicit bf16/tf32 down-conversion
        "CUBLAS_WORKSPACE_CONFIG": ":4096:8",  # required by deterministic cuBLAS on a GPU
        "TOKENIZERS_PARALLELISM": "false",
    }


def apply_in_process(threads: int = 1, warn_only: bool = True) -> dict[str, str | int | bool | None]:
    """Apply the settings inside this interpreter as far as it still can, and return `describe()`.

    Sets the variables of `reproducible_cpu_env` in ``os.environ`` (they take effect only for libraries
    that have not initialised yet: call this before the first tensor operation, or better, start the
    process with them), torch's intra-op threads, ``torch.use_deterministic_algorithms(True, warn_only=
    warn_only)`` (``warn_only`` keeps an op without a deterministic version running, with a warning),
    deterministic cuDNN without benchmarking, TF32 off, and oneDNN off (its kernels pick blockings by
    cache size). Whether ATen's kernels and MKL's branch really are the reproducible ones is in the
    returned description; `problems` turns it into a list of what is off.
    """
    os.environ.update(reproducible_cpu_env(threads))
    import torch

    torch.set_num_threads(threads)
    try:
        torch.set_num_interop_threads(threads)
    except RuntimeError:  # only possible before the first inter-op work; harmless when it is too late
        pass
    torch.use_deterministic_algorithms(True, warn_only=warn_only)
    torch.backends.cudnn.deterministic = True
    torch.backends.cudnn.benchmark = False
    torch.backends.cudnn.allow_tf32 = False
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.mkldnn.enabled = False
    return describe()


def _mkl_branch() -> str | None:
    """MKL's CNR branch in effect, asked from the MKL inside torch; None where it cannot be asked."""
    import torch

    library = Path(torch.__file__).parent / "lib" / "libtorch_cpu.so"
    try:
        getter = ctypes.CDLL(str(library)).mkl_serv_cbwr_get  # mkl_cbwr_get, as torch links MKL statically
    except (OSError, AttributeError):
        return None
    getter.restype, getter.argtypes = ctypes.c_int, [ctypes.c_int]
    code = getter(1) & 0xFFFF  # MKL_CBWR_BRANCH, without the STRICT flag (0x10000)
    return _MKL_BRANCH_NAMES.get(code, str(code))


def cpu_vendor() -> str | None:
    """The processor's vendor (``vendor_id`` in /proc/cpuinfo: GenuineIntel, AuthenticAMD); None where unknown."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as info:
            for line in info:
                key, _, value = line.partition(":")
                if key.strip() == "vendor_id":
                    return value.strip() or None
    except OSError:
        pass
    return None


def describe() -> dict[str, str | int | bool | None]:
    """What is in effect in this process: machine and processor vendor, torch version, ATen's kernel set,
    MKL's branch, threads and the deterministic-algorithms flag (a manifest's record of a run's kernel
    settings).

    Asking fixes ATen's kernel set for the rest of the process: call it after `apply_in_process`.
    """
    import torch

    return {
        "machine": platform.machine(),
        "vendor": cpu_vendor(),
        "torch": torch.__version__,
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "mkl_branch": _mkl_branch() if torch.backends.mkl.is_available() else None,
        "threads": torch.get_num_threads(),
        "deterministic_algorithms": torch.are_deterministic_algorithms_enabled(),
        "mkldnn_enabled": torch.backends.mkldnn.enabled,
    }


def problems(description: dict[str, str | int | bool | None], threads: int = 1) -> list[str]:
    """Where ``description`` (from `describe`) differs from the reproducible settings; empty when none."""
    found = []
    if description["machine"] not in ("x86_64", "AMD64"):
        found.append(f"machine {description['machine']}: the settings are made for x86_64")
    if str(description["cpu_capability"]).lower() != CPU_CAPABILITY:
        found.append(f"ATen kernels {description['cpu_capability']}, not {CPU_CAPABILITY}")
    if description["mkl_branch"] not in (None, MKL_BRANCH):
        found.append(f"MKL branch {description['mkl_branch']}, not {MKL_BRANCH}")
    if description["threads"] != threads:
        found.append(f"{description['threads']} threads, not {threads}")
    return found
