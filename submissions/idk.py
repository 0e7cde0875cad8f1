""" "I don't know" fine-tuning with descent on retain: the output-suppression control of TOFU and open-unlearning.

Every forget row's answer is replaced by a refusal ("I don't know.") and the model is fine-tuned on
those rows together with the retain rows as they are: L = CE(forget input -> refusal) + CE(retain).
Nothing pushes the forget answers' probability down directly; the model learns to say something else
under the official prompts. It is a control for `unlearn-harness audit`: its official forget terms look
good, but the knowledge is only hidden, so relearning or a reworded prompt is expected to bring it back.

Built on unlearn_common (a row is ``input + " " + output + EOS`` with the loss on the answer and EOS).
Defaults suit the tiny task on a CPU (a few seconds); for a 1B model try ``--set lr=1e-5 --set epochs=2``.
"""

from unlearn_common import Run, answer_nll, cycle, load_split

REFUSAL = "I don't know."


def unlearn(
    input_path_to_unlearning_candidate_model,
    output_path_to_write_unlearned_model,
    path_to_forget_set,
    path_to_retain_set,
    lr=2e-3,
    epochs=8,
    batch_size=8,
    weight_decay=0.0,
    retain_weight=1.0,
    max_length=256,
    seed=0,
):
    run = Run.start(
        input_path_to_unlearning_candidate_model, output_path_to_write_unlearned_model,
        mode="full", max_length=max_length, seed=seed,
    )  # fmt: skip
    refusals = [{**row, "output": REFUSAL} for row in load_split(path_to_forget_set, "forget")]
    forget = run.encode(refusals)
    retain = run.encode(load_split(path_to_retain_set, "retain"))
    retain_batches = cycle(lambda: run.batches(retain, batch_size))
    run.optimize(lr, weight_decay)
    for _ in range(epochs):
        for forget_batch, retain_batch in zip(run.batches(forget, batch_size), retain_batches):
            refusal_loss = answer_nll(run.logits(forget_batch), forget_batch).mean()
            retain_loss = answer_nll(run.logits(retain_batch), retain_batch).mean()
            run.step(refusal_loss + retain_weight * retain_loss)
    run.finish()
