"""Sandbox pieces: scrubbed environment, launchers, masks, log tails, and each isolation mode end to end."""

from __future__ import annotations

import json
import shutil
import sys
import tempfile
from pathlib import Path

import pytest
from test_runner import BWRAP, SUBMISSIONS, mini_task  # noqa: F401  (the module-scoped mini task fixture)

from harness import sandbox
from harness.errors import HarnessError
from harness.runner import run_submission

#: the isolated modes this machine can test (both where bubblewrap is installed and we are root)
ISOLATED = [
    pytest.param(mode, marks=pytest.mark.skipif(not ok, reason=f"isolation '{mode}' does not work here"))
    for mode, ok in (
        ("bwrap", BWRAP or shutil.which("bwrap") is not None),
        ("unshare", shutil.which("unshare") is not None),
    )
]


def test_scrubbed_env_drops_credentials_and_sets_the_deadline(tmp_path):
    base = {
        "PATH": "/usr/bin",
        "HF_TOKEN": "x",
        "HUGGING_FACE_HUB_TOKEN": "x",
        "OPENAI_API_KEY": "x",
        "AWS_ACCESS_KEY_ID": "x",
        "MY_PASSWORD": "x",
        "GITHUB_TOKEN": "x",
        "WANDB_API_KEY": "x",
        "db_secret_value": "x",
        "UNLEARN_HARNESS_CACHE": "/cache",
        "CUDA_VISIBLE_DEVICES": "0,1",
        "KEYBOARD": "us",
        "HF_HUB_OFFLINE": "0",
    }
    env = sandbox.scrubbed_env(base, deadline=1234.5, home=tmp_path, tag="abc")
    assert set(env) - {"PATH", "CUDA_VISIBLE_DEVICES", "KEYBOARD"} == {
        "HOME", "XDG_CACHE_HOME", "HF_HOME", "TRITON_CACHE_DIR", "TMPDIR", "HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE",
        "HF_DATASETS_OFFLINE", "WANDB_MODE", "PYTHONUNBUFFERED", "HARNESS_DEADLINE", sandbox.TAG_VAR,
    }  # fmt: skip
    assert env["HARNESS_DEADLINE"] == "1234.500" and env["HF_HUB_OFFLINE"] == "1"
    assert env["HOME"] == str(tmp_path) and env["HF_HOME"] == str(tmp_path / ".cache" / "huggingface")


def test_launcher_commands(tmp_path):
    spec = tmp_path / "spec.json"
    command, warnings = sandbox._launcher_command("python", 1, spec)
    assert command == [sys.executable, "-u", str(sandbox.ENTRY), str(spec)] and warnings == []
    command, _ = sandbox._launcher_command("torchrun", 4, spec)
    assert command[1:5] == ["-m", "torch.distributed.run", "--standalone", "--nproc_per_node=4"]
    command, warnings = sandbox._launcher_command("accelerate", 2, spec)
    assert command[1:5] == ["-m", "accelerate.commands.launch", "--num_processes", "2"]
    try:
        import deepspeed  # noqa: F401

        assert str(sandbox.ZERO3_CONFIG) in command
    except ImportError:
        assert "--multi_gpu" in command and "deepspeed is not installed" in warnings[0]
    with pytest.raises(HarnessError, match="needs --launcher torchrun or accelerate"):
        sandbox._launcher_command("python", 2, spec)
    assert sandbox.ZERO3_CONFIG.is_file() and "zero_stage: 3" in sandbox.ZERO3_CONFIG.read_text()


def test_isolation_choice():
    assert sandbox.detect_isolation("none") == "none"
    assert sandbox.detect_isolation("auto") in ("bwrap", "unshare")  # auto never means unisolated
    with pytest.raises(HarnessError, match="unknown isolation"):
        sandbox.detect_isolation("docker")


def test_tail(tmp_path):
    log = tmp_path / "log.txt"
    log.write_text("".join(f"line {i}\n" for i in range(100)))
    assert sandbox.tail(log, 3) == "line 97\nline 98\nline 99"
    assert sandbox.tail(tmp_path / "absent.txt") == ""


def test_task_paths_and_the_view(mini_task, tmp_path):  # noqa: F811
    paths = sandbox.task_paths(mini_task)
    root = Path(mini_task.model_dir).resolve().parent
    assert paths == sorted(
        {root / "eval", root / "retain", root / "mia", root / "mmlu", root / "forget", root / "model"}
    )
    staged = sandbox.StagedRun(
        workdir=tmp_path, model_dir=tmp_path / "model", forget_dir=tmp_path / "forget", retain_dir=tmp_path / "retain",
        out_dir=tmp_path / "out", home_dir=tmp_path / "home", control_dir=tmp_path / "control",
        submission=tmp_path / "code" / "s.py", model_copied=False,
        model_binds=((Path(mini_task.model_dir) / "config.json", tmp_path / "model" / "config.json"),),
    )  # fmt: skip
    view = sandbox.view_of(staged, tmp_path / "control" / "spec.json", [*paths, Path.home()], None)
    binds = [Path(m.dest) for m in view.mounts if m.kind in ("ro", "rw", "dev")]
    for hidden in [*paths, Path.home()]:  # absent: neither bound nor below a bound tree (a tmpfs is private)
        assert not any(d == hidden or d in hidden.parents for d in binds), hidden
    assert set(view.paths("rw")) == {
        str(tmp_path / "out"),
        str(tmp_path / "home"),
        str(tmp_path / "control" / "results"),
    }
    assert str(tmp_path / "model" / "config.json") in view.paths("ro") and str(sandbox.ENTRY) in view.paths(
        "ro"
    )
    assert "/tmp" in view.paths("tmpfs") and "/proc" in view.paths("proc")
    assert sys.prefix in view.paths("ro") or any(Path(sys.prefix).is_relative_to(p) for p in view.paths("ro"))
    assert "/etc/shadow" not in view.paths("ro")  # root-only files of /etc stay out


@pytest.mark.parametrize("isolation", ["none", "unshare"])
def test_other_isolation_modes_still_run_and_guard(isolation, mini_task, tmp_path):  # noqa: F811
    if isolation == "unshare" and shutil.which("unshare") is None:
        pytest.skip("unshare is not installed")
    kwargs = {"results_root": tmp_path / "runs", "progress": False, "record": False, "isolation": isolation}
    good = run_submission(SUBMISSIONS / "good.py", mini_task, score=False, **kwargs)
    assert good.status == "OK", good.message + good.log_tail
    manifest = json.loads((good.run_dir / "manifest.json").read_text())
    assert manifest["isolation"] == isolation
    assert (isolation == "none") == any("no isolation" in w for w in good.warnings)
    secret = str(mini_task.eval_forget)
    probe = run_submission(SUBMISSIONS / "read_task_path.py", mini_task, params={"path": secret}, **kwargs)
    found = json.loads((probe.run_dir / "work" / "out" / "probe.json").read_text())
    if isolation == "none":  # the audit hook is the only guard of an unisolated run
        assert probe.status == "SANDBOX_VIOLATION" and "a task path not given to unlearn()" in probe.message
    else:  # the file is not in the view: for the child process too
        assert probe.status == "CRASHED" and "FileNotFoundError" in probe.message
        assert found["cat"] == ""


@pytest.fixture
def outside_tmp():
    """A scratch folder outside /tmp (which bubblewrap replaces wholesale), removed afterwards."""
    folder = Path(tempfile.mkdtemp(prefix="harness-test-", dir="/var/tmp"))
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


@pytest.mark.parametrize("isolation", ISOLATED)
def test_the_results_root_and_cache_are_absent(isolation, mini_task, outside_tmp, monkeypatch):  # noqa: F811
    cache = outside_tmp / "cache"
    (cache / "other").mkdir(parents=True)
    (cache / "other" / "gold.txt").write_text("GOLD-MODEL")
    monkeypatch.setenv("UNLEARN_HARNESS_CACHE", str(cache))
    runs = outside_tmp / "runs"
    earlier = runs / "mini" / "earlier-run"
    earlier.mkdir(parents=True)
    (earlier / "forget_0.csv").write_text("EARLIER-GENERATIONS")
    for target in (cache / "other" / "gold.txt", earlier / "forget_0.csv"):
        result = run_submission(
            SUBMISSIONS / "read_task_path.py", mini_task, params={"path": str(target)}, results_root=runs,
            progress=False, record=False, isolation=isolation,
        )  # fmt: skip
        assert result.status == "CRASHED" and "FileNotFoundError" in result.message
        probe = json.loads((result.run_dir / "work" / "out" / "probe.json").read_text())
        assert probe["cat"] == "" and "open" not in probe


def test_a_cpu_child_runs_the_same_kernels_whatever_the_harness_has(tiny_task, tmp_path, monkeypatch):
    # the child's kernels are fixed (tasks.determinism): the harness's own ATEN_CPU_CAPABILITY cannot change them
    if any(Path("/dev").glob("nvidia[0-9]*")):
        pytest.skip("a GPU child keeps the machine's kernels")
    entry = Path(__file__).resolve().parents[1] / "submissions" / "ga.py"
    hashes = {}
    for capability in ("avx2", None):
        if capability:
            monkeypatch.setenv("ATEN_CPU_CAPABILITY", capability)
        else:
            monkeypatch.delenv("ATEN_CPU_CAPABILITY", raising=False)
        result = run_submission(
            entry, tiny_task, params={"epochs": 1}, results_root=tmp_path / str(capability), progress=False,
            record=False, score=False,
        )  # fmt: skip
        assert result.status == "OK", result.message + result.log_tail
        manifest = json.loads((result.run_dir / "manifest.json").read_text())
        assert (
            manifest["kernels"]["ATEN_CPU_CAPABILITY"] == "default"
            and manifest["kernels"]["MKL_CBWR"] == "COMPATIBLE"
        )
        hashes[capability] = result.checkpoint.sha256
    assert hashes["avx2"] == hashes[None]
