"""The task registry: TOML tasks, overrides and environment variables, validation against the real data."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tasks import registry
from tasks.errors import DataError
from tasks.registry import describe_task, env_name, get_task, list_tasks, validate_task


def test_list_tasks() -> None:
    assert list_tasks() == ["tiny", "lume", "semeval25-1b", "semeval25-7b"]


def test_env_name() -> None:
    assert env_name("semeval25-7b", "model_dir") == "UNLEARN_HARNESS_SEMEVAL25_7B_MODEL_DIR"


@pytest.mark.parametrize(
    ("name", "forget", "retain"),
    [("semeval25-7b", 1112, 1136), ("semeval25-1b", 1112, 1136), ("lume", 2732, 2734)],
)
def test_real_tasks_validate_against_the_public_data(
    shared_data: Path, monkeypatch, name, forget, retain
) -> None:
    monkeypatch.setenv("UNLEARN_HARNESS_SHARED_DATA", str(shared_data))
    monkeypatch.delenv(env_name(name, "model_dir"), raising=False)
    spec = get_task(name)
    assert spec.missing() == ["model_dir"]  # the fine-tuned targets are not public
    assert spec.source.endswith(f"{name}.toml")
    counts = validate_task(spec)
    assert counts == {
        "forget_rows": forget,
        "retain_rows": retain,
        "eval_forget_rows": forget,
        "eval_retain_rows": retain,
        "mia_member_docs": 150,
        "mia_nonmember_docs": 150,
        "mmlu_subjects": 57,
        "mmlu_test_questions": 14042,
    }


def test_real_task_settings() -> None:
    seven, one = describe_task("semeval25-7b"), describe_task("semeval25-1b")
    assert (seven.mmlu_threshold, one.mmlu_threshold) == (0.371, None)
    for spec in (seven, one, describe_task("lume")):
        assert spec.max_new_tokens == 256 and spec.mmlu_shots == 5 and spec.mmlu_subjects is None
        assert (spec.cuda_dtype, spec.budget_s, spec.processes) == ("bfloat16", 3600.0, 8)


def test_overrides_beat_environment_beat_toml(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("UNLEARN_HARNESS_SEMEVAL25_7B_MODEL_DIR", "from-env")
    monkeypatch.setenv("UNLEARN_HARNESS_SEMEVAL25_7B_BUDGET_S", "120")
    spec = get_task("semeval25-7b")
    assert spec.model_dir == tmp_path / "from-env"  # relative env paths resolve against the cwd
    assert spec.budget_s == 120.0
    spec = get_task("semeval25-7b", {"model_dir": str(tmp_path / "flag"), "processes": "1"})
    assert spec.model_dir == tmp_path / "flag" and spec.processes == 1 and spec.budget_s == 120.0
    spec = get_task(
        "semeval25-7b", {"mmlu_threshold": "none", "mmlu_subjects": "anatomy, astronomy", "eval_forget": ""}
    )
    assert spec.mmlu_threshold is None and spec.mmlu_subjects == ("anatomy", "astronomy")
    assert spec.eval_forget is None and "eval_forget" in spec.missing()


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"budget_s": "soon"}, "override budget_s: budget_s must be a positive number, got 'soon'"),
        ({"processes": "0"}, "processes must be a positive integer"),
        ({"mmlu_threshold": "2"}, "mmlu_threshold must be a number in [0, 1] or 'none'"),
        ({"cuda_dtype": "int8"}, "cuda_dtype must be one of bfloat16, float16, float32"),
        ({"model": "x"}, "task semeval25-7b: unknown setting(s) model (known: model_dir,"),
    ],
)
def test_bad_overrides_are_one_line_errors(overrides, message) -> None:
    with pytest.raises(DataError) as caught:
        get_task("semeval25-7b", overrides)
    assert message in str(caught.value) and "\n" not in str(caught.value)


def test_unknown_task() -> None:
    with pytest.raises(DataError, match="unknown task 'semeval26' \\(known: tiny, lume, semeval25-1b"):
        get_task("semeval26")


def test_toml_paths_resolve_against_the_file_and_errors_name_it(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(registry, "TASKS_DIR", tmp_path)
    monkeypatch.setenv("UNLEARN_HARNESS_SHARED_DATA", str(tmp_path / "shared"))
    (tmp_path / "mine.toml").write_text(
        'description = "mine"\n[paths]\nmodel_dir = "models/target"\nmmlu_dir = "{shared_data}/mmlu"\n'
        "[settings]\nmmlu_shots = 0\nbudget_s = 60\n"
    )
    assert list_tasks() == ["tiny", "mine"]
    spec = get_task("mine")
    assert spec.model_dir == tmp_path / "models" / "target"
    assert spec.mmlu_dir == tmp_path / "shared" / "mmlu"
    assert (spec.mmlu_shots, spec.budget_s, spec.forget_dir) == (0, 60.0, None)
    (tmp_path / "mine.toml").write_text("[paths]\nmodel_dir = \n")
    with pytest.raises(DataError, match=r"mine\.toml: not valid TOML"):
        get_task("mine")
    (tmp_path / "mine.toml").write_text('[paths]\nmodel_path = "x"\n')
    with pytest.raises(DataError, match=r"mine\.toml \[paths\]: unknown setting\(s\) model_path"):
        get_task("mine")
    (tmp_path / "mine.toml").write_text("[settings]\nmmlu_shots = -1\n")
    with pytest.raises(DataError, match=r"mine\.toml \[settings\] mmlu_shots: .*non-negative integer"):
        get_task("mine")


def test_tiny_is_described_without_building(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("UNLEARN_HARNESS_CACHE", str(tmp_path))
    spec = describe_task("tiny", {"seed": "3", "budget_s": "30"})
    assert spec.extra == {"seed": "3", "size": "tiny"} and spec.budget_s == 30.0
    assert spec.model_dir.is_relative_to(tmp_path) and "model_dir" in spec.missing()
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(DataError, match="seed must be a non-negative integer, got 'x'"):
        describe_task("tiny", {"seed": "x"})
    with pytest.raises(DataError, match="size must be 'tiny' or 'small', got 'huge'"):
        describe_task("tiny", {"size": "huge"})


def test_get_task_tiny_uses_the_cached_build(tiny_world) -> None:
    spec = get_task("tiny", progress=False)
    assert spec.model_dir == tiny_world.model_dir and spec.missing() == []


def _cli(args: list[str], capsys) -> tuple[int, str, str]:
    from harness.cli import main

    with pytest.raises(SystemExit) as caught:
        main(args)
    out, err = capsys.readouterr()
    return caught.value.code, out, err


def test_cli_tasks_json(capsys, monkeypatch, tmp_path: Path) -> None:
    monkeypatch.setenv("UNLEARN_HARNESS_CACHE", str(tmp_path))
    monkeypatch.setenv("UNLEARN_HARNESS_SEMEVAL25_1B_MODEL_DIR", str(tmp_path))
    code, out, _ = _cli(["tasks", "--json"], capsys)
    assert code == 0
    listed = {entry["name"]: entry for entry in json.loads(out)}
    assert list(listed) == list_tasks()
    assert listed["tiny"]["ready"] is False and "model_dir" in listed["tiny"]["missing"]
    assert listed["semeval25-1b"]["model_dir"] == str(tmp_path)
    assert listed["semeval25-7b"]["settings"]["mmlu_threshold"] == 0.371


def test_cli_task_build(capsys, tiny_world, harness_cache: Path) -> None:
    code, out, _ = _cli(["task", "build", "tiny", "--gold", "--json", "--cache", str(harness_cache)], capsys)
    assert code == 0
    built = json.loads(out)
    assert built["model_dir"] == str(tiny_world.model_dir)
    assert built["gold_model_dir"] == str(tiny_world.gold_model_dir)
    code, _, err = _cli(["task", "build", "semeval25-7b"], capsys)
    assert code == 2 and err.count("\n") == 1 and "only the tiny task is built" in err
