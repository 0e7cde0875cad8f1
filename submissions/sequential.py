"""Sequential unlearning (seed paper, "Cyber for AI", arXiv 2503.04795): phases of ascent and descent.

``phases`` is a comma-separated list of ``kind:lr:epochs``, run in order, each with a fresh AdamW:
- ``ga``: gradient ascent on forget, L = -CE(forget);
- ``gd``: gradient descent on retain, L = CE(retain);
- ``gdiff``: gradient difference, L = -CE(forget) + CE(retain), retain batches cycled.
A short ``gd`` after an aggressive ``ga`` restores most of the utility the ascent destroyed (the paper:
one descent epoch at 2e-6 brought 7B MMLU back from 0.284 to 0.511); a long ``gd`` undoes the
unlearning itself.

Defaults suit the tiny task on a CPU (finishes well inside 120 s).
In 4-bit + LoRA mode the low-rank update needs more steps there:
``--set mode=lora4bit --set phases=ga:3e-3:5,gd:3e-3:2``.
The paper's settings:
- 7B, 4-bit NF4 + LoRA r 64 / alpha 16 (ascent 1e-5 x3, descent on retain 2e-6 x3, ascent 2e-5 x1):
  ``--set mode=lora4bit --set phases=ga:1e-5:3,gd:2e-6:3,ga:2e-5:1``;
- 7B, the submitted "gradient difference then ascent": ``--set mode=lora4bit --set phases=gdiff:1e-5:3,ga:2e-5:1``.
"""

from unlearn_common import Run, answer_nll, cycle, load_split


def parse_phases(spec):
    """ "ga:1e-5:3,gd:2e-6:1" -> [("ga", 1e-05, 3), ("gd", 2e-06, 1)]."""
    phases = []
    for part in str(spec).split(","):
        fields = part.strip().split(":")
        if len(fields) != 3 or fields[0] not in ("ga", "gd", "gdiff"):
            raise ValueError(f"phases: {part.strip()!r} is not kind:lr:epochs with kind ga, gd or gdiff")
        phases.append((fields[0], float(fields[1]), int(fields[2])))
    return phases


def unlearn(
    input_path_to_unlearning_candidate_model,
    output_path_to_write_unlearned_model,
    path_to_forget_set,
    path_to_retain_set,
    phases="ga:3e-3:1,gd:1e-3:2",
    batch_size=8,
    weight_decay=0.0,
    mode="full",
    lora_r=64,
    lora_alpha=16,
    max_length=256,
    seed=0,
):
    plan = parse_phases(phases)
    run = Run.start(
        input_path_to_unlearning_candidate_model, output_path_to_write_unlearned_model,
        mode=mode, lora_r=lora_r, lora_alpha=lora_alpha, max_length=max_length, seed=seed,
    )  # fmt: skip
    forget = run.encode(load_split(path_to_forget_set, "forget"))
    retain = run.encode(load_split(path_to_retain_set, "retain"))
    retain_batches = cycle(lambda: run.batches(retain, batch_size))
    for kind, lr, epochs in plan:
        run.log(f"phase {kind} lr={lr} epochs={epochs}")
        run.optimize(lr, weight_decay)
        for _ in range(epochs):
            if kind == "gd":
                for batch in run.batches(retain, batch_size):
                    if run.out_of_time():
                        break
                    run.step(answer_nll(run.logits(batch), batch).mean())
                continue
            for batch in run.batches(forget, batch_size):
                if run.out_of_time():
                    break
                loss = -answer_nll(run.logits(batch), batch).mean()
                if kind == "gdiff":
                    retain_batch = next(retain_batches)
                    loss = loss + answer_nll(run.logits(retain_batch), retain_batch).mean()
                run.step(loss)
    run.finish()
