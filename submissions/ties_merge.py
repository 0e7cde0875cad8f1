"""Two NPO + retain adapters merged with TIES (ZJUKLAB, 2nd on 7B; arXiv 2503.21088).

Train two LoRA adapters from the same base with the same objective but different weights,
L = a·NPO(forget) + b·KL(p_original || p_theta)(retain) + c·CE(retain):
adapter 1 (0.4/0.4/0.2) over-forgets, adapter 2 (0.3/0.3/0.4) under-forgets. Then merge them with TIES
(trim to the top ``density`` of magnitudes, elect a sign per entry, average the agreeing values) and
merge the result into the base weights. NPO here uses the batch-mean answer cross-entropy (ZJUKLAB's
form); the reference is the base model, obtained by disabling the adapters. Forget row i is paired with
retain row i mod |retain|.

The merge is PEFT's ``add_weighted_adapter(combination_type="ties")``, chosen on purpose because it is
what ZJUKLAB ran: it applies TIES to the stacked A factors and, separately, to the stacked B factors
(not to the full deltas B·A), so both adapters need the same rank. ``--set combination=ties_svd``
merges the full deltas instead and re-factorises them by SVD.

Defaults suit the tiny task on a CPU (finishes well inside 120 s). ZJUKLAB's settings (both adapters):
LoRA r 32 / alpha 32 on all linear layers, lr 1e-4, weight decay 0.01, 5 epochs, batch 4 (1 x 4
accumulation), beta 0.1, density 0.8: ``--set epochs=5 --set batch_size=4 --set lora_r=32 --set lora_alpha=32``.
"""

from unlearn_common import Run, answer_nll, kl_to_reference, load_split, npo_loss


def train_adapter(run, forget, retain, weights, lr, weight_decay, epochs, batch_size, beta):
    npo_w, kl_w, ce_w = weights
    run.optimize(lr, weight_decay)
    for _ in range(epochs):
        for forget_batch, retain_batch in run.paired_batches(forget, retain, batch_size):
            if run.out_of_time():
                break
            logp = -answer_nll(run.logits(forget_batch), forget_batch).mean()
            ref_logp = -answer_nll(run.reference_logits(forget_batch), forget_batch).mean()
            retain_logits = run.logits(retain_batch)
            kl = kl_to_reference(
                retain_logits, run.reference_logits(retain_batch), retain_batch.attention_mask
            )
            ce = answer_nll(retain_logits, retain_batch).mean()
            run.step(npo_w * npo_loss(logp, ref_logp, beta) + kl_w * kl + ce_w * ce)


def unlearn(
    input_path_to_unlearning_candidate_model,
    output_path_to_write_unlearned_model,
    path_to_forget_set,
    path_to_retain_set,
    lr=1e-2,
    epochs=3,
    batch_size=8,
    weight_decay=0.01,
    beta=0.1,
    weights_1="0.4,0.4,0.2",
    weights_2="0.3,0.3,0.4",
    density=0.8,
    combination="ties",
    lora_r=32,
    lora_alpha=32,
    quantize=False,
    max_length=256,
    seed=0,
):
    run = Run.start(
        input_path_to_unlearning_candidate_model, output_path_to_write_unlearned_model,
        mode="lora4bit" if quantize else "lora", lora_r=lora_r, lora_alpha=lora_alpha, max_length=max_length,
        seed=seed,
    )  # fmt: skip
    forget = run.encode(load_split(path_to_forget_set, "forget"))
    retain_rows = load_split(path_to_retain_set, "retain")
    retain = run.encode(retain_rows[i % len(retain_rows)] for i in range(len(forget)))
    for name, weights in (("default", weights_1), ("second", weights_2)):
        if name != "default":
            run.model.add_adapter(name, run.model.peft_config["default"])
            run.model.set_adapter(name)
        run.log(f"adapter {name}: NPO/KL/CE weights {weights}")
        weights = [float(w) for w in str(weights).split(",")]
        train_adapter(run, forget, retain, weights, lr, weight_decay, epochs, batch_size, beta)
    run.model.add_weighted_adapter(
        ["default", "second"], [1.0, 1.0], "merged", combination_type=combination, density=density
    )
    run.model.set_adapter("merged")
    run.finish()
