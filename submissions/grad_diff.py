"""Gradient difference (seed paper; also the organisers' baseline): ascent on forget, descent on retain.

Each step pairs a forget batch with a retain batch (the retain set is cycled):
L = -CE(forget) + retain_weight * CE(retain). The retain term anchors utility while the forget term
unlearns. The organisers' 7B baseline scored final 0.243 (TA 0, MIA 0.382, MMLU 0.348).

Defaults suit the tiny task on a CPU (finishes well inside 120 s).
epochs 2 (was 3): the third epoch of ascent wiped world 1's retain knowledge answers (task aggregate 0,
final 0.333); see the README's reference table.
In 4-bit + LoRA mode the low-rank update needs more steps there:
``--set mode=lora4bit --set lr=3e-3 --set epochs=6``.
Real-model settings:
- 1B, full fine-tuning: ``--set lr=2e-5 --set weight_decay=2e-4 --set epochs=3``;
- 7B, 4-bit NF4 + LoRA r 64 / alpha 16: ``--set mode=lora4bit --set lr=1e-5 --set epochs=3``.
"""

from unlearn_common import Run, answer_nll, cycle, load_split


def unlearn(
    input_path_to_unlearning_candidate_model,
    output_path_to_write_unlearned_model,
    path_to_forget_set,
    path_to_retain_set,
    lr=2e-3,
    epochs=2,
    batch_size=8,
    weight_decay=0.0,
    retain_weight=1.0,
    mode="full",
    lora_r=64,
    lora_alpha=16,
    max_length=256,
    seed=0,
):
    run = Run.start(
        input_path_to_unlearning_candidate_model, output_path_to_write_unlearned_model,
        mode=mode, lora_r=lora_r, lora_alpha=lora_alpha, max_length=max_length, seed=seed,
    )  # fmt: skip
    forget = run.encode(load_split(path_to_forget_set, "forget"))
    retain = run.encode(load_split(path_to_retain_set, "retain"))
    retain_batches = cycle(lambda: run.batches(retain, batch_size))
    run.optimize(lr, weight_decay)
    for _ in range(epochs):
        for forget_batch, retain_batch in zip(run.batches(forget, batch_size), retain_batches):
            if run.out_of_time():
                break
            forget_loss = answer_nll(run.logits(forget_batch), forget_batch).mean()
            retain_loss = answer_nll(run.logits(retain_batch), retain_batch).mean()
            run.step(-forget_loss + retain_weight * retain_loss)
    run.finish()
