"""KL minimisation (organisers' baseline, from TOFU): ascent on forget, stay close to the original on retain.

L = -CE(forget) + kl_weight * KL(p_original || p_theta) on retain rows, over the full next-token
distributions of every real token (the original is a frozen copy). The KL term keeps the retain
behaviour, including stopping with EOS, nearer the target than plain gradient difference does. On 7B the
organisers' "GA and KL" run scored about 0.39 but was excluded: MMLU fell to 0.269.

Defaults suit the tiny task on a CPU (finishes well inside 120 s); epochs 3 and kl_weight 5 (were 2 and
1): with KL weight 1 the ascent wiped the retain knowledge answers (task aggregate 0, final 0.296 on
world 0) before every forget term moved. Real-model settings (TOFU-style):
``--set lr=1e-5 --set epochs=5 --set batch_size=32``.
"""

from unlearn_common import Run, answer_nll, cycle, kl_to_reference, load_split


def unlearn(
    input_path_to_unlearning_candidate_model,
    output_path_to_write_unlearned_model,
    path_to_forget_set,
    path_to_retain_set,
    lr=3e-3,
    epochs=3,
    batch_size=8,
    weight_decay=0.0,
    kl_weight=5.0,
    max_length=256,
    seed=0,
):
    run = Run.start(
        input_path_to_unlearning_candidate_model, output_path_to_write_unlearned_model,
        reference=True, max_length=max_length, seed=seed,
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
            kl = kl_to_reference(
                run.logits(retain_batch), run.reference_logits(retain_batch), retain_batch.attention_mask
            )
            run.step(-forget_loss + kl_weight * kl)
    run.finish()
