"""Checkpoint validation on a tiny random model: each defect gets its status and a message saying the fix."""

from __future__ import annotations

import hashlib
import json
import math
import shutil
from pathlib import Path

import pytest
from test_runner import make_model

from harness.checkpoint import checkpoint_hash, validate


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_model(tmp_path_factory.mktemp("reference") / "model")


@pytest.fixture
def out(reference: Path, tmp_path: Path) -> Path:
    """A fresh copy of the reference model, as a submission that changed nothing would leave it."""
    target = tmp_path / "out"
    shutil.copytree(reference, target)
    return target


def resave(out: Path, edit) -> None:
    """Load out/ with safetensors, apply `edit(state)`, save it back."""
    from safetensors.torch import load_file, save_file

    state = load_file(out / "model.safetensors")
    edit(state)
    save_file(state, out / "model.safetensors", metadata={"format": "pt"})


def test_unchanged_copy_is_valid_and_flagged(out, reference):
    report = validate(out, reference)
    assert report.ok and report.unchanged
    assert report.distance == 0.0 and report.max_abs_diff == 0.0
    assert report.n_parameters == 4608 and report.dtype == "float32"
    assert "unchanged" in report.message


def test_distance_and_hash(out, reference):
    from safetensors.torch import load_file

    name = "model.layers.0.mlp.up_proj.weight"
    ref = load_file(reference / "model.safetensors")
    norm = math.sqrt(sum(float((t.double() ** 2).sum()) for t in ref.values() if t.is_floating_point()))

    def bump(state):
        state[name][0, 0] += 0.5

    resave(out, bump)
    report = validate(out, reference)
    assert report.ok and not report.unchanged
    assert report.max_abs_diff == pytest.approx(0.5, abs=1e-6)
    assert report.distance == pytest.approx(0.5 / norm, rel=1e-5)
    # every file the evaluation may read is hashed (config and tokenizer too), not the weights alone
    hashes = {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(out.iterdir())}
    assert report.files == hashes and {"model.safetensors", "config.json", "tokenizer.json"} <= set(hashes)
    combined = hashlib.sha256("".join(f"{n}:{h}\n" for n, h in sorted(hashes.items())).encode()).hexdigest()
    assert report.sha256 == combined == checkpoint_hash(out)[0]
    assert report.sha256 != validate(reference, reference).sha256


def test_non_finite_weights(out, reference):
    def poison(state):
        state["lm_head.weight"][3, 0] = float("inf")

    resave(out, poison)
    report = validate(out, reference)
    assert report.status == "NON_FINITE_WEIGHTS"
    assert "1 non-finite value(s) (NaN/inf) in lm_head.weight" in report.message


def test_empty_and_missing_output(tmp_path, reference):
    (tmp_path / "empty").mkdir()
    for folder in (tmp_path / "empty", tmp_path / "absent"):
        report = validate(folder, reference)
        assert report.status == "NO_CHECKPOINT" and "save_pretrained(output_dir)" in report.message


def test_adapter_only(tmp_path, reference):
    out = tmp_path / "out"
    out.mkdir()
    (out / "adapter_config.json").write_text("{}")
    (out / "adapter_model.safetensors").write_bytes(b"")
    report = validate(out, reference)
    assert report.status == "INVALID_CHECKPOINT"
    assert "only a LoRA adapter" in report.message and "merge_and_unload()" in report.message


def test_saved_in_a_subfolder(tmp_path, reference):
    shutil.copytree(reference, tmp_path / "out" / "checkpoint-100")
    report = validate(tmp_path / "out", reference)
    assert report.status == "INVALID_CHECKPOINT"
    assert "out/checkpoint-100/" in report.message and "root of out/" in report.message


def test_missing_tokenizer(out, reference):
    for name in ("tokenizer.json", "tokenizer_config.json"):
        (out / name).unlink()
    report = validate(out, reference)
    assert report.status == "INVALID_CHECKPOINT" and "tokenizer.save_pretrained(output_dir)" in report.message


def test_incomplete_sharded_save(tmp_path, reference):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    out = tmp_path / "out"
    AutoModelForCausalLM.from_pretrained(reference).save_pretrained(out, max_shard_size="8KB")
    AutoTokenizer.from_pretrained(reference).save_pretrained(out)
    index = json.loads((out / "model.safetensors.index.json").read_text())
    shards = sorted(set(index["weight_map"].values()))
    assert len(shards) > 1
    assert validate(out, reference).ok  # complete: fine
    (out / shards[-1]).unlink()
    report = validate(out, reference)
    assert report.status == "INVALID_CHECKPOINT"
    assert f"names 1 missing shard(s) ({shards[-1]})" in report.message


def test_other_architecture(tmp_path, reference):
    config = json.loads((reference / "config.json").read_text())
    out = tmp_path / "out"
    shutil.copytree(reference, out)
    config["num_hidden_layers"] = 2
    (out / "config.json").write_text(json.dumps(config))
    report = validate(out, reference)
    assert report.status == "INVALID_CHECKPOINT"
    assert report.message == "architecture differs from the input model: num_hidden_layers is 2, expected 1"


def test_other_vocabulary(out, reference):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(reference)
    tokenizer.add_tokens(["brand-new-token"])
    tokenizer.save_pretrained(out)
    report = validate(out, reference)
    assert (
        report.status == "INVALID_CHECKPOINT"
        and "vocabulary differs (65 tokens, expected 64)"
        in report.message.replace("from the input model ", "")
    )


def test_missing_tensor(out, reference):
    resave(out, lambda state: state.pop("model.layers.0.self_attn.q_proj.weight"))
    report = validate(out, reference)
    assert report.status == "INVALID_CHECKPOINT"
    assert "model.layers.0.self_attn.q_proj.weight" in report.message


def test_a_tokenizer_only_transformers_5_knows_is_flagged_with_the_fix(out, reference):
    from harness.checkpoint import official_env_problems

    config = json.loads((out / "tokenizer_config.json").read_text())
    config["tokenizer_class"] = "TokenizersBackend"
    (out / "tokenizer_config.json").write_text(json.dumps(config))
    problems = official_env_problems(out)
    flagged = [p for p in problems if "TokenizersBackend" in p]
    assert len(flagged) == 1 and "4.45.2" in flagged[0] and "PreTrainedTokenizerFast" in flagged[0]
    config["tokenizer_class"] = "PreTrainedTokenizerFast"
    (out / "tokenizer_config.json").write_text(json.dumps(config))
    assert not any("TokenizersBackend" in p for p in official_env_problems(out))


@pytest.mark.parametrize("name", ["generation_config.json", "tokenizer_config.json", "config.json"])
def test_a_changed_config_or_tokenizer_is_not_unchanged(name, out, reference):
    data = json.loads((out / name).read_text())
    data["transformers_version"] = "0.0.0"  # save_pretrained's stamp alone changes nothing
    (out / name).write_text(json.dumps(data))
    assert validate(out, reference).unchanged
    data["harness_test_change"] = 7
    (out / name).write_text(json.dumps(data))
    report = validate(out, reference)
    assert report.ok and not report.unchanged and report.changed_files == [name]
    assert report.sha256 != validate(reference, reference).sha256 and name in report.message


def test_links_out_of_out_and_special_files_are_refused(out, reference, tmp_path):
    import os

    weights = out / "model.safetensors"
    weights.unlink()
    weights.symlink_to(reference / "model.safetensors")  # another checkpoint's weights
    report = validate(out, reference)
    assert (
        report.status == "INVALID_CHECKPOINT"
        and "symbolic link" in report.message
        and "outside out/" in report.message
    )
    weights.unlink()
    shutil.copyfile(reference / "model.safetensors", out / "real.safetensors.bak")
    weights.symlink_to("real.safetensors.bak")  # a link inside out/ is fine: it is what is hashed and loaded
    assert validate(out, reference).ok
    os.mkfifo(out / "added_tokens.json")
    report = validate(out, reference)
    assert report.status == "INVALID_CHECKPOINT" and "not a regular file" in report.message
