"""submissions/rmu.py's cheap steps: the forward stopped at the steering layer gives that layer's output of a
full forward and runs nothing after it; the retain rows' cached original hidden states are each row's own
and come back zero-padded into a batch's shape."""

from __future__ import annotations

import sys
from pathlib import Path

import torch
from mini_model import make_word_olmo

SUBMISSIONS = Path(__file__).resolve().parents[1] / "submissions"
if str(SUBMISSIONS) not in sys.path:
    sys.path.insert(0, str(SUBMISSIONS))

import rmu  # noqa: E402
import unlearn_common as U  # noqa: E402

ROWS = [
    {"input": "w1 w2 w3", "output": "w4", "task": "Task1"},
    {"input": "w5 w6 w7 w8 w9 w10 w11", "output": "w12 w13", "task": "Task1"},
    {"input": "w20", "output": "w21", "task": "Task2"},
]


def start(tmp_path: Path) -> U.Run:
    model_dir = make_word_olmo(tmp_path / "model", hidden_size=32, intermediate_size=64, num_layers=3)
    return U.Run.start(model_dir, tmp_path / "out")


def test_hidden_at_is_the_layers_output_and_stops_there(tmp_path: Path) -> None:
    run = start(tmp_path)
    batch = U.collate(run.encode(ROWS), run.pad_id)
    calls = []
    run.model.lm_head.register_forward_hook(lambda *_: calls.append("lm_head"))
    layers = run.model.get_decoder().layers
    layers[2].register_forward_hook(lambda *_: calls.append("layer 2"))
    with torch.no_grad():
        full = run.model(**batch.model_inputs(), output_hidden_states=True).hidden_states
        calls.clear()
        hooks_before = [len(m._forward_hooks) for m in layers]  # transformers adds its own on a first call
        for layer in (0, 1):
            assert torch.equal(rmu.hidden_at(run.model, layer, batch), full[layer + 1])
    assert calls == []  # neither the last layer nor the LM head ran
    assert [len(m._forward_hooks) for m in layers] == hooks_before  # its hook is removed again


def test_cached_original_hidden_states_are_each_rows_own(tmp_path: Path) -> None:
    run = start(tmp_path)
    rows = run.encode(ROWS)
    cache = rmu.original_hidden(run, 1, rows, batch_size=2)
    with torch.no_grad():
        for row in rows:
            alone = rmu.hidden_at(run.model, 1, U.collate([row], run.pad_id))[0]
            assert torch.allclose(cache[tuple(row.input_ids)], alone[: len(row.input_ids)], atol=1e-4)
        batch = U.collate(rows[::-1], run.pad_id)
        stacked = rmu.stacked(cache, batch)
        assert stacked.shape == (*batch.input_ids.shape, 32)
        mask = batch.attention_mask.bool()
        assert torch.count_nonzero(stacked[~mask]) == 0
        batched = rmu.hidden_at(run.model, 1, batch)
        assert torch.allclose(stacked[mask], batched[mask], atol=1e-4)
