"""The attacks on the tiny task's own models, against what is known without them: an untouched model has
nothing to recover; the panel's loss attack is the official MIA AUC; extraction's shortest prefix is what
greedy decoding needs; bad input (an already quantized checkpoint, bitsandbytes unusable, no gold model)
gives one line while the other attacks run; the CLI writes audit.json and prints it as JSON."""

from __future__ import annotations

import json
import shutil
from dataclasses import replace
from pathlib import Path

import pytest
import torch

from harness.audit import audit, quantize
from harness.audit.common import load_model, measure_run
from harness.audit.extraction import run_extraction
from harness.audit.mia_panel import run_mia_panel
from harness.audit.relearn import run_relearn


def test_an_untouched_model_recovers_nothing_under_relearning(tiny_task, tmp_path):
    result = run_relearn(tiny_task.model_dir, tiny_task, tmp_path, references=False)
    assert result.before["checkpoint"].forget_knowledge == 1.0  # the target knows its forget set
    assert result.gain("checkpoint") == 0.0
    assert result.gain("checkpoint", "forget_regurgitation") <= 0.0
    assert result.heldout_rows > 0 and result.train_rows > 0


def test_the_panels_loss_attack_is_the_official_mia_auc(tiny_task, tmp_path):
    panel = run_mia_panel(tiny_task.model_dir, tiny_task)
    for name, path in (("target", tiny_task.model_dir), ("gold", tiny_task.gold_model_dir)):
        _, scores = measure_run(path, tiny_task, tmp_path / name)
        assert panel.auc[name]["loss"] == pytest.approx(scores.auc, abs=1e-12)
    assert panel.auc["target"]["reference"] == 0.5  # the target against itself: every score ties
    assert set(panel.relative_to_gold()) == {"loss", "zlib", "min_k", "min_k_pp", "reference"}


@torch.inference_mode()
def test_extraction_prefix_is_what_greedy_decoding_needs(tiny_task):
    result = run_extraction(tiny_task.gold_model_dir, tiny_task)
    model, tokenizer = load_model(tiny_task.gold_model_dir, device="cpu")
    from harness.audit.common import answer_tokens
    from tasks.data import read_rows

    rows = {r.id: r for r in read_rows(tiny_task.eval_forget)}
    kinds = set()
    for ex in result.rows["checkpoint"]:
        prompt, answer = answer_tokens(tokenizer, rows[ex.id].input, rows[ex.id].output)

        def completes(k, prompt=prompt, answer=answer):
            ids = torch.tensor([prompt + answer[:k]])
            out = model.generate(
                ids, max_new_tokens=len(answer) - k, do_sample=False, pad_token_id=tokenizer.eos_token_id
            )
            return out[0, ids.shape[1] :].tolist() == answer[k:]

        if ex.k_min < len(answer):
            assert completes(ex.k_min), ex.id
        if ex.k_min > 0:
            assert not completes(ex.k_min - 1), ex.id
        kinds.add("full" if ex.k_min == 0 else "none" if ex.k_min == len(answer) else "partial")
    assert len(kinds) >= 2  # the gold model extracts some rows and not others


def test_bad_input_gives_one_line_and_the_other_attacks_run(tiny_task, tmp_path, monkeypatch):
    quantized = tmp_path / "quantized"
    shutil.copytree(tiny_task.model_dir, quantized)
    config = json.loads((quantized / "config.json").read_text())
    config["quantization_config"] = {"quant_method": "bitsandbytes", "load_in_4bit": True}
    (quantized / "config.json").write_text(json.dumps(config))
    with pytest.raises(Exception, match="already quantized"):
        quantize.check_quantizable(quantized)

    no_gold = replace(tiny_task, gold_model_dir=None)

    def broken(*args, **kwargs):
        raise ImportError("No module named 'bitsandbytes'")

    monkeypatch.setattr(quantize, "nf4_bnb", broken)
    result = audit(
        tiny_task.model_dir, no_gold, tmp_path / "run", attacks=["quantize", "mia_panel"], backend="bnb"
    )
    assert result.errors == {"quantize": "bitsandbytes is not usable here (No module named 'bitsandbytes')"}
    assert result.mia_panel is not None and "gold" not in result.mia_panel.auc
    assert result.mia_panel.relative_to_gold() is None
    assert any("no gold model" in n for n in result.notes)
    saved = json.loads((tmp_path / "run" / "audit.json").read_text())
    assert saved["errors"] == result.errors and saved["robust_forget"] == result.robust_forget == 0.0


def test_cli_audit_json(tiny_task, tmp_path):
    from click.testing import CliRunner

    from harness.cli._group import cli

    run_dir = tmp_path / "cli"
    out = CliRunner().invoke(
        cli, ["audit", str(tiny_task.gold_model_dir), "--task", "tiny", "--attack", "extraction", "--json",
              "--run-dir", str(run_dir)],
    )  # fmt: skip
    assert out.exit_code == 0, out.output
    data = json.loads(out.stdout.strip().splitlines()[-1])
    assert data == json.loads(Path(run_dir / "audit.json").read_text())
    assert data["extraction"]["mean"]["gold"] == data["extraction"]["mean"]["checkpoint"]
    assert data["robust_forget"] == data["official_forget"]  # extraction alone recovers no knowledge term
