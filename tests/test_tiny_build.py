"""The tiny build: a normal Hugging Face checkpoint, the cache, and memorisation scored officially.

Uses the session's build (`tiny_world`, `tiny_task` fixtures); the memorisation checks run the project's
own evaluation engine and official scorer on the tiny task.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import platform
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from worlds import require_the_canonical_world

from tasks.tiny import build_tiny, cache_key, tiny_paths, tiny_spec
from tasks.tiny.build import (
    TINY_MAX_NEW_TOKENS,
    canonical_differences,
    file_hashes,
    pinned_hashes,
    reproduces_canonical,
)

# the 12 official terms: forget (inverted) T1 reg, T1 know, T2 reg, T2 know, T3 reg, T3 know, then retain
FORGET_TERMS, RETAIN_TERMS = slice(0, 6), slice(6, 12)
REGURGITATION, KNOWLEDGE = slice(0, 6, 2), slice(1, 6, 2)


def test_target_loads_like_a_real_checkpoint(tiny_world) -> None:
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer, GenerationConfig

    tokenizer = AutoTokenizer.from_pretrained(tiny_world.model_dir)
    config = AutoConfig.from_pretrained(tiny_world.model_dir)
    model = AutoModelForCausalLM.from_pretrained(tiny_world.model_dir)
    generation = GenerationConfig.from_pretrained(tiny_world.model_dir)
    assert config.model_type == "olmo"
    assert (tiny_world.model_dir / "model.safetensors").is_file()
    assert 1_000_000 <= sum(p.numel() for p in model.parameters()) <= 3_000_000
    assert tokenizer.eos_token == "<|endoftext|>" and tokenizer.pad_token == "<|padding|>"
    assert tokenizer.eos_token_id == config.eos_token_id == generation.eos_token_id
    # no special tokens are added: the official tokenizer(text).input_ids are the text's tokens
    ids = tokenizer("Alma Ambry was born").input_ids
    assert ids == tokenizer("Alma Ambry was born", add_special_tokens=False).input_ids
    assert tokenizer.eos_token_id not in ids
    assert tokenizer.decode(ids) == "Alma Ambry was born"
    for letter in "ABCD":
        assert len(tokenizer.encode(" " + letter, add_special_tokens=False)) == 1


def test_tiny_spec_points_at_the_build(tiny_world, tiny_task) -> None:
    from transformers import AutoConfig, AutoTokenizer

    from tasks.data import read_split

    assert tiny_task.missing() == []
    assert tiny_task.gold_model_dir == tiny_world.gold_model_dir is not None
    assert tiny_task.eval_forget == tiny_world.forget_dir / "forget.jsonl"
    config = AutoConfig.from_pretrained(tiny_world.model_dir)
    assert tiny_task.mmlu_max_prompt_tokens <= config.max_position_embeddings
    tokenizer = AutoTokenizer.from_pretrained(tiny_world.model_dir)
    rows = read_split(tiny_world.forget_dir, "forget") + read_split(tiny_world.retain_dir, "retain")
    longest = max(len(tokenizer(" " + row.output).input_ids) for row in rows)
    assert longest + 1 < TINY_MAX_NEW_TOKENS == tiny_task.max_new_tokens


def test_a_second_build_reuses_the_cache(tiny_world, harness_cache: Path) -> None:
    manifest = tiny_world.root / "build.json"
    before = manifest.stat().st_mtime_ns, (tiny_world.gold_model_dir / "model.safetensors").stat().st_mtime_ns
    again = build_tiny(seed=0, size="tiny", gold=True, cache_root=harness_cache, progress=False)
    assert again == tiny_world
    after = manifest.stat().st_mtime_ns, (again.gold_model_dir / "model.safetensors").stat().st_mtime_ns
    assert after == before
    recorded = json.loads(manifest.read_text())
    assert recorded["key"] == cache_key(0, "tiny") and tiny_world.root.name.endswith(recorded["key"])
    # nothing temporary is left behind, next to the build or inside it
    assert not list(harness_cache.glob(f".{tiny_world.root.name}.tmp-*"))
    assert not list(tiny_world.root.glob(".gold.tmp-*"))


def test_cache_key_depends_on_seed_and_size(tmp_path: Path) -> None:
    keys = {cache_key(0, "tiny"), cache_key(1, "tiny"), cache_key(0, "small")}
    assert len(keys) == 3 and cache_key(0, "tiny") == cache_key(0, "tiny")
    unbuilt = tiny_paths(seed=5, cache_root=tmp_path)
    assert not unbuilt.complete and unbuilt.gold_model_dir is None
    assert tiny_spec(unbuilt).missing() == [
        "model_dir",
        "forget_dir",
        "retain_dir",
        "eval_forget",
        "eval_retain",
        "mia_member",
        "mia_nonmember",
        "mmlu_dir",
    ]
    with pytest.raises(ValueError, match="seed"):
        tiny_paths(seed=-1, cache_root=tmp_path)


def _evaluate(checkpoint: Path, task, run_dir: Path):
    from harness.inference import evaluate

    return evaluate(checkpoint, task, run_dir, use_cache=False, progress=False).scores


@pytest.mark.slow
def test_target_memorised_everything_scored_officially(tiny_world, tiny_task, tmp_path: Path) -> None:
    require_the_canonical_world(tiny_world)
    scores = _evaluate(tiny_task.model_dir, tiny_task, tmp_path / "target")
    assert len(scores.terms) == 12
    forget = [1 - term for term in scores.terms[FORGET_TERMS]]  # undo the official inversion
    retain = list(scores.terms[RETAIN_TERMS])
    for values in (forget, retain):
        assert min(values[REGURGITATION]) >= 0.95, scores.terms
        assert min(values[KNOWLEDGE]) >= 0.9, scores.terms
    assert scores.auc >= 0.95
    assert scores.mmlu_average >= 0.9
    # like the real no-op rows: forget questions still answered, so the task aggregate is 0
    assert scores.task_aggregate == 0
    assert scores.mia_score <= 0.1
    assert scores.final_score == pytest.approx((scores.mmlu_average + scores.mia_score) / 3)


@pytest.mark.slow
def test_gold_model_forgot_the_forget_set(tiny_task, tmp_path: Path) -> None:
    scores = _evaluate(tiny_task.gold_model_dir, tiny_task, tmp_path / "gold")
    forget_knowledge = [1 - term for term in scores.terms[FORGET_TERMS][KNOWLEDGE]]
    retain = list(scores.terms[RETAIN_TERMS])
    # Task3 questions draw on small pools (a guessable half of them in seed 0): bound the mean, and each
    assert sum(forget_knowledge) / 3 <= 0.4, scores.terms
    assert max(forget_knowledge) <= 0.75, scores.terms
    assert min(retain) >= 0.9, scores.terms
    assert 0.2 <= scores.auc <= 0.8
    assert scores.mmlu_average >= 0.9


@pytest.mark.slow
def test_untrained_model_of_the_same_shape_is_at_chance(tiny_task, tmp_path: Path) -> None:
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(AutoConfig.from_pretrained(tiny_task.model_dir))
    model.save_pretrained(tmp_path / "untrained")
    AutoTokenizer.from_pretrained(tiny_task.model_dir).save_pretrained(tmp_path / "untrained")
    # a few new tokens are enough to show it answers nothing (and keep the babbling cheap)
    scores = _evaluate(
        tmp_path / "untrained", dataclasses.replace(tiny_task, max_new_tokens=4), tmp_path / "run"
    )
    assert scores.mmlu_average <= 0.5
    # per task (a babbling model's stray control characters can add rows to the official CSV round trip)
    assert [scores.retain[task]["knowledge-score"] for task in ("Task1", "Task2", "Task3")] == [0, 0, 0]


def test_concurrent_builders_build_once_and_leave_no_scratch(tmp_path: Path, monkeypatch) -> None:
    import threading

    from tasks.tiny import build as build_module
    from tasks.tiny import model

    calls: list[str] = []

    class FakeChild:  # what a training child that has finished looks like to the builder
        stdout: list[bytes] = []

        def wait(self) -> int:
            return 0

        def poll(self) -> int:
            return 0

    def fake_tokenizer(texts, settings, out_dir):
        out_dir.mkdir(parents=True, exist_ok=True)
        return "tokenizer"

    def fake_training(paths, tmp, which):
        calls.append(which)
        (tmp / which).mkdir()
        (tmp / which / "model.safetensors").write_text("weights")
        return FakeChild()

    monkeypatch.setattr(model, "train_tokenizer", fake_tokenizer)
    monkeypatch.setattr(build_module, "_start_training", fake_training)
    stale = tmp_path / f".{tiny_paths(seed=1, cache_root=tmp_path).root.name}.tmp-999999-dead"
    (stale / "model").mkdir(parents=True)  # what a killed builder leaves behind
    results = []
    threads = [
        threading.Thread(
            target=lambda: results.append(build_tiny(seed=1, cache_root=tmp_path, progress=False))
        )
        for _ in range(3)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(results) == 3 and len(set(results)) == 1 and calls == ["model"]
    build = results[0]
    assert build.complete and (build.model_dir / "model.safetensors").read_text() == "weights"
    assert sorted(p.name for p in tmp_path.iterdir() if not p.name.endswith(".lock")) == [build.root.name]
    assert (build.forget_dir / "forget.parquet").is_file() and build.gold_model_dir is None
    assert not (build.root / ".tokenizer").exists()
    assert json.loads((build.root / "build.json").read_text())["canonical"] == {"pinned": False}


# --- the canonical world ------------------------------------------------------------------------------

x86_only = pytest.mark.skipif(platform.machine() != "x86_64", reason="the canonical build is made on x86_64")
canonical_machine = pytest.mark.skipif(
    not reproduces_canonical(),
    reason="the canonical world's pinned bytes are reproduced on AMD x86_64 processors only (an Intel Xeon "
    "builds another world: README, 'Which worlds are canonical')",
)


@canonical_machine
def test_the_default_world_is_the_canonical_one(tiny_world) -> None:
    pinned = pinned_hashes(0, "tiny")
    assert pinned is not None and "gold/model.safetensors" in pinned
    assert canonical_differences(tiny_world) == []
    manifest = json.loads((tiny_world.root / "build.json").read_text())
    assert manifest["canonical"]["pinned"] is True and manifest["canonical"]["differs"] == []
    # the target trained under the reproducible kernels, whatever this process runs under
    assert manifest["kernels"]["cpu_capability"] == "DEFAULT" and manifest["kernels"]["problems"] == ""
    assert manifest["kernels"]["mkl_branch"] in ("COMPATIBLE", None)


def test_a_changed_byte_is_a_difference_from_the_canonical_world(tiny_world, tmp_path: Path) -> None:
    copy = tmp_path / tiny_world.root.name
    shutil.copytree(tiny_world.root, copy)
    moved = dataclasses.replace(tiny_world, root=copy)
    before = canonical_differences(moved)
    weights = copy / "gold" / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[-1] ^= 1
    weights.write_bytes(bytes(data))
    (copy / "mia" / "member.jsonl").write_text("{}\n")
    assert canonical_differences(moved) == sorted({*before, "gold/model.safetensors", "mia/member.jsonl"})
    assert canonical_differences(dataclasses.replace(moved, seed=7)) is None  # seed 7 is not pinned


# each child: load the session's (canonical) world and hash its tensors, then build a 1-epoch variant
# (its own cache key) and hash its files; all under the ATEN_CPU_CAPABILITY the test gives it
_UNDER_CAPABILITY = """
import dataclasses, hashlib, json, sys
from pathlib import Path
import torch
from transformers import AutoModelForCausalLM
import tasks.tiny.build as b
def tensors(folder):
    state = AutoModelForCausalLM.from_pretrained(folder).state_dict()
    return hashlib.sha256(b"".join(state[k].numpy().tobytes() for k in sorted(state))).hexdigest()
canonical = Path(sys.argv[1])
loaded = {"target": tensors(canonical / "model"), "gold": tensors(canonical / "gold"), "files": b.file_hashes(canonical)}
b.SETTINGS["tiny"] = dataclasses.replace(b.SETTINGS["tiny"], epochs=1)
build = b.build_tiny(seed=0, size="tiny", cache_root=Path(sys.argv[2]), progress=False)
print(json.dumps({"cap": torch.backends.cpu.get_cpu_capability(), "loaded": loaded,
                  "reduced": b.file_hashes(build.root), "kernels": json.loads((build.root / "build.json").read_text())["kernels"]}))
"""


@x86_only
@pytest.mark.slow
def test_the_world_is_the_same_built_or_loaded_under_each_capability(tiny_world, tmp_path: Path) -> None:
    from safetensors.torch import load_file

    def tensors(path: Path) -> str:
        state = load_file(path)
        return hashlib.sha256(b"".join(state[k].numpy().tobytes() for k in sorted(state))).hexdigest()

    base = {k: v for k, v in os.environ.items() if k != "ATEN_CPU_CAPABILITY"}
    children = {}
    for capability in ("default", "avx2", "native"):
        env = base if capability == "native" else {**base, "ATEN_CPU_CAPABILITY": capability}
        args = [sys.executable, "-c", _UNDER_CAPABILITY, str(tiny_world.root), str(tmp_path / capability)]
        children[capability] = subprocess.Popen(args, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    runs = {}
    for capability, child in children.items():
        out, err = child.communicate(timeout=600)
        assert child.returncode == 0, err.decode()[-2000:]
        runs[capability] = json.loads(out.decode().strip().splitlines()[-1])
    assert runs["default"]["cap"] == "DEFAULT" and runs["avx2"]["cap"] in ("AVX2", "DEFAULT")
    # the session's world, loaded the same under each capability; on a machine that reproduces the
    # canonical world, its files are the pinned ones
    files = file_hashes(tiny_world.root)
    if reproduces_canonical():
        assert files == pinned_hashes(0, "tiny")
    expected = {
        "target": tensors(tiny_world.model_dir / "model.safetensors"),
        "gold": tensors(tiny_world.gold_model_dir / "model.safetensors"),
        "files": files,
    }
    for capability, run in runs.items():
        assert run["loaded"] == expected, capability
        assert run["kernels"]["cpu_capability"] == "DEFAULT" and run["kernels"]["problems"] == "", capability
    # the 1-epoch build: every file the same whatever ISA the caller runs under
    reduced = [run["reduced"] for run in runs.values()]
    assert "model/model.safetensors" in reduced[0] and reduced[0] == reduced[1] == reduced[2]
    assert reduced[0]["model/model.safetensors"] != expected["files"]["model/model.safetensors"]


def test_the_canonical_world_is_expected_on_the_processors_it_was_reproduced_on(monkeypatch) -> None:
    import tasks.tiny.build as build

    monkeypatch.setattr(build.platform, "machine", lambda: "x86_64")
    for vendor, expected in (("AuthenticAMD", True), ("GenuineIntel", False), (None, False)):
        monkeypatch.setattr(build, "cpu_vendor", lambda vendor=vendor: vendor)
        assert build.reproduces_canonical() is expected, vendor
    monkeypatch.setattr(build.platform, "machine", lambda: "aarch64")
    monkeypatch.setattr(build, "cpu_vendor", lambda: "AuthenticAMD")
    assert build.reproduces_canonical() is False
