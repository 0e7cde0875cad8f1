"""Gradient ascent on the forget set (seed paper, "Cyber for AI", arXiv 2503.04795).

Raise the answer-token cross-entropy of every forget row: L = -CE(forget). Simple and strong, but it
does not know when to stop: too many steps or too high a learning rate wipe the retain set and MMLU as
well (the paper's 7B run fell from MMLU 0.512 to 0.284 after 10 epochs).

Defaults suit the tiny task on a CPU (finishes well inside 120 s).
lr 2.5e-3 (was 2e-3): at 2e-3 one epoch left Task3 forget knowledge intact on worlds 0-2 (task aggregate
0, final 0.333), two epochs wiped the retain knowledge; see the README's reference table.
In 4-bit + LoRA mode the low-rank update needs more steps there:
``--set mode=lora4bit --set lr=3e-3 --set epochs=5``.
The paper's settings:
- 1B, full fine-tuning: ``--set lr=2e-5 --set weight_decay=2e-4 --set epochs=3``;
- 7B, 4-bit NF4 + LoRA r 64 / alpha 16: ``--set mode=lora4bit --set lr=2e-6 --set epochs=10``.
"""

from unlearn_common import Run, answer_nll, load_split


def unlearn(
    input_path_to_unlearning_candidate_model,
    output_path_to_write_unlearned_model,
    path_to_forget_set,
    path_to_retain_set,
    lr=2.5e-3,
    epochs=1,
    batch_size=8,
    weight_decay=0.0,
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
    run.optimize(lr, weight_decay)
    for _ in range(epochs):
        for batch in run.batches(forget, batch_size):
            if run.out_of_time():
                break
            run.step(-answer_nll(run.logits(batch), batch).mean())
    run.finish()
