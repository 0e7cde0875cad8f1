"""Negative preference optimisation (organisers' baseline; Zhang et al. 2024, arXiv 2404.05868).

NPO is a bounded version of gradient ascent: on each forget row it lowers the answer's log-likelihood
relative to the frozen original, with a loss that flattens out once the row is unlikely enough:
L = (2/beta)·softplus(beta·(log p_theta(y|x) - log p_ref(y|x))) + retain_weight * CE(retain),
with log p the summed answer log-probability of a row (TOFU's sequence-level form). The organisers'
7B NPO baseline scored final 0.188 (TA 0.021, MIA 0.080, MMLU 0.463): it under-forgets.

Defaults suit the tiny task on a CPU (finishes well inside 120 s). Real-model settings (TOFU-style):
``--set lr=1e-5 --set epochs=5 --set beta=0.1``.
"""

from unlearn_common import Run, answer_nll, cycle, load_split, npo_loss, token_logprobs


def unlearn(
    input_path_to_unlearning_candidate_model,
    output_path_to_write_unlearned_model,
    path_to_forget_set,
    path_to_retain_set,
    lr=3e-3,
    epochs=1,
    batch_size=8,
    weight_decay=0.0,
    beta=0.1,
    retain_weight=1.0,
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
            logp = token_logprobs(run.logits(forget_batch), forget_batch)[0].sum(-1)
            ref_logp = token_logprobs(run.reference_logits(forget_batch), forget_batch)[0].sum(-1)
            retain_loss = answer_nll(run.logits(retain_batch), retain_batch).mean()
            run.step(npo_loss(logp, ref_logp, beta) + retain_weight * retain_loss)
    run.finish()
