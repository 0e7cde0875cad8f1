"""What a task is: the `TaskSpec` every stage of a run reads (data, model, budget, scoring settings)."""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from pathlib import Path


@dataclass(frozen=True)
class TaskSpec:
    """Everything the harness needs to run and score submissions on one task.

    Paths may be ``None`` where a task lacks that part (e.g. no gold model); `missing()` says what a
    run would need but is not there.
    """

    name: str
    description: str
    #: the fine-tuned target model directory (a Hugging Face checkpoint: model and tokenizer)
    model_dir: Path | None
    #: directories handed to the submission (each holds forget.jsonl/.parquet or retain.jsonl/.parquet)
    forget_dir: Path | None
    retain_dir: Path | None
    #: the files that are scored (jsonl or parquet with id, input, output, task)
    eval_forget: Path | None
    eval_retain: Path | None
    #: MIA member / non-member jsonl files (id, document)
    mia_member: Path | None = None
    mia_nonmember: Path | None = None
    #: MMLU-layout folder (dev/, test/ with <subject>_{dev,test}.csv); None subjects = all found
    mmlu_dir: Path | None = None
    mmlu_subjects: tuple[str, ...] | None = None
    mmlu_shots: int = 5
    #: the token limit of the MMLU prompt before shots are dropped (open-instruct: 2048)
    mmlu_max_prompt_tokens: int = 2048
    #: generation settings (official: 256 new tokens; bf16 on GPU, float32 on CPU by default)
    max_new_tokens: int = 256
    cuda_dtype: str = "bfloat16"
    cpu_dtype: str = "float32"
    #: the submission's time budget in seconds and the number of processes it gets
    budget_s: float = 3600.0
    processes: int = 1
    #: MMLU award-eligibility threshold (0.371 for 7B; None = no filter)
    mmlu_threshold: float | None = None
    #: optional retain-only "gold" model, the reference an ideal unlearning approaches
    gold_model_dir: Path | None = None
    #: free-form provenance (where the spec came from: a TOML file, the tiny-world cache...)
    source: str = ""
    extra: dict[str, str] = field(default_factory=dict)

    def missing(self) -> list[str]:
        """Names of required parts that are unset or absent on disk (empty: the task can run)."""
        required = [name for name in PATH_FIELDS if name not in OPTIONAL_PATH_FIELDS]
        return [name for name in required if (p := getattr(self, name)) is None or not Path(p).exists()]


# The field groups, derived from the dataclass (annotations are strings under `from __future__`):
_ABOUT_FIELDS = ("name", "description", "source", "extra")
#: the fields that are paths, in declaration order (a task's TOML [paths] table)
PATH_FIELDS = tuple(f.name for f in fields(TaskSpec) if "Path" in str(f.type))
#: path fields a task may lack and still run
OPTIONAL_PATH_FIELDS = ("gold_model_dir",)
#: the fields that are settings (a task's TOML [settings] table), in declaration order
SETTING_FIELDS = tuple(
    f.name for f in fields(TaskSpec) if f.name not in PATH_FIELDS and f.name not in _ABOUT_FIELDS
)
INT_FIELDS = tuple(f.name for f in fields(TaskSpec) if f.name in SETTING_FIELDS and f.type == "int")
FLOAT_FIELDS = tuple(f.name for f in fields(TaskSpec) if f.name in SETTING_FIELDS and f.type == "float")
