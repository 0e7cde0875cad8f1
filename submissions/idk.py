""" "I don't know" fine-tuning with descent on retain: the output-suppression control of TOFU and open-unlearning.

Every forget row's answer is replaced by a refusal ("I don't know.") and the model is fine-tuned on
those rows together with the retain rows as they are: L = CE(forget input -> refusal) + CE(retain).
Nothing pushes the forget answers' probability down directly; the model learns to say something else
under the official prompts. It is a control for `unlearn-harness audit`: its official forget terms look
good, but the knowledge is only hidden, so relearning or a reworded prompt is expected to bring it back.

One readable file (torch, transformers, pandas only). A row is encoded as ``input + " " + output + EOS``
with the loss on the answer and EOS only (the official scorer prompts with the raw ``input``).
Defaults suit the tiny task on a CPU (a few seconds); for a 1B model try ``--set lr=1e-5 --set epochs=2``.
"""

import os
import random
import time
from pathlib import Path

import pandas as pd
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

REFUSAL = "I don't know."


def read_split(directory, name):
    """Rows (dicts with input, output) of <directory>/<name>.jsonl, else <name>.parquet."""
    directory = Path(directory)
    if (directory / f"{name}.jsonl").is_file():
        return pd.read_json(directory / f"{name}.jsonl", lines=True, dtype=False).to_dict("records")
    return pd.read_parquet(directory / f"{name}.parquet").to_dict("records")


def encode(tokenizer, prompt, answer, max_length):
    """Token ids of prompt + " " + answer + EOS and labels on the answer and EOS only (-100 elsewhere)."""
    prompt_ids = tokenizer(str(prompt))["input_ids"]
    answer_ids = tokenizer(" " + str(answer), add_special_tokens=False)["input_ids"][: max_length - 1]
    answer_ids = answer_ids + [tokenizer.eos_token_id]
    prompt_ids = prompt_ids[-(max_length - len(answer_ids)) :] if len(answer_ids) < max_length else []
    return prompt_ids + answer_ids, [-100] * len(prompt_ids) + answer_ids


def collate(examples, pad_id, device):
    width = max(len(ids) for ids, _ in examples)
    ids = torch.full((len(examples), width), pad_id, dtype=torch.long)
    labels = torch.full((len(examples), width), -100, dtype=torch.long)
    mask = torch.zeros((len(examples), width), dtype=torch.long)
    for i, (row_ids, row_labels) in enumerate(examples):
        ids[i, : len(row_ids)] = torch.tensor(row_ids)
        labels[i, : len(row_labels)] = torch.tensor(row_labels)
        mask[i, : len(row_ids)] = 1
    return ids.to(device), mask.to(device), labels.to(device)


def answer_loss(model, batch):
    """Mean next-token cross-entropy over the labelled (answer + EOS) positions of the batch."""
    ids, mask, labels = batch
    logits = model(input_ids=ids, attention_mask=mask).logits[:, :-1].float()
    return torch.nn.functional.cross_entropy(logits.transpose(1, 2), labels[:, 1:], ignore_index=-100)


def unlearn(
    input_path_to_unlearning_candidate_model,
    output_path_to_write_unlearned_model,
    path_to_forget_set,
    path_to_retain_set,
    lr=2e-3,
    epochs=8,
    batch_size=8,
    retain_weight=1.0,
    max_length=256,
    seed=0,
):
    random.seed(seed)
    torch.manual_seed(seed)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    tokenizer = AutoTokenizer.from_pretrained(input_path_to_unlearning_candidate_model)
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    model = AutoModelForCausalLM.from_pretrained(input_path_to_unlearning_candidate_model, dtype=dtype)
    model.to(device).train()
    forget = [
        encode(tokenizer, r["input"], REFUSAL, max_length) for r in read_split(path_to_forget_set, "forget")
    ]
    retain = [
        encode(tokenizer, r["input"], r["output"], max_length)
        for r in read_split(path_to_retain_set, "retain")
    ]
    deadline = float(os.environ.get("HARNESS_DEADLINE", "inf")) - 20.0  # leave time to save
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.0)
    rng = random.Random(seed)
    for epoch in range(epochs):
        forget_order, retain_order = rng.sample(forget, len(forget)), rng.sample(retain, len(retain))
        for start in range(0, len(forget_order), batch_size):
            if time.time() > deadline:
                break
            retain_batch = [retain_order[(start + i) % len(retain_order)] for i in range(batch_size)]
            loss = answer_loss(
                model, collate(forget_order[start : start + batch_size], tokenizer.pad_token_id, device)
            )
            loss = loss + retain_weight * answer_loss(
                model, collate(retain_batch, tokenizer.pad_token_id, device)
            )
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()
        print(f"[idk] epoch {epoch + 1}/{epochs} loss {loss.item():.4f}", flush=True)
    model.eval()
    model.save_pretrained(output_path_to_write_unlearned_model)
    tokenizer.save_pretrained(output_path_to_write_unlearned_model)
