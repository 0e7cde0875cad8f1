"""tasks.determinism: the child environment, what `apply_in_process` can and cannot still fix, and the
kernel differences the settings remove (each check in a fresh interpreter: the settings are read once).
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
from pathlib import Path

import pytest

from tasks.determinism import CPU_CAPABILITY, MKL_BRANCH, problems, reproducible_cpu_env

REPO = Path(__file__).resolve().parents[1]
x86_only = pytest.mark.skipif(platform.machine() != "x86_64", reason="the settings are made for x86_64")


def _python(code: str, env: dict[str, str] | None = None) -> dict:
    return _pythons([(code, env)])[0]


def _pythons(runs: list[tuple[str, dict[str, str] | None]]) -> list[dict]:
    """Each (code, extra environment) in its own interpreter, all at once; the last stdout line of each, as JSON."""
    base = {k: v for k, v in os.environ.items() if k not in reproducible_cpu_env()}
    children = [
        subprocess.Popen(
            [sys.executable, "-c", code],
            env={**base, **(env or {})},
            cwd=REPO,
            text=True,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )  # fmt: skip
        for code, env in runs
    ]
    results = []
    for child in children:
        out, err = child.communicate(timeout=600)
        assert child.returncode == 0, err
        results.append(json.loads(out.strip().splitlines()[-1]))
    return results


def test_the_child_environment_fixes_kernels_threads_and_libraries() -> None:
    env = reproducible_cpu_env(threads=2)
    assert env["ATEN_CPU_CAPABILITY"] == CPU_CAPABILITY == "default"
    assert env["MKL_CBWR"] == MKL_BRANCH == "COMPATIBLE"
    assert env["OMP_NUM_THREADS"] == env["MKL_NUM_THREADS"] == env["OPENBLAS_NUM_THREADS"] == "2"
    assert {"ONEDNN_MAX_CPU_ISA", "CUBLAS_WORKSPACE_CONFIG", "MKL_DYNAMIC"} <= set(env)
    assert all(isinstance(value, str) for value in env.values())
    for bad in (0, -1, 1.5, True, "1"):
        with pytest.raises(ValueError, match="threads"):
            reproducible_cpu_env(threads=bad)  # type: ignore[arg-type]


def test_problems_names_each_setting_that_is_off() -> None:
    good = {"machine": "x86_64", "cpu_capability": "DEFAULT", "mkl_branch": "COMPATIBLE", "threads": 1}
    assert problems(good) == []
    bad = {"machine": "aarch64", "cpu_capability": "AVX512", "mkl_branch": "AUTO", "threads": 2}
    found = problems(bad)
    assert len(found) == 4 and "aarch64" in found[0] and "AVX512" in found[1] and "AUTO" in found[2]


_LATE = """
import json, torch
torch.ones(4, 4) @ torch.ones(4, 4); torch.ones(3).exp()
from tasks.determinism import apply_in_process, problems
d = apply_in_process()
print(json.dumps({"d": d, "problems": problems(d)}))
"""


@x86_only
def test_apply_in_process_says_when_it_comes_too_late() -> None:
    late = _python(_LATE)
    if late["d"]["cpu_capability"] == "DEFAULT":
        pytest.skip("this CPU has no vector ISA beyond ATen's default")
    assert any("ATen kernels" in p for p in late["problems"]), late
    assert any("MKL branch" in p for p in late["problems"]) or late["d"]["mkl_branch"] is None, late


# softmax, SDPA attention, GEMM and normal_ initialisation: kernels measured to differ by ISA or MKL
# branch; the inputs come from NumPy, so only the kernels can differ
_KERNELS = """
import hashlib, json, numpy as np, torch
from tasks.determinism import apply_in_process, problems
d = apply_in_process() if {apply} else {{}}
x = torch.from_numpy(np.random.default_rng(0).standard_normal((2, 4, 64, 32)).astype(np.float32))
F = torch.nn.functional
outs = [torch.softmax(x, -1), F.scaled_dot_product_attention(x, x, x, is_causal=True), x @ x.transpose(-1, -2),
        torch.empty(1000).normal_(0, 0.02, generator=torch.Generator().manual_seed(0))]
print(json.dumps({{"cap": torch.backends.cpu.get_cpu_capability(), "problems": problems(d) if d else None,
                  "deterministic": torch.are_deterministic_algorithms_enabled(),
                  "h": [hashlib.sha256(o.numpy().tobytes()).hexdigest() for o in outs]}}))
"""


@x86_only
def test_the_settings_make_kernels_agree_across_isas_that_differ_without_them() -> None:
    capabilities = ({"ATEN_CPU_CAPABILITY": "default"}, {"ATEN_CPU_CAPABILITY": "avx2"}, {})
    runs = _pythons(
        [(_KERNELS.format(apply=False), env) for env in (capabilities[0], capabilities[2])]
        + [(_KERNELS.format(apply=True), env) for env in capabilities]
    )  # the five interpreters side by side: their results do not depend on the load
    plain, fixed = runs[:2], runs[2:]
    if len({run["cap"] for run in plain}) == 1:
        pytest.skip("this CPU has no vector ISA beyond ATen's default")
    # without the settings the ISAs give different bits (so the check below could fail) ...
    assert plain[0]["h"] != plain[1]["h"]
    # ... with them, the caller's capability (default, avx2, native) changes nothing
    assert [(run["cap"], run["problems"], run["deterministic"]) for run in fixed] == [
        ("DEFAULT", [], True)
    ] * 3
    assert len({tuple(run["h"]) for run in fixed}) == 1


def test_the_processor_vendor_is_read_from_cpuinfo(monkeypatch, tmp_path) -> None:
    import builtins

    from tasks import determinism

    info = tmp_path / "cpuinfo"
    info.write_text("processor\t: 0\nvendor_id\t: GenuineIntel\ncpu family\t: 6\n")
    real_open = builtins.open
    monkeypatch.setattr(
        builtins, "open", lambda path, *a, **k: real_open(info if path == "/proc/cpuinfo" else path, *a, **k)
    )
    assert determinism.cpu_vendor() == "GenuineIntel"
    info.write_text("processor\t: 0\n")
    assert determinism.cpu_vendor() is None
    monkeypatch.setattr(
        builtins, "open", lambda *a, **k: (_ for _ in ()).throw(FileNotFoundError("no /proc"))
    )
    assert determinism.cpu_vendor() is None
