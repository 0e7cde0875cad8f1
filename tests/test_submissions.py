"""The reference submissions: shared pieces with hand-computed values, the contract, packing, and a short
run of every entry (full and 4-bit + LoRA modes) on the tiny world; deadline saving; torchrun with 2 CPU
processes.

Entries are called in-process with a handful of rows so that each trains for a few steps only.
"""

from __future__ import annotations

import importlib
import json
import math
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from mini_model import make_word_olmo

REPO = Path(__file__).resolve().parents[1]
SUBMISSIONS = REPO / "submissions"
if str(SUBMISSIONS) not in sys.path:
    sys.path.insert(0, str(SUBMISSIONS))

import unlearn_common as U  # noqa: E402

#: every reference entry (the unlearn_* files are shared sibling modules, not entries)
ENTRIES = sorted(p.stem for p in SUBMISSIONS.glob("*.py") if not p.stem.startswith(("unlearn_", "_")))
#: the seed paper's entries, which also have a 4-bit NF4 + LoRA mode
QUANTIZABLE = ("ga", "gd_retain", "grad_diff", "sequential")
#: parameters that keep each entry to a few steps on 8 + 8 rows
TINY = {
    "ga": {"epochs": 1},
    "gd_retain": {"epochs": 1},
    "grad_diff": {"epochs": 1},
    "sequential": {"phases": "ga:1e-4:1,gd:1e-4:1"},
    "kl": {"epochs": 1},
    "npo": {"epochs": 1},
    "sugd": {"chunk_size": 4, "retain_ratio": 1, "epochs_per_chunk": 1},
    "lora_npo": {"epochs": 1},
    "ties_merge": {"epochs": 1},
    "rmu": {"epochs": 1},
    "layer_gd": {"epochs": 2, "layers": "0"},
    "idk": {"epochs": 1},
}


def entry(name: str):
    return importlib.import_module(name)


# ------------------------------------------------------------------------------ a mini model and data


def make_mini_model(directory: Path) -> Path:
    """A random 2-layer OLMo with a word-level tokenizer (w0..w60), saved in `directory`."""
    return make_word_olmo(directory, hidden_size=32, intermediate_size=64, num_layers=2)


def write_rows(directory: Path, name: str, rows: list[dict], parquet: bool = False) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    if parquet:
        import pandas as pd

        pd.DataFrame(rows).to_parquet(directory / f"{name}.parquet")
    else:
        (directory / f"{name}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return directory


def mini_rows(prefix: str, n: int) -> list[dict]:
    return [
        {
            "id": f"{prefix}{i}qa0",
            "input": f"w{i} w{i + 1} w{i + 2}",
            "output": f"w{i + 3}",
            "task": f"Task{i % 3 + 1}",
        }
        for i in range(n)
    ]


@pytest.fixture(scope="module")
def mini(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("mini-world")
    return {
        "model": make_mini_model(root / "model"),
        "forget": write_rows(root / "forget", "forget", mini_rows("f", 8)),
        "retain": write_rows(root / "retain", "retain", mini_rows("r", 8), parquet=True),
    }


def weights(directory: Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    return load_file(directory / "model.safetensors")


def assert_checkpoint(out: Path, model_dir: Path) -> None:
    """Loadable with its tokenizer from the root of `out`, same vocabulary, finite, changed, no leftovers."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(out)
    assert len(AutoTokenizer.from_pretrained(out)) == len(AutoTokenizer.from_pretrained(model_dir))
    assert "quantization_config" not in json.loads((out / "config.json").read_text())
    assert all(torch.isfinite(p).all() for p in model.parameters())
    before, after = weights(model_dir), weights(out)
    assert before.keys() == after.keys()
    assert any(not torch.equal(before[k], after[k].to(before[k].dtype)) for k in before)
    assert [p.name for p in out.iterdir() if p.name.startswith(".")] == []


# ----------------------------------------------------------------------------------- shared pieces


def test_encode_row_labels_only_the_answer_and_eos(mini):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(mini["model"])
    example = U.encode_row(tok, {"input": "w1 w2", "output": "w3 w4", "task": "Task2"}, max_length=16)
    w = tok.convert_tokens_to_ids
    assert example.input_ids == [w("w1"), w("w2"), w("w3"), w("w4"), 1]
    assert example.labels == [-100, -100, w("w3"), w("w4"), 1]
    assert example.task == "Task2"
    cut = U.encode_row(tok, {"input": "w1 w2", "output": "w3 w4"}, max_length=4)  # prompt cut from the left
    assert cut.input_ids == [w("w2"), w("w3"), w("w4"), 1] and cut.labels[0] == -100


def test_collate_pads_right_and_masks():
    batch = U.collate([U.Example([5, 6, 7], [-100, 6, 7]), U.Example([8], [8], weight=-1.0)], pad_id=0)
    assert batch.input_ids.tolist() == [[5, 6, 7], [8, 0, 0]]
    assert batch.attention_mask.tolist() == [[1, 1, 1], [1, 0, 0]]
    assert batch.labels.tolist() == [[-100, 6, 7], [8, -100, -100]]
    assert batch.weights.tolist() == [1.0, -1.0]


def test_answer_nll_of_uniform_logits_is_log_vocab():
    batch = U.collate([U.Example([1, 2, 3, 4], [-100, -100, 3, 4]), U.Example([1, 2], [-100, 2])], pad_id=0)
    nll = U.answer_nll(torch.zeros(2, 4, 10), batch)
    assert nll.tolist() == pytest.approx([math.log(10), math.log(10)])
    logits = torch.full((1, 2, 3), -1e4)
    logits[0, 0, 2] = 0.0  # the model is sure of token 2 after token 1
    assert U.answer_nll(logits, U.collate([U.Example([1, 2], [-100, 2])], 0)).item() == pytest.approx(0.0)


def test_npo_and_kl_hand_values():
    # NPO at the reference: (2/beta)·log 2; far below it: near 0
    assert U.npo_loss(torch.tensor([-3.0]), torch.tensor([-3.0]), beta=0.5).item() == pytest.approx(
        4 * math.log(2)
    )
    assert U.npo_loss(torch.tensor([-50.0]), torch.tensor([0.0]), beta=0.5).item() < 1e-8
    mask = torch.tensor([[1.0, 0.0]])
    assert U.npo_loss(
        torch.tensor([[-3.0, 9.0]]), torch.tensor([[-3.0, 0.0]]), 0.5, mask
    ).item() == pytest.approx(4 * math.log(2))
    # KL(ref || cur) with ref = (1/2, 1/2), cur = (3/4, 1/4): 0.5·ln(4/3)
    cur = torch.tensor([[[math.log(3.0), 0.0], [5.0, 1.0]]])
    ref = torch.tensor([[[0.0, 0.0], [0.0, 0.0]]])
    kl = U.kl_to_reference(cur, ref, torch.tensor([[1, 0]]))
    assert kl.item() == pytest.approx(0.5 * math.log(4 / 3), abs=1e-6)
    assert U.kl_to_reference(ref, ref, torch.tensor([[1, 1]])).item() == pytest.approx(0.0, abs=1e-7)


def test_load_split_reads_jsonl_and_parquet_alike(tmp_path):
    rows = mini_rows("x", 3) + [{"id": "123qa0", "input": "Phone?", "output": "0123", "task": "Task3"}]
    a = U.load_split(write_rows(tmp_path / "a", "forget", rows), "forget")
    b = U.load_split(write_rows(tmp_path / "b", "forget", rows, parquet=True), "forget")
    assert a == b and [r["output"] for r in a] == ["w3", "w4", "w5", "0123"]  # strings stay strings
    with pytest.raises(FileNotFoundError, match="no retain.jsonl or retain.parquet"):
        U.load_split(tmp_path / "a", "retain")
    (tmp_path / "c").mkdir()
    (tmp_path / "c" / "retain.jsonl").write_text('{"id": "1", "input": "w1"}\n')
    with pytest.raises(ValueError, match=r"retain.jsonl: missing columns \['output'\]"):
        U.load_split(tmp_path / "c", "retain")


def test_save_atomically_writes_the_root_and_leaves_no_temp(mini, tmp_path):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(mini["model"])
    tok = AutoTokenizer.from_pretrained(mini["model"])
    out = tmp_path / "out"
    U.save_atomically(model, tok, out)
    with torch.no_grad():
        model.lm_head.weight.add_(1.0)
    U.save_atomically(model, tok, out)  # overwrite in place
    assert {"config.json", "model.safetensors", "tokenizer.json"} <= {p.name for p in out.iterdir()}
    assert [p for p in out.iterdir() if p.is_dir()] == []
    assert torch.equal(weights(out)["lm_head.weight"], model.lm_head.weight.detach())


def test_recipe_helpers_hand_values():
    seq, sugd, layer_gd = entry("sequential"), entry("sugd"), entry("layer_gd")
    assert seq.parse_phases("ga:1e-5:3, gd:2e-6:3,ga:2e-5:1") == [
        ("ga", 1e-5, 3),
        ("gd", 2e-6, 3),
        ("ga", 2e-5, 1),
    ]
    with pytest.raises(ValueError, match="'ascent:1:1' is not kind:lr:epochs"):
        seq.parse_phases("ascent:1:1")
    ordered, nxt = sugd.interleave(["f0", "f1"], ["r0", "r1", "r2"], 2, 2)
    assert ordered == ["f0", "r2", "r0", "f1", "r1", "r2"] and nxt == 6
    assert layer_gd.parse_layers("0-2,5") == [0, 1, 2, 5]
    assert layer_gd.retain_multiplier(1.0, None) == 1.2  # epoch 0
    assert layer_gd.retain_multiplier(0.9, 1.0) == 1.2  # below the baseline
    assert layer_gd.retain_multiplier(1.5, 1.0) == 1.5  # round(0.3·6^0.5 + 0.8, 1) = round(1.535, 1)
    assert layer_gd.retain_multiplier(3.0, 1.0) == 2.3  # clipped


# -------------------------------------------------------------------------------- contract and pack


@pytest.mark.parametrize("name", ENTRIES)
def test_entry_and_its_packed_file_pass_the_contract(name, tmp_path):
    from harness.contract import check_submission
    from harness.pack import pack

    report = check_submission(SUBMISSIONS / f"{name}.py")
    assert report.errors == []
    assert "unlearn_common" in report.siblings
    packed = pack(SUBMISSIONS / f"{name}.py", tmp_path / f"{name}_packed.py")
    assert packed.check.errors == []
    assert packed.check.siblings == {}


def test_packed_file_trains_to_the_same_weights(mini, tmp_path):
    from harness.pack import pack

    pack(SUBMISSIONS / "grad_diff.py", tmp_path / "packed" / "entry.py")
    original = weights(run_entry("grad_diff", mini, tmp_path / "out-original", epochs=1))
    driver = (
        "import importlib.util, sys\n"
        "spec = importlib.util.spec_from_file_location('entry', sys.argv[1])\n"
        "module = importlib.util.module_from_spec(spec); spec.loader.exec_module(module)\n"
        "module.unlearn(*sys.argv[2:6], epochs=1)\n"
    )
    out = tmp_path / "out-packed"
    args = [
        str(tmp_path / "packed" / "entry.py"),
        str(mini["model"]),
        str(out),
        str(mini["forget"]),
        str(mini["retain"]),
    ]
    env = {**os.environ, "PYTHONPATH": ""}  # run from a folder without the sibling modules
    subprocess.run(
        [sys.executable, "-c", driver, *args], check=True, cwd=tmp_path, env=env, capture_output=True
    )
    packed = weights(out)
    assert original.keys() == packed.keys()
    assert all(torch.equal(original[k], packed[k]) for k in original)


# ------------------------------------------------------------------------------ runs on the tiny world


@pytest.fixture(scope="module")
def tiny_dirs(tiny_world, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The tiny target with 8 forget and 8 retain rows (jsonl and parquet), spread over the tasks."""
    root = tmp_path_factory.mktemp("tiny-few")
    dirs = {"model": Path(tiny_world.model_dir)}
    for name, directory in (("forget", tiny_world.forget_dir), ("retain", tiny_world.retain_dir)):
        rows = U.load_split(directory, name)
        few = [rows[i] for i in range(0, len(rows), max(1, len(rows) // 8))][:8]
        dirs[name] = write_rows(root / name, name, few, parquet=name == "retain")
    return dirs


def run_entry(name: str, dirs: dict[str, Path], out: Path, **params) -> Path:
    entry(name).unlearn(str(dirs["model"]), str(out), str(dirs["forget"]), str(dirs["retain"]), **params)
    return out


@pytest.mark.parametrize("name", ENTRIES)
def test_entry_runs_on_the_tiny_world(name, tiny_dirs, tmp_path):
    from tasks.portable import portability_problems

    out = run_entry(name, tiny_dirs, tmp_path / "out", **TINY[name])
    assert_checkpoint(out, tiny_dirs["model"])
    # nothing the organisers' transformers 4.45.2 would refuse or misread (a saved entry loads there:
    # tests/test_official_env.py)
    assert portability_problems(out) == []


@pytest.mark.parametrize("name", QUANTIZABLE)
def test_entry_runs_in_4bit_lora_mode_and_saves_a_merged_model(name, tiny_dirs, tmp_path):
    pytest.importorskip("bitsandbytes")
    out = run_entry(name, tiny_dirs, tmp_path / "out", mode="lora4bit", **TINY[name])
    assert_checkpoint(out, tiny_dirs["model"])
    before, after = weights(tiny_dirs["model"]), weights(out)
    # only the LoRA-targeted linear layers move; embeddings and norms keep the base weights exactly
    assert torch.equal(before["model.embed_tokens.weight"], after["model.embed_tokens.weight"])
    assert not torch.equal(
        before["model.layers.0.mlp.down_proj.weight"], after["model.layers.0.mlp.down_proj.weight"]
    )


def test_layer_restricted_entries_only_touch_their_layers(tiny_dirs, tmp_path):
    before = weights(tiny_dirs["model"])
    after = weights(run_entry("layer_gd", tiny_dirs, tmp_path / "gd", **TINY["layer_gd"]))
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    assert changed and all(k.startswith("model.layers.0.mlp.") for k in changed)
    after = weights(run_entry("rmu", tiny_dirs, tmp_path / "rmu", epochs=1, layer=1))
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    assert changed and changed <= {f"model.layers.{i}.mlp.down_proj.weight" for i in (0, 1)}


# ------------------------------------------------------------------------------ deadline and torchrun


def test_saves_before_the_deadline(mini, tmp_path, monkeypatch):
    deadline = time.time() + 15
    monkeypatch.setenv("HARNESS_DEADLINE", str(deadline))
    out = tmp_path / "out"
    run_entry("ga", mini, out, epochs=100_000, batch_size=2)  # far more than fits: must stop and save
    assert_checkpoint(out, mini["model"])
    assert (out / "model.safetensors").stat().st_mtime <= deadline


def test_torchrun_two_cpu_processes_save_one_checkpoint(mini, tmp_path):
    driver = tmp_path / "driver.py"
    driver.write_text(
        f"import sys\nsys.path.insert(0, {str(SUBMISSIONS)!r})\nimport grad_diff\n"
        "grad_diff.unlearn(*sys.argv[1:5], epochs=2, batch_size=2)\n"
    )
    out = tmp_path / "out"
    args = [str(mini["model"]), str(out), str(mini["forget"]), str(mini["retain"])]
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc_per_node",
        "2",
        str(driver),
        *args,
    ]
    done = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "world=2" in done.stdout
    assert done.stdout.count("[unlearn] saved to") == 1  # rank 0 alone saves, once
    assert_checkpoint(out, mini["model"])
