"""Gradient descent on the retain set only (seed paper, "Cyber for AI", arXiv 2503.04795).

Fine-tune on the retain rows (L = CE(retain)) and let catastrophic forgetting erode the forget set.
It was the paper's best 1B method (20 epochs: MIA 0.982, MMLU barely moved) but did nothing on the
4-bit 7B model. Run long after an unlearning phase, it also pulls the model back towards the original
(the paper's MIA fell from 0.982 to 0 after extra descent).

Defaults suit the tiny task on a CPU (finishes well inside 120 s).
lr 2e-3 x 8 epochs (was 3e-3 x 10): the larger steps eroded the utility facts (MMLU 0.5 on world 0,
final 0.327) faster than the forget set.
In 4-bit + LoRA mode the low-rank update needs more steps there:
``--set mode=lora4bit --set lr=1e-2 --set epochs=3``.
The paper's settings:
- 1B, full fine-tuning: ``--set lr=2e-5 --set weight_decay=2e-4 --set epochs=20``;
- 7B, 4-bit NF4 + LoRA r 64 / alpha 16: ``--set mode=lora4bit --set lr=2e-6 --set epochs=3``.
"""

from unlearn_common import Run, answer_nll, load_split


def unlearn(
    input_path_to_unlearning_candidate_model,
    output_path_to_write_unlearned_model,
    path_to_forget_set,
    path_to_retain_set,
    lr=2e-3,
    epochs=8,
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
    retain = run.encode(load_split(path_to_retain_set, "retain"))
    run.optimize(lr, weight_decay)
    for _ in range(epochs):
        for batch in run.batches(retain, batch_size):
            if run.out_of_time():
                break
            run.step(answer_nll(run.logits(batch), batch).mean())
    run.finish()
