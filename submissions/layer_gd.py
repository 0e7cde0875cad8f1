"""Layer-restricted gradient difference with an adaptive retain weight (SHA256, 2nd on 1B; arXiv 2504.12996).

Causal tracing puts the facts in the MLPs of the early layers, so only those train (``layers``, e.g.
"0-5"); everything else is frozen. The loss is gradient difference with a retain weight that grows when
the retain loss drifts above its first-epoch mean:
L = -CE(forget part) + m·CE(retain part), m = clip(round(0.3·6^delta + 0.8, 1), 1.2, 2.3),
delta = current retain loss - mean retain loss of epoch 0 (m = 1.2 during epoch 0 and while delta <= 0).
Forget and retain rows are mixed in random batches; each part's loss is computed separately.
(The team wrapped prompts in the chat template; the scorer prompts with the raw input, so this entry
does not.) Best task aggregates of the challenge (1B: 0.973), but early-layer ascent hurt 7B MMLU.

Defaults suit the tiny task on a CPU (finishes well inside 120 s). The team's settings: 8 epochs,
lr 1.5e-5, batch 120 (12 x 10 accumulation), MLPs of layers 0-5:
``--set layers=0-5 --set epochs=8 --set lr=1.5e-5 --set batch_size=120``.
"""

from unlearn_common import Run, answer_nll, load_split, weighted


def parse_layers(spec):
    """ "0-5" -> [0, 1, 2, 3, 4, 5]; "1,3" -> [1, 3]."""
    layers = []
    for part in str(spec).split(","):
        low, _, high = part.strip().partition("-")
        layers += list(range(int(low), int(high or low) + 1))
    return layers


def retain_multiplier(current, baseline):
    if baseline is None or current <= baseline:
        return 1.2
    return min(max(round(0.3 * 6 ** (current - baseline) + 0.8, 1), 1.2), 2.3)


def unlearn(
    input_path_to_unlearning_candidate_model,
    output_path_to_write_unlearned_model,
    path_to_forget_set,
    path_to_retain_set,
    lr=3e-3,
    epochs=4,
    batch_size=16,
    layers="0-1",
    max_length=256,
    seed=0,
):
    run = Run.start(
        input_path_to_unlearning_candidate_model,
        output_path_to_write_unlearned_model,
        max_length=max_length,
        seed=seed,
    )
    run.train_only([f"layers.{i}.mlp." for i in parse_layers(layers)])
    forget = weighted(run.encode(load_split(path_to_forget_set, "forget")), -1.0)
    retain = weighted(run.encode(load_split(path_to_retain_set, "retain")), 1.0)
    run.optimize(lr)
    baseline = None
    for epoch in range(epochs):
        retain_losses = []
        for batch in run.batches(forget + retain, batch_size):
            if run.out_of_time():
                break
            per_sample = answer_nll(run.logits(batch), batch)
            is_forget = batch.weights < 0
            forget_loss = per_sample[is_forget].mean() if is_forget.any() else per_sample.sum() * 0
            retain_loss = per_sample[~is_forget].mean() if (~is_forget).any() else per_sample.sum() * 0
            retain_losses.append(retain_loss.item())
            run.step(-forget_loss + retain_multiplier(retain_loss.item(), baseline) * retain_loss)
        if epoch == 0 and retain_losses:
            baseline = sum(retain_losses) / len(retain_losses)
    run.finish()
