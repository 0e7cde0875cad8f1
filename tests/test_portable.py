"""Checkpoints the organisers' transformers 4.45.2 loads: tasks/portable.py, the reference entries' save,
and `check` refusing a checkpoint only transformers 5 understands (static check: no official environment
needed; tests/test_official_env.py loads them there)."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import pytest
from test_runner import SUBMISSIONS
from test_runner_cli import invoke

from tasks.portable import make_portable, portability_problems

REPO = Path(__file__).resolve().parents[1]


def _transformers5_checkpoint(src: Path, dst: Path) -> Path:
    """A copy of `src` as transformers 5 saves it: TokenizersBackend, rope_parameters and dtype only."""
    shutil.copytree(src, dst)
    tokenizer = json.loads((dst / "tokenizer_config.json").read_text())
    tokenizer["tokenizer_class"] = "TokenizersBackend"
    (dst / "tokenizer_config.json").write_text(json.dumps(tokenizer))
    config = json.loads((dst / "config.json").read_text())
    config.pop("rope_theta", None), config.pop("torch_dtype", None)
    config["rope_parameters"], config["dtype"] = {"rope_theta": 500000.0, "rope_type": "default"}, "bfloat16"
    (dst / "config.json").write_text(json.dumps(config))
    return dst


def test_each_field_4_45_misreads_is_named_and_made_portable(tiny_task, tmp_path) -> None:
    out = _transformers5_checkpoint(tiny_task.model_dir, tmp_path / "out")
    problems = portability_problems(out)
    assert len(problems) == 3
    assert "TokenizersBackend" in problems[0] and "PreTrainedTokenizerFast" in problems[0]
    assert any("rope_theta" in p and "500000.0" in p for p in problems)
    assert any("torch_dtype" in p for p in problems)
    mode = (out / "config.json").stat().st_mode
    assert make_portable(out) == ["tokenizer_config.json", "config.json"]
    assert portability_problems(out) == [] and make_portable(out) == []
    config = json.loads((out / "config.json").read_text())
    assert config["rope_theta"] == 500000.0 and config["torch_dtype"] == "bfloat16"
    assert config["rope_parameters"]["rope_theta"] == 500000.0  # what transformers 5 reads stays
    assert (out / "config.json").stat().st_mode == mode
    assert sorted(p.name for p in out.iterdir() if p.suffix == ".tmp") == []


def test_the_tiny_world_is_portable(tiny_task) -> None:
    for folder in (tiny_task.model_dir, tiny_task.gold_model_dir):
        assert portability_problems(Path(folder)) == []


def test_the_reference_entries_save_portable_checkpoints(tiny_task, tmp_path) -> None:
    sys.path.insert(0, str(REPO / "submissions"))
    import unlearn_common as U
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(tiny_task.model_dir)
    tokenizer = AutoTokenizer.from_pretrained(tiny_task.model_dir)
    model.save_pretrained(tmp_path / "plain")
    tokenizer.save_pretrained(tmp_path / "plain")
    assert portability_problems(tmp_path / "plain")  # what transformers 5's save_pretrained leaves
    U.save_atomically(model, tokenizer, tmp_path / "saved")
    assert portability_problems(tmp_path / "saved") == []
    # every entry saves through save_atomically (so the rule above covers them all)
    for entry in sorted((REPO / "submissions").glob("*.py")):
        if entry.name != "unlearn_common.py":
            assert "save_pretrained(" not in entry.read_text(), f"{entry.name} saves on its own"


@pytest.mark.usefixtures("tiny_task")
def test_check_refuses_a_tokenizer_only_transformers_5_knows(capsys) -> None:
    code, out, err = invoke(["check", str(SUBMISSIONS / "transformers5_tokenizer.py")], capsys)
    assert code == 1, out + err
    assert "TokenizersBackend" in out and "PreTrainedTokenizerFast" in out and "4.45.2" in out
    assert "ready for an official attempt" not in out
    code, out, err = invoke(["check", str(SUBMISSIONS / "transformers5_tokenizer.py"), "--json"], capsys)
    found = json.loads(out)
    assert code == 1 and found["ok"] is False and any("TokenizersBackend" in p for p in found["official_env"])
