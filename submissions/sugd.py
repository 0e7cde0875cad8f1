"""SUGD, sequential unlearning with gradient difference (AILS-NTUA, 1st place on 7B and 1B; arXiv 2503.02443).

Gradient difference with per-sample signed weights, L = mean_i w_i·CE_i (w = -1 on forget rows,
+retain_weight on retain rows), trained chunk by chunk: the forget set is cut into disjoint chunks of
``chunk_size`` rows; each chunk is interleaved with ``retain_ratio`` times as many retain rows, drawn
cyclically through the retain set (1 forget, k retain, 1 forget, ...), and trained for
``epochs_per_chunk`` epochs in that fixed order before moving on to the next chunk, in the same model.
Small chunks unlearn a little at a time while the retain rows repair the damage; AILS-NTUA reported
MIA 0.847 with task aggregate 0.827 on 7B (final 0.706).

Optionally only the last ``last_layers`` decoder layers train (embeddings and lm_head frozen), or LoRA
(``mode=lora``) does.

Defaults suit the tiny task on a CPU (finishes well inside 120 s). AILS-NTUA's 7B configuration
(configs/sequential_args.json; bf16, full weights of the last 8 layers):
``--set chunk_size=32 --set retain_ratio=7 --set retain_weight=0.5 --set lr=1e-5 --set epochs_per_chunk=7
--set batch_size=1 --set last_layers=8``.
"""

from unlearn_common import Run, answer_nll, load_split, weighted


def interleave(forget_chunk, retain, start, ratio):
    """[f0, r_s, .., r_s+k-1, f1, ...] with retain rows taken cyclically from ``start``; returns the next start."""
    ordered = []
    for example in forget_chunk:
        ordered.append(example)
        for _ in range(ratio):
            ordered.append(retain[start % len(retain)])
            start += 1
    return ordered, start


def unlearn(
    input_path_to_unlearning_candidate_model,
    output_path_to_write_unlearned_model,
    path_to_forget_set,
    path_to_retain_set,
    lr=1e-3,
    chunk_size=16,
    retain_ratio=2,
    retain_weight=1.0,
    epochs_per_chunk=2,
    batch_size=8,
    weight_decay=0.0,
    last_layers=0,
    mode="full",
    lora_r=16,
    lora_alpha=64,
    max_length=256,
    seed=0,
):
    run = Run.start(
        input_path_to_unlearning_candidate_model, output_path_to_write_unlearned_model,
        mode=mode, lora_r=lora_r, lora_alpha=lora_alpha, max_length=max_length, seed=seed,
    )  # fmt: skip
    if last_layers:
        layers = run.model.config.num_hidden_layers
        run.train_only([f"layers.{i}." for i in range(layers - last_layers, layers)])
    forget = weighted(run.encode(load_split(path_to_forget_set, "forget")), -1.0)
    retain = weighted(run.encode(load_split(path_to_retain_set, "retain")), retain_weight)
    run.optimize(lr, weight_decay)
    next_retain = 0
    for start in range(0, len(forget), chunk_size):
        chunk, next_retain = interleave(forget[start : start + chunk_size], retain, next_retain, retain_ratio)
        for _ in range(epochs_per_chunk):
            for batch in run.batches(chunk, batch_size, shuffle=False):
                if run.out_of_time():
                    break
                run.step((batch.weights * answer_nll(run.logits(batch), batch)).mean())
    run.finish()
