"""The run lifecycle on deliberately broken submissions: each ends in the right status, cleanly.

Most cases run on a "mini task" built here (a 4.6k-parameter random OLMo model and a few rows), so
nothing is evaluated; the two cases whose scores must be computed (well-formed, salvaged) run on the
shared tiny task and produce the same checkpoint, so the engine evaluates it once.
"""

from __future__ import annotations

import json
import socket
import threading
import time
from pathlib import Path

import psutil
import pytest
from mini_model import make_word_olmo

from harness.errors import HarnessError
from harness.runner import STATUSES, run_submission
from harness.sandbox import detect_isolation
from tasks.spec import TaskSpec

SUBMISSIONS = Path(__file__).resolve().parent / "fixtures" / "submissions"
BWRAP = detect_isolation("auto") == "bwrap"


def make_model(directory: Path) -> Path:
    """A tiny random OLMo with a word-level tokenizer, saved in `directory`."""
    return make_word_olmo(directory, hidden_size=16, intermediate_size=32, num_layers=1)


@pytest.fixture(scope="module")
def mini_task(tmp_path_factory: pytest.TempPathFactory) -> TaskSpec:
    """A runnable task whose data are a handful of rows (never evaluated in these tests)."""
    root = tmp_path_factory.mktemp("mini-task")
    model = make_model(root / "model")
    rows = {
        "forget": [{"id": "f1sc1", "input": "w1 w2", "output": "w3", "task": "Task1"}],
        "retain": [{"id": "r1qa1", "input": "w4 w5", "output": "w6", "task": "Task1"}],
    }
    for name, records in rows.items():
        (root / name).mkdir()
        (root / name / f"{name}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    (root / "eval").mkdir()
    secret = root / "eval" / "forget_eval.jsonl"
    secret.write_text('{"id": "secret1sc1", "input": "SECRET-EVAL-ROW", "output": "x", "task": "Task1"}\n')
    (root / "mia").mkdir()
    for name in ("member", "nonmember"):
        (root / "mia" / f"{name}.jsonl").write_text('{"id": "m1", "document": "w1"}\n')
    (root / "mmlu").mkdir()
    return TaskSpec(
        name="mini",
        description="runner tests",
        model_dir=model,
        forget_dir=root / "forget",
        retain_dir=root / "retain",
        eval_forget=secret,
        eval_retain=root / "retain" / "retain.jsonl",
        mia_member=root / "mia" / "member.jsonl",
        mia_nonmember=root / "mia" / "nonmember.jsonl",
        mmlu_dir=root / "mmlu",
        budget_s=60,
    )


def run(name: str, task: TaskSpec, tmp_path: Path, **kwargs):
    kwargs.setdefault("budget_s", 30)
    kwargs.setdefault("grace_s", 1.0)
    return run_submission(
        SUBMISSIONS / f"{name}.py", task, results_root=tmp_path / "runs", progress=False, **kwargs
    )


@pytest.mark.parametrize(
    ("name", "status", "needle"),
    [
        ("import_error", "IMPORT_ERROR", "fails at import time"),
        ("wrong_order", "SIGNATURE_MISMATCH", "official order"),
        ("extra_no_default", "SIGNATURE_MISMATCH", "learning_rate"),
        ("crash_mid_run", "CRASHED", "diverged after 1 rows"),
        ("nan_weights", "NON_FINITE_WEIGHTS", "non-finite"),
        ("saves_nothing", "NO_CHECKPOINT", "saved nothing"),
        ("lora_only", "INVALID_CHECKPOINT", "merge_and_unload"),
        ("no_tokenizer", "INVALID_CHECKPOINT", "tokenizer.save_pretrained"),
    ],
)
def test_broken_submission_gets_its_status(name, status, needle, mini_task, tmp_path):
    result = run(name, mini_task, tmp_path, score=False)
    assert result.status == status, result.message
    assert needle in result.message
    assert result.record.status == status
    manifest = json.loads((result.run_dir / "manifest.json").read_text())
    assert manifest["status"] == status
    assert manifest["submission"]["sha256"] == result.record.submission_sha256
    assert result.record.final_score is None
    if status in ("IMPORT_ERROR", "CRASHED"):
        assert needle in result.log_tail  # the tail of the log is shown with the failure


def test_crash_shows_the_log_tail(mini_task, tmp_path):
    result = run("crash_mid_run", mini_task, tmp_path, record=False)
    assert "ValueError: diverged after 1 rows" in result.log_tail
    assert "read 1 forget rows" in (result.run_dir / "logs" / "stdout.log").read_text()


def test_timeout_kills_and_reports(mini_task, tmp_path):
    started = time.monotonic()
    result = run("sleep_forever", mini_task, tmp_path, budget_s=2, record=False)
    assert result.status == "TIMEOUT"
    assert 2 <= result.record.budget_used_s < 8
    assert time.monotonic() - started < 30


@pytest.mark.parametrize("isolation", ["auto", "none"])
def test_forked_children_are_all_killed_at_the_deadline(isolation, mini_task, tmp_path):
    marker = f"harness-test-child-{tmp_path.name}-{isolation}"
    seen: list[int] = []
    stop = threading.Event()

    def watch() -> None:
        while not stop.is_set():
            seen.extend(
                p.pid for p in psutil.process_iter(["cmdline"]) if marker in (p.info["cmdline"] or [])
            )
            time.sleep(0.2)

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    try:
        result = run(
            "fork_children", mini_task, tmp_path, budget_s=3, params={"marker": marker}, record=False,
            isolation=isolation,
        )  # fmt: skip
    finally:
        stop.set()
        watcher.join()
    assert result.status == "TIMEOUT"
    assert len(set(seen)) >= 2  # the daemonised children did run
    left = [p.pid for p in psutil.process_iter(["cmdline"]) if marker in (p.info["cmdline"] or [])]
    assert left == []


def test_socket_to_localhost_fails_inside(mini_task, tmp_path):
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(1)
    server.settimeout(0.5)
    port = server.getsockname()[1]
    try:
        result = run("socket_local", mini_task, tmp_path, params={"port": port}, record=False)
        with pytest.raises(TimeoutError):
            server.accept()  # nobody connected
    finally:
        server.close()
    # isolated, the loopback is the sandbox's own network: nothing listens there
    assert result.status == "CRASHED" and "ConnectionRefusedError" in result.message, result.message


def test_socket_to_localhost_is_blocked_when_unisolated(mini_task, tmp_path):
    result = run("socket_local", mini_task, tmp_path, params={"port": 9}, record=False, isolation="none")
    assert result.status == "SANDBOX_VIOLATION" and "127.0.0.1" in result.message


def test_task_paths_not_given_are_not_there(mini_task, tmp_path):
    secret = str(mini_task.eval_forget)
    result = run("read_task_path", mini_task, tmp_path, params={"path": secret}, record=False)
    assert result.status == "CRASHED" and "FileNotFoundError" in result.message  # absent from the view
    probe = json.loads((result.run_dir / "work" / "out" / "probe.json").read_text())
    assert "open" not in probe and probe["open_error"] == "FileNotFoundError"
    assert "SECRET-EVAL-ROW" not in probe["cat"]  # a child process finds nothing either


def test_memory_cap_gives_out_of_memory(mini_task, tmp_path):
    result = run("oom", mini_task, tmp_path, memory_cap_mb=1024, params={"gigabytes": 4}, record=False)
    assert result.status == "OUT_OF_MEMORY", result.message
    assert "MemoryError" in result.message


def test_set_values_are_checked_against_the_signature(mini_task, tmp_path):
    with pytest.raises(HarnessError, match="no parameter 'lr'"):
        run("good", mini_task, tmp_path, params={"lr": 1e-5})
    with pytest.raises(HarnessError, match="one of the four paths"):
        run("good", mini_task, tmp_path, params={"input_path_to_unlearning_candidate_model": "x"})
    assert not (tmp_path / "runs").exists()  # refused before anything was staged


def test_valid_unscored_run_hashes_and_measures(mini_task, tmp_path):
    result = run("good", mini_task, tmp_path, score=False, record=False)
    assert result.status == "OK", result.message
    ckpt = result.checkpoint
    assert ckpt is not None and not ckpt.unchanged and 0 < ckpt.distance < 1e-5
    out = result.run_dir / "work" / "out"
    assert len(ckpt.sha256) == 64 and sorted(ckpt.files) == sorted(p.name for p in out.iterdir())
    manifest = json.loads((result.run_dir / "manifest.json").read_text())
    assert manifest["isolation"] == ("bwrap" if BWRAP else manifest["isolation"])
    assert manifest["checkpoint"]["sha256"] == ckpt.sha256
    assert manifest["packages"]["torch"] and manifest["python"]["version"]
    # the processor's vendor, which decides which tiny world this machine builds (README)
    from tasks.determinism import cpu_vendor

    assert manifest["device"]["cpu_vendor"] == cpu_vendor()
    assert set(manifest["timings"]) >= {"stage", "run", "validate"}
    assert result.record.peak_rss_mb > 0 and manifest["peak_rss_mb"] == result.record.peak_rss_mb
    assert (result.run_dir / "good.py").read_text() == (SUBMISSIONS / "good.py").read_text()
    assert not (result.run_dir / "work" / "model").exists()  # staged copies are cleaned up


def test_well_formed_run_is_scored_recorded_and_salvage_is_scored(tiny_task, tmp_path):
    """A byte-for-byte copy of the target (a no-op, flagged unchanged): its evaluation is in the engine's
    cache whenever anything else evaluated the tiny target in this session, and the salvaged run saves the
    very same checkpoint, so the tiny task is evaluated at most once here."""
    from leaderboard.store import Store, default_db

    good = run("good", tiny_task, tmp_path, budget_s=120, params={"mode": "copy"})
    assert good.status == "OK", good.message + good.log_tail
    assert good.checkpoint.unchanged and "unchanged" in good.message and good.record.unchanged
    assert good.scores is not None and good.record.final_score is not None
    assert good.record.terms is not None and len(good.record.terms) == 12
    assert (good.run_dir / "evaluation_results.jsonl").is_file()
    low, high = good.record.intervals["final_score"]
    assert 0 <= low <= high <= 1  # bootstrap interval, recorded with the run
    manifest = json.loads((good.run_dir / "manifest.json").read_text())
    assert manifest["run_id"] == good.record.run_id and "evaluate" in manifest["timings"]
    stored = Store(default_db(tmp_path / "runs")).get(good.record.run_id)
    assert stored.status == "OK" and stored.final_score == good.record.final_score and stored.unchanged

    salvaged = run("save_then_hang", tiny_task, tmp_path, budget_s=8, params={"mode": "copy"})
    assert salvaged.status == "SALVAGED", salvaged.message + salvaged.log_tail
    assert salvaged.checkpoint.sha256 == good.checkpoint.sha256
    assert salvaged.record.final_score == good.record.final_score
    assert 8 <= salvaged.record.budget_used_s < 20


def test_every_status_has_a_description():
    import re

    import harness.checkpoint
    from leaderboard.status import Status

    assert all(status.description for status in Status) and set(STATUSES) == {s.value for s in Status}
    # the statuses the checkpoint validation can return are spelled as text there: each must be a Status
    source = Path(harness.checkpoint.__file__).read_text()
    returned = set(re.findall(r'_fail\(\s*report,\s*"([A-Z_]+)"', source))
    assert returned == {"NO_CHECKPOINT", "INVALID_CHECKPOINT", "NON_FINITE_WEIGHTS"}
    assert returned <= {s.value for s in Status}


def test_sandbox_environment_seen_from_inside(mini_task, tmp_path, monkeypatch):
    monkeypatch.setenv("HF_TOKEN", "hf_secret")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "aws_secret")
    before = time.time()
    result = run("env_probe", mini_task, tmp_path, budget_s=40, record=False)
    assert result.status == "NO_CHECKPOINT"  # probe.json alone is not a model
    probe = json.loads((result.run_dir / "work" / "out" / "probe.json").read_text())
    env = probe["env"]
    assert "HF_TOKEN" not in env and "AWS_SECRET_ACCESS_KEY" not in env
    assert env["HF_HUB_OFFLINE"] == "1"
    assert before + 40 <= float(env["HARNESS_DEADLINE"]) <= time.time() + 40
    assert env["HOME"].startswith(str(result.run_dir))
    assert probe["cwd"] == env["HOME"]  # a writable scratch folder, not out/
    assert probe["forget_files"] == ["forget.jsonl", "forget.parquet"]
    assert probe["retain_files"] == ["retain.jsonl", "retain.parquet"]
    if BWRAP:
        assert not probe["model_writable"] and not probe["workdir_writable"]


def test_torchrun_runs_every_rank(mini_task, tmp_path):
    result = run("ranks", mini_task, tmp_path, launcher="torchrun", processes=2, budget_s=120, score=False,
                 record=False)  # fmt: skip
    assert result.status == "OK", result.message + result.log_tail
    out = result.run_dir / "work" / "out"
    assert sorted(p.name for p in out.glob("rank-*")) == ["rank-0-of-2.txt", "rank-1-of-2.txt"]
    results = sorted(p.name for p in (result.run_dir / "work" / "control" / "results").glob("result-*.json"))
    assert results == ["result-0.json", "result-1.json"]
