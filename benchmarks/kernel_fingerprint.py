"""A fingerprint of this machine's CPU kernels under the tiny world's fixed settings, to compare machines.

The canonical tiny world is reproduced on AMD processors and not on an Intel Xeon with AMX, under the same
kernel settings (README, "Which worlds are canonical"); the kernel that differs was not found, since no two
kinds of machine were at hand at once. This prints what each machine computes, so that one run on each
names it: in a child whose environment is `tasks.determinism.reproducible_cpu_env()` (as the tiny world's
trainer), on fixed inputs (NumPy's PCG64 streams and torch's seeded CPU generator, both the same on every
machine):

- ``sgemm``: MKL's float32 matrix products of the tiny model's shapes (forward and both gradients);
- ``vml``: the element-wise functions ATen hands to MKL's vector math (exp, log, tanh, sqrt) and those it
  computes itself (sin, cos, SiLU, softmax, layer norm);
- ``init``: a freshly initialised tiny OLMo's weights (torch's ``normal_`` under ATen's ``default``);
- ``schedule``: the tiny target's whole learning-rate schedule (OneCycleLR: Python floats, libm's double ``cos``);
- ``step``: two training steps of that model on a fixed batch, the sha256 of every floating-point tensor
  each ATen op returns (about 1,760 ops, in order: TorchDispatchMode).

The header names the Python, the torch build (git version, a hash of its build configuration) and the kernel
settings, which must agree before the rest means anything. ``--save FILE`` writes the fingerprint as JSON; ``--compare FILE`` prints, per group, whether this machine
agrees with the saved one and, for the training step, the first op whose output differs (the kernel to look
at). Run:

    python benchmarks/kernel_fingerprint.py [--save FILE] [--compare FILE] [--json]

A fingerprint of the Intel Xeon of 4 Dec 2026 (AMX; its tiny world is not the canonical one) is
benchmarks/fingerprints/intel-xeon-amx-2026-12-04.json: on an AMD processor, `--compare` it.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import platform
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def _sha(tensor) -> str:
    return hashlib.sha256(tensor.detach().contiguous().numpy().tobytes()).hexdigest()[:16]


def _group(hashes: list[str]) -> str:
    return hashlib.sha256("".join(hashes).encode()).hexdigest()[:16]


def fingerprint() -> dict:
    """The fingerprint, computed in this process (call it in a child under the fixed settings)."""
    from tasks.determinism import apply_in_process

    kernels = apply_in_process(1)
    import numpy as np
    import torch
    from torch.utils._python_dispatch import TorchDispatchMode
    from transformers import OlmoForCausalLM

    from tasks.tiny.build import SETTINGS
    from tasks.tiny.model import olmo_config
    from tasks.tiny.world import generate_world, training_texts

    rng = np.random.default_rng(0)

    def tensor(*shape):
        return torch.from_numpy(rng.standard_normal(shape, dtype=np.float32))

    sgemm = []
    for m, k, n in [(240, 128, 128), (240, 128, 512), (240, 512, 128), (240, 128, 1024), (60, 32, 32)]:
        a, b = tensor(m, k), tensor(k, n)
        sgemm += [_sha(a @ b), _sha(a.T.contiguous().T @ b), _sha((a @ b).T @ a)]
    x = tensor(1 << 16) * 4
    functions = {
        "exp": torch.exp(x / 4),
        "log": torch.log(x.abs() + 1e-3),
        "tanh": torch.tanh(x),
        "sqrt": torch.sqrt(x.abs()),
        "sin": torch.sin(x * 50),
        "cos": torch.cos(x * 50),
        "silu": torch.nn.functional.silu(x),
        "softmax": torch.softmax(x.view(256, 256), -1),
        "layer_norm": torch.nn.functional.layer_norm(x.view(512, 128), (128,)),
    }
    recipe = SETTINGS["tiny"]  # the tiny world's model and optimisation settings
    torch.manual_seed(0)
    config = olmo_config(recipe, recipe.vocab_size, 0, 1, 2)
    steps: list[list[str]] = []

    class Trace(TorchDispatchMode):
        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            out = func(*args, **(kwargs or {}))
            for t in out if isinstance(out, (tuple, list)) else [out]:
                if isinstance(t, torch.Tensor) and t.is_floating_point():
                    steps.append([str(func), _sha(t)])
            return out

    model = OlmoForCausalLM(config)
    init = [_sha(p) for _, p in sorted(model.named_parameters())]
    # the learning rates of the target's whole schedule (Python floats: libm's double cos)
    texts = training_texts(generate_world(0, "tiny"), include_forget=True)
    total = recipe.epochs * math.ceil(len(texts) / recipe.batch_size)
    probe = torch.optim.AdamW([torch.nn.Parameter(torch.zeros(1))], lr=recipe.peak_lr)
    schedule = torch.optim.lr_scheduler.OneCycleLR(
        probe, max_lr=recipe.peak_lr, total_steps=total, pct_start=recipe.warmup
    )
    rates = []
    for _ in range(total - 1):
        probe.step()
        schedule.step()
        rates.append(probe.param_groups[0]["lr"].hex())
    rates_hash = hashlib.sha256("".join(rates).encode()).hexdigest()[:16]
    optimizer = torch.optim.AdamW(model.parameters(), lr=recipe.peak_lr, betas=(0.9, 0.95), weight_decay=0.0)
    ids = torch.from_numpy(rng.integers(3, 1024, (4, 60)))
    mask = torch.ones_like(ids)
    mask[0, 50:], mask[1, 40:] = 0, 0
    labels = ids.masked_fill(mask == 0, -100)
    with Trace():
        for _ in range(2):
            loss = model(input_ids=ids, attention_mask=mask, labels=labels).loss
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
    return {
        "kernels": {
            **kernels,
            "python": platform.python_version(),
            "torch_git": torch.version.git_version,
            "torch_config": hashlib.sha256(torch.__config__.show().encode()).hexdigest()[:16],
        },
        "schedule": rates_hash,
        "sgemm": sgemm,
        "vml": {name: _sha(value) for name, value in functions.items()},
        "init": init,
        "step": steps,
        "summary": {
            "sgemm": _group(sgemm),
            "vml": _group([_sha(v) for v in functions.values()]),
            "init": _group(init),
            "step": _group([h for _, h in steps]),
            "schedule": rates_hash,
        },
    }


def _in_child() -> dict:
    from tasks.determinism import reproducible_cpu_env

    env = {**os.environ, **reproducible_cpu_env(1), "HF_HUB_OFFLINE": "1"}
    child = subprocess.run(
        [sys.executable, __file__, "--child"], env=env, cwd=REPO, capture_output=True, text=True, check=False
    )
    if child.returncode != 0:
        raise SystemExit(f"kernel_fingerprint: the child failed: {child.stderr.strip()[-2000:]}")
    return json.loads(child.stdout.strip().splitlines()[-1])


def compare(mine: dict, theirs: dict) -> list[str]:
    """One line per group: the same, or where it differs first; first, the settings that differ."""
    header = ("python", "torch", "torch_git", "torch_config", "cpu_capability", "mkl_branch", "threads")
    mine_k, theirs_k = mine["kernels"], theirs["kernels"]
    lines = [
        f"settings differ: {key} {mine_k.get(key)} here, {theirs_k.get(key)} there"
        for key in header
        if mine_k.get(key) != theirs_k.get(key)
    ]
    for group in ("sgemm", "init"):
        differ = [i for i, (a, b) in enumerate(zip(mine[group], theirs[group])) if a != b]
        lines.append(
            f"{group}: " + ("same" if not differ else f"differs in {len(differ)} of {len(mine[group])}")
        )
    vml = [name for name in mine["vml"] if mine["vml"][name] != theirs["vml"].get(name)]
    lines.append("vml: " + ("same" if not vml else "differs in " + ", ".join(vml)))
    lines.append("schedule: " + ("same" if mine["schedule"] == theirs["schedule"] else "differs"))
    first = next(
        (i for i, (a, b) in enumerate(zip(mine["step"], theirs["step"])) if a != b),
        None if len(mine["step"]) == len(theirs["step"]) else min(len(mine["step"]), len(theirs["step"])),
    )
    if first is None:
        lines.append(f"step: same ({len(mine['step'])} op outputs)")
    else:
        op = mine["step"][first][0] if first < len(mine["step"]) else "(end)"
        lines.append(f"step: first difference at op output {first} of {len(mine['step'])}: {op}")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--save", type=Path, help="write this machine's fingerprint as JSON")
    parser.add_argument("--compare", type=Path, help="compare with a saved fingerprint")
    parser.add_argument("--json", action="store_true", help="print the whole fingerprint as JSON")
    args = parser.parse_args()
    if args.child:
        print(json.dumps(fingerprint()))
        return
    found = _in_child()
    if args.json:
        print(json.dumps(found, indent=1))
    else:
        k = found["kernels"]
        print(
            f"machine {k['machine']} {k.get('vendor')}, torch {k['torch']}, ATen {k['cpu_capability']}, "
            f"MKL {k['mkl_branch']}, {k['threads']} thread(s)"
        )
        print("summary: " + ", ".join(f"{g} {h}" for g, h in found["summary"].items()))
    if args.save:
        args.save.parent.mkdir(parents=True, exist_ok=True)
        args.save.write_text(json.dumps(found) + "\n", encoding="utf-8")
    if args.compare:
        for line in compare(found, json.loads(args.compare.read_text(encoding="utf-8"))):
            print(line)


if __name__ == "__main__":
    main()
