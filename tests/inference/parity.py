"""Helpers shared by the inference parity tests: the near-tie rule, the drafted fast path, the tiny models."""

from __future__ import annotations

import torch

from harness.inference import answers, generation


def exact_step_gap(model, prompt: list[int], max_new: int, step: int) -> float:
    """The exact path's top-2 logit gap at generation step ``step`` (the official call, with its logits)."""
    out = model.generate(
        torch.tensor([prompt]),
        max_new_tokens=max_new,
        do_sample=False,
        use_cache=True,
        pad_token_id=model.generation_config.eos_token_id,
        output_logits=True,
        return_dict_in_generate=True,
    )
    top = out.logits[step][0].float().topk(2).values
    return float(top[0] - top[1])


def assert_same_or_near_tie(model, prompts, exact, fast, max_new, labels) -> None:
    """The fast path settles near ties with the exact loop (harness/inference/ties.py): every row equals
    the exact path's; a differing row reports the exact path's top-2 gap where the two part."""
    for prompt, a, b, label in zip(prompts, exact, fast, labels):
        if a == b:
            continue
        step = next(i for i, (x, y) in enumerate(zip(a + [None], b + [None])) if x != y)
        gap = exact_step_gap(model, prompt, max_new, step)
        raise AssertionError(f"row {label}: fast path differs at step {step} (exact top-2 gap {gap:.3g})")


def drafted(model, tokenizer, rows, max_new: int, batch_size: int = 16, max_tokens: int | None = 2048):
    """The fast path's answer pass and drafted generation over ``rows`` (as evaluate runs them)."""
    done = answers.answer_pass(
        model, tokenizer, [r.input for r in rows], [r.output for r in rows], batch_size, max_tokens
    )
    drafted = generation.generate_drafted(
        model, done.prompts, done.drafts, max_new, tokenizer.eos_token_id, batch_size, max_tokens
    )
    return done, drafted.tokens


def tiny_model(tiny_task, which: str):
    from harness.inference.loading import load_checkpoint

    model_dir = tiny_task.model_dir if which == "target" else tiny_task.gold_model_dir
    return load_checkpoint(model_dir, torch.device("cpu"), torch.float32)
