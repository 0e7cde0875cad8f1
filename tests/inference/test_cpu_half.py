"""harness.inference.cpu_half: the fast path's bf16 linears on a CPU as float32 products rounded back to
bf16; float32 models and the exact path keep torch's own kernels."""

from __future__ import annotations

import pytest
import torch
from mini_model import make_word_olmo

from harness.inference import cpu_half, forest, generation

F = torch.nn.functional


def _layer(dtype: torch.dtype) -> torch.nn.Linear:
    torch.manual_seed(0)
    return torch.nn.Linear(48, 24).to(dtype)


@pytest.fixture
def widening(monkeypatch) -> None:
    """The fast path widens bf16 linears, as on a CPU without AMX (this machine may have it)."""
    monkeypatch.setattr(cpu_half, "HALF", cpu_half.WIDENABLE)


def test_a_bf16_linear_is_the_float32_product_rounded_back(widening) -> None:
    layer = _layer(torch.bfloat16)
    x = torch.randn(7, 48).to(torch.bfloat16)
    native = F.linear(x, layer.weight, layer.bias)
    with cpu_half.float32_linears(layer):
        got = F.linear(x, layer.weight, layer.bias)
        got_no_bias = F.linear(x, layer.weight)
    wide = F.linear(x.float(), layer.weight.float(), layer.bias.float())
    assert got.dtype == torch.bfloat16 and torch.equal(got, wide.to(torch.bfloat16))
    assert torch.equal(got_no_bias, F.linear(x.float(), layer.weight.float()).to(torch.bfloat16))
    # torch's own bf16 kernel sums in another order: at most one bf16 unit (2^-7 relative) apart
    assert ((got.float() - native.float()).abs() <= native.float().abs() * 2**-7 + 1e-6).all()
    # once out of the block, torch's own kernel again
    assert torch.equal(F.linear(x, layer.weight, layer.bias), native)


def test_float32_models_and_mixed_dtypes_are_left_alone(widening) -> None:
    layer = _layer(torch.float32)
    assert not cpu_half.applies(layer) and cpu_half.applies(_layer(torch.bfloat16))
    x = torch.randn(3, 48)
    with cpu_half.float32_linears(layer):
        assert torch.equal(F.linear(x, layer.weight, layer.bias), F.linear(x, layer.weight, layer.bias))
    half = _layer(torch.bfloat16)
    with cpu_half.float32_linears(half):  # bf16 input, float32 weight: not the model's own linears
        mixed = F.linear(x.to(torch.bfloat16).float(), half.weight.float())
        assert mixed.dtype == torch.float32


@pytest.fixture(scope="module")
def bf16_model(tmp_path_factory):
    from transformers import AutoModelForCausalLM

    folder = make_word_olmo(
        tmp_path_factory.mktemp("word"), hidden_size=32, intermediate_size=64, num_layers=2
    )
    return AutoModelForCausalLM.from_pretrained(folder, dtype=torch.bfloat16).eval()


@pytest.fixture
def widened(monkeypatch) -> list[int]:
    """Counts the linears that `float32_linears` widened during a test."""
    calls: list[int] = []
    inner = cpu_half._Float32Linears.__torch_function__

    def spying(self, func, types, args=(), kwargs=None):
        if func is F.linear and args[0].dtype in cpu_half.HALF and args[1].dtype == args[0].dtype:
            calls.append(1)
        return inner(self, func, types, args, kwargs)

    monkeypatch.setattr(cpu_half._Float32Linears, "__torch_function__", spying)
    return calls


def test_a_cpu_with_amx_keeps_torchs_bf16_kernels(monkeypatch) -> None:
    assert cpu_half.HALF == (() if cpu_half.has_amx() else cpu_half.WIDENABLE)
    for amx in (True, False):
        monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda amx=amx: amx, raising=False)
        assert cpu_half.has_amx() is amx
    monkeypatch.delattr(torch.cpu, "_is_amx_tile_supported")  # a torch without the probe: no AMX assumed
    assert cpu_half.has_amx() is False
    monkeypatch.setattr(cpu_half, "HALF", ())  # what an AMX machine has: torch's kernels in the fast path
    assert not cpu_half.applies(_layer(torch.bfloat16))


def test_the_fast_path_widens_its_linears_and_the_exact_loop_does_not(bf16_model, widening, widened) -> None:
    prompts = [[3 + i, 10 + 2 * i, 7] for i in range(4)]
    exact = [generation.generate_exact(bf16_model, p, 4, 0) for p in prompts]
    assert not widened  # the official one-row loop: torch's own bf16 kernels
    generation.decode_batched(bf16_model, prompts, 4, 0, batch_size=4)
    decoded = len(widened)
    assert decoded > 0
    forest.read(bf16_model, [[*p, *e] for p, e in zip(prompts, exact)], [2] * 4, 0, 4)
    assert len(widened) > decoded
    # the whole fast path, near ties settled by the exact loop, still gives the exact loop's tokens
    drafted = generation.generate_drafted(bf16_model, prompts, [[]] * 4, 4, 0, batch_size=4)
    assert drafted.tokens == exact
