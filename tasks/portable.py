"""Checkpoint files that both transformers 5 and the organisers' 4.45.2 read the same way.

transformers 5 saves two things 4.45.2 misreads (official-scoring.md 2.13 pins 4.45.2):
- tokenizer_config.json names ``tokenizer_class: TokenizersBackend``, a class 4.45.2 does not have (it
  raises ValueError); ``PreTrainedTokenizerFast`` is the same tokenizer to both releases;
- config.json keeps the rotary base under ``rope_parameters.rope_theta`` and the dtype under ``dtype``;
  4.45.2 reads ``rope_theta`` and ``torch_dtype`` and silently falls back to its defaults without them.
`make_portable` adds what 4.45.2 reads, keeping what 5 reads; `portability_problems` says what is missing.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

#: tokenizer classes only transformers 5 knows, and the class both releases load the same files with
TRANSFORMERS5_TOKENIZERS = {"TokenizersBackend": "PreTrainedTokenizerFast"}


def _read(path: Path) -> dict | None:
    try:
        value = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return value if isinstance(value, dict) else None


def _fixes(directory: Path) -> dict[str, dict[str, object]]:
    """file name -> {key: value 4.45.2 needs} for what the checkpoint in `directory` lacks."""
    fixes: dict[str, dict[str, object]] = {}
    tokenizer = _read(directory / "tokenizer_config.json") or {}
    if tokenizer.get("tokenizer_class") in TRANSFORMERS5_TOKENIZERS:
        fixes["tokenizer_config.json"] = {
            "tokenizer_class": TRANSFORMERS5_TOKENIZERS[tokenizer["tokenizer_class"]]
        }
    config = _read(directory / "config.json") or {}
    wanted: dict[str, object] = {}
    rope = config.get("rope_parameters")
    if isinstance(rope, dict) and "rope_theta" in rope and "rope_theta" not in config:
        wanted["rope_theta"] = rope["rope_theta"]
    if "dtype" in config and "torch_dtype" not in config:
        wanted["torch_dtype"] = config["dtype"]
    if wanted:
        fixes["config.json"] = wanted
    return fixes


def portability_problems(directory: Path) -> list[str]:
    """One line per field transformers 4.45.2 would misread in the checkpoint in `directory`."""
    lines = []
    for name, wanted in _fixes(Path(directory)).items():
        for key, value in wanted.items():
            if key == "tokenizer_class":
                lines.append(
                    f"{name} names tokenizer_class '{next(iter(TRANSFORMERS5_TOKENIZERS))}', which only "
                    f"transformers 5 knows: 4.45.2 refuses to load it; set it to '{value}' (same tokenizer)"
                )
            else:
                lines.append(f"{name} lacks '{key}' (4.45.2 would use its default instead of {value!r})")
    return lines


def make_portable(directory: Path) -> list[str]:
    """Add to the checkpoint in `directory` what 4.45.2 needs (atomic rewrites); the files changed."""
    changed = []
    for name, wanted in _fixes(Path(directory)).items():
        path = Path(directory) / name
        data = {**(_read(path) or {}), **wanted}
        with tempfile.NamedTemporaryFile("w", dir=directory, delete=False, suffix=".tmp") as handle:
            json.dump(data, handle, indent=2, sort_keys=True)
            handle.write("\n")
        os.chmod(handle.name, path.stat().st_mode & 0o777)
        os.replace(handle.name, path)
        changed.append(name)
    return changed
