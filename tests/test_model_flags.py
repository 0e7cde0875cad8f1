"""`--model PATH_OR_HUB_ID` and the task path flags of `run`, `check` and `score` (harness/cli/tasks.py):
a local folder is used, a hub id offline / gated / unknown is one clear line and no network use, a
missing path is one line naming it."""

from __future__ import annotations

import json
import socket
from pathlib import Path

import pytest
from test_runner import SUBMISSIONS

from harness.cli import main
from harness.cli.tasks import PATH_FLAGS, resolve_path
from harness.errors import HarnessError

HUB_ID = "harness-tests/no-such-model"


def invoke(args: list[str], capsys) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as exit_info:
        main(args)
    captured = capsys.readouterr()
    return exit_info.value.code, captured.out, captured.err


@pytest.fixture
def no_network(monkeypatch: pytest.MonkeyPatch) -> list[object]:
    """Every attempt to open a connection is recorded and refused."""
    attempts: list[object] = []

    def refuse(*args, **kwargs):
        attempts.append(args)
        raise OSError("network use in a test")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket.socket, "connect_ex", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(socket, "getaddrinfo", refuse)
    return attempts


def test_run_with_model_uses_that_folder(tiny_world, tmp_path: Path, capsys) -> None:
    # the gold model as the target: the manifest, the checkpoint and the scores must all be the gold's
    gold = Path(tiny_world.gold_model_dir)
    args = ["run", str(SUBMISSIONS / "good.py"), "--task", "tiny", "--model", str(gold), "--json"]
    args += ["--results", str(tmp_path), "--set", 'mode="copy"', "--budget", "60"]
    code, out, err = invoke(args, capsys)
    assert code == 0, err
    record = json.loads(out)
    manifest = json.loads((Path(record["run_dir"]) / "manifest.json").read_text())
    assert manifest["task"]["model_dir"] == str(gold.resolve())
    assert manifest["task"]["model_dir"] != str(Path(tiny_world.model_dir).resolve())
    finals = {}
    for name, model in (("gold", gold), ("target", tiny_world.model_dir)):
        args = ["score", "--model", str(model), "--task", "tiny", "--json", "--run-dir", str(tmp_path / name)]
        code, out, err = invoke(args, capsys)
        assert code == 0, err
        finals[name] = json.loads(out)["aggregate-score"]
    assert record["final_score"] == pytest.approx(finals["gold"]) and finals["gold"] != finals["target"]


@pytest.mark.parametrize("command", ["run", "check", "score"])
def test_a_hub_id_offline_is_one_line_and_no_network(command: str, no_network, monkeypatch, capsys) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    args = [command, str(SUBMISSIONS / "good.py")] if command != "score" else [command]
    code, out, err = invoke(args + ["--task", "tiny", "--model", HUB_ID], capsys)
    assert code == 2 and err.count("\n") == 1 and "Traceback" not in err, err
    assert err.startswith(f"error: --model {HUB_ID}: no such local folder, and the Hugging Face hub model")
    assert "not in the local hub cache and HF_HUB_OFFLINE is set" in err and f"hf download {HUB_ID}" in err
    assert no_network == []


@pytest.mark.parametrize(
    ("args", "line"),
    [
        (["run", str(SUBMISSIONS / "good.py"), "--task", "tiny", "--model", "{tmp}/gone"], "--model {tmp}/gone: no such folder"),
        (["check", str(SUBMISSIONS / "good.py"), "--model", "{tmp}/gone"], "--model {tmp}/gone: no such folder"),
        (["check", str(SUBMISSIONS / "good.py"), "--model", "{tmp}"], "--model {tmp}: not a Hugging Face model folder (no config.json in {tmp})"),
        (["score", "{tmp}/gone", "--task", "tiny"], "CHECKPOINT {tmp}/gone: no such folder"),
        (["score", "--model", "{tmp}/gone", "--task", "tiny"], "--model {tmp}/gone: no such folder"),
        (["run", str(SUBMISSIONS / "good.py"), "--task", "tiny", "--forget-dir", "{tmp}/f"], "--forget-dir {tmp}/f: no such folder"),
        (["run", str(SUBMISSIONS / "good.py"), "--task", "tiny", "--eval-retain", "{tmp}/r.jsonl"], "--eval-retain {tmp}/r.jsonl: no such file"),
        (["score", "{model}", "--task", "tiny", "--mia-member", "{tmp}/m.jsonl"], "--mia-member {tmp}/m.jsonl: no such file"),
        (["run", str(SUBMISSIONS / "good.py"), "--task", "tiny", "--model", "olmo"], "--model olmo: no such folder (a Hugging Face hub id has the form owner/name)"),
        (["run", str(SUBMISSIONS / "good.py"), "--task", "tiny", "--mmlu-dir", str(SUBMISSIONS / "good.py")], f"--mmlu-dir {SUBMISSIONS / 'good.py'}: not a folder"),
    ],
)  # fmt: skip
def test_a_missing_path_is_one_line_naming_it(
    args, line, tiny_world, tmp_path: Path, no_network, capsys
) -> None:
    args = [a.replace("{tmp}", str(tmp_path)).replace("{model}", str(tiny_world.model_dir)) for a in args]
    code, _, err = invoke(args, capsys)
    assert code == 2 and err == f"error: {line.replace('{tmp}', str(tmp_path))}\n"
    assert no_network == []


def test_a_task_without_its_model_names_the_flag(monkeypatch, capsys) -> None:
    monkeypatch.delenv("UNLEARN_HARNESS_SEMEVAL25_1B_MODEL_DIR", raising=False)
    code, _, err = invoke(
        ["run", str(SUBMISSIONS / "good.py"), "--task", "semeval25-1b", "--no-record"], capsys
    )
    assert code == 2 and err.startswith("error: task 'semeval25-1b' cannot run: model_dir is not set")
    assert "(give --model or set $UNLEARN_HARNESS_SEMEVAL25_1B_MODEL_DIR)" in err


def test_world_seeds_refuse_a_model(tiny_world, capsys) -> None:
    args = ["run", str(SUBMISSIONS / "good.py"), "--task", "tiny", "--world-seeds", "0,1"]
    code, _, err = invoke(args + ["--model", str(tiny_world.model_dir)], capsys)
    assert (
        code == 2 and "--world-seeds builds each world's own model and data; it cannot go with --model" in err
    )


def test_every_path_field_has_a_flag() -> None:
    from tasks.spec import PATH_FIELDS

    assert set(PATH_FLAGS) == set(PATH_FIELDS) and len(set(PATH_FLAGS.values())) == len(PATH_FIELDS)
    assert PATH_FLAGS["model_dir"] == "--model" and PATH_FLAGS["eval_forget"] == "--eval-forget"


class _Hub:
    """A stand-in for huggingface_hub.snapshot_download: records its calls, returns or raises."""

    def __init__(self, result: object) -> None:
        self.result, self.calls = result, []

    def __call__(self, repo_id: str, **kwargs):
        self.calls.append((repo_id, kwargs))
        if isinstance(self.result, BaseException):
            raise self.result
        return str(self.result)


def _hub_error(kind: str) -> BaseException:
    import huggingface_hub.errors as errors

    cls = getattr(errors, kind)
    return cls.__new__(cls)  # their __init__ wants an HTTP response; the type is what is handled


@pytest.mark.parametrize(
    ("offline", "error", "expected"),
    [
        ("0", "GatedRepoError", "is gated: accept its terms on its hub page, log in"),
        ("0", "RepositoryNotFoundError", "does not exist (or is private"),
        ("0", "LocalEntryNotFoundError", "not in the local hub cache and the hub could not be reached"),
        ("1", "LocalEntryNotFoundError", "not in the local hub cache and HF_HUB_OFFLINE is set"),
    ],
)
def test_hub_failures_are_one_line(offline, error, expected, monkeypatch) -> None:
    import huggingface_hub

    hub = _Hub(_hub_error(error))
    monkeypatch.setattr(huggingface_hub, "snapshot_download", hub)
    monkeypatch.setenv("HF_HUB_OFFLINE", offline)
    with pytest.raises(HarnessError) as info:
        resolve_path("model_dir", HUB_ID)
    assert str(info.value).startswith(f"--model {HUB_ID}: ") and expected in str(info.value)
    assert "\n" not in str(info.value)
    assert hub.calls == [
        (HUB_ID, {"local_files_only": offline == "1", "ignore_patterns": hub.calls[0][1]["ignore_patterns"]})
    ]


def test_a_hub_id_resolves_to_its_snapshot(tiny_world, monkeypatch) -> None:
    import huggingface_hub

    hub = _Hub(tiny_world.model_dir)
    monkeypatch.setattr(huggingface_hub, "snapshot_download", hub)
    monkeypatch.delenv("HF_HUB_OFFLINE")
    assert resolve_path("model_dir", HUB_ID) == Path(tiny_world.model_dir)
    assert hub.calls[0][0] == HUB_ID and hub.calls[0][1]["local_files_only"] is False
    assert resolve_path("model_dir", str(tiny_world.model_dir)) == Path(tiny_world.model_dir).resolve()
    assert len(hub.calls) == 1  # an existing local folder never asks the hub


def test_a_hub_id_in_the_task_variable_resolves_too(tiny_world, monkeypatch, capsys) -> None:
    import huggingface_hub

    from harness.cli.tasks import task_from_flags

    hub = _Hub(tiny_world.model_dir)
    monkeypatch.setattr(huggingface_hub, "snapshot_download", hub)
    monkeypatch.setenv("UNLEARN_HARNESS_SEMEVAL25_1B_MODEL_DIR", HUB_ID)
    spec = task_from_flags("semeval25-1b", {}, runnable=False)
    assert spec.model_dir == Path(tiny_world.model_dir) and [call[0] for call in hub.calls] == [HUB_ID]
    monkeypatch.undo()  # the real snapshot_download, offline: the line names the variable
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("UNLEARN_HARNESS_SEMEVAL25_1B_MODEL_DIR", HUB_ID)
    code, _, err = invoke(["run", str(SUBMISSIONS / "good.py"), "--task", "semeval25-1b"], capsys)
    assert code == 2 and err.startswith(
        f"error: $UNLEARN_HARNESS_SEMEVAL25_1B_MODEL_DIR {HUB_ID}: no such local"
    )
