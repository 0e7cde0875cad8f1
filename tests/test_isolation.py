"""What a misbehaving submission can do, class by class, under each isolation this machine has.

Each class of escape from issue 12 has a test here: forged scores (the cache, the board and the run
directory out of reach, cache entries authenticated), links out of out/, root inside the sandbox
(capabilities, /proc of the harness, sysctl writes, hidden data by subprocesses, dir_fd opens and hard
links, writes into the model, unix sockets), the budget (stopping the harness, daemons), resources
(memfd pages, unbounded logs), the user's home, text from the child on the terminal, and failures
found late. On a machine with bubblewrap both backends run; without it, the unshare jail alone.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import socket
import tempfile
import time
import uuid
from pathlib import Path

import pytest
from rich.console import Console
from test_runner import SUBMISSIONS, mini_task  # noqa: F401  (the module-scoped mini task fixture)

from harness import isolation
from harness.errors import USER_ERRORS
from harness.isolation import logs
from harness.runner import run_submission
from leaderboard.store import default_db


def _works(mode: str) -> bool:
    try:
        return isolation.detect_isolation(mode) == mode
    except USER_ERRORS:
        return False


ISOLATED = [
    pytest.param(
        mode, marks=pytest.mark.skipif(not _works(mode), reason=f"isolation '{mode}' does not work here")
    )
    for mode in ("bwrap", "unshare")
]


@pytest.fixture
def outside_tmp():
    """A scratch folder outside /tmp (a private tmpfs in the sandbox would hide /tmp anyway)."""
    folder = Path(tempfile.mkdtemp(prefix="harness-test-", dir="/var/tmp"))
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


def _run(name, task, root, isolation_mode, **kwargs):
    kwargs.setdefault("budget_s", 30)
    kwargs.setdefault("grace_s", 1.0)
    kwargs.setdefault("progress", False)
    kwargs.setdefault("score", False)
    return run_submission(
        SUBMISSIONS / f"{name}.py", task, results_root=root, isolation=isolation_mode, **kwargs
    )


def _probe(result) -> dict:
    return json.loads((result.run_dir / "work" / "out" / "probe.json").read_text())


@pytest.mark.parametrize("mode", ISOLATED)
def test_nothing_gets_through(mode, mini_task, outside_tmp, monkeypatch):  # noqa: F811
    cache = outside_tmp / "cache"
    (cache / "eval" / "some-key").mkdir(parents=True)
    monkeypatch.setenv("UNLEARN_HARNESS_CACHE", str(cache))
    runs = outside_tmp / "runs"
    earlier = runs / "mini" / "earlier-run"
    earlier.mkdir(parents=True)
    (earlier / "forget_0.csv").write_text("EARLIER-GENERATIONS")
    first = _run("good", mini_task, runs, mode)  # a board with one row, to be forged
    assert first.status == "OK", first.message + first.log_tail
    db = default_db(runs)
    db_bytes = db.read_bytes()
    home_secret = Path.home() / ".cache" / f"unlearn-harness-test-secret-{uuid.uuid4().hex[:8]}"
    home_secret.parent.mkdir(parents=True, exist_ok=True)
    home_secret.write_text("HOME-SECRET")
    sock_path = outside_tmp / "service.sock"
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(str(sock_path))
    server.listen(1)
    server.settimeout(0.2)
    model_file = Path(mini_task.model_dir) / "config.json"
    model_bytes = model_file.read_bytes()
    targets = {
        "harness_pid": os.getpid(),
        "read": [str(mini_task.eval_forget), str(earlier / "forget_0.csv"), str(home_secret), str(db)],
        "write": [
            str(db),
            str(first.run_dir / "good.py"),
            str(model_file),
            str(first.run_dir / "manifest.json"),
        ],
        "create": [str(cache / "eval" / "some-key"), str(cache / "eval"), str(runs)],
        "unix_socket": str(sock_path),
    }
    try:
        result = _run(
            "escape_probe", mini_task, runs, mode, params={"targets": json.dumps(targets)}, record=False
        )
        with pytest.raises(TimeoutError):
            server.accept()  # class 3: no connection through the unix socket
    finally:
        server.close()
        home_secret.unlink()
    assert result.status == "OK", result.message + result.log_tail
    found = _probe(result)
    # class 3: not root, no capability, the harness's processes out of sight, no sysctl writes
    assert found["uid"] != 0 or os.getuid() != 0
    cap_eff = next(line for line in found["status"].splitlines() if line.startswith("CapEff"))
    assert int(cap_eff.split()[1], 16) == 0
    for key in ("signal_harness", "proc_environ", "proc_cmdline", "proc_cwd", "proc_ns/net"):
        assert not found[key]["ok"], key
    assert not found["sysctl_write"]["ok"]
    assert found["interfaces"] == ["lo"]  # no network but its own loopback
    assert not found["unix_socket"]["ok"]
    # classes 1, 3, 6: hidden data (the scored split, other runs, the home, the board) by any path
    for path in targets["read"]:
        attempt = found[f"read:{path}"]
        assert not attempt["open"]["ok"] and not attempt["dir_fd"]["ok"] and not attempt["link"]["ok"], path
        assert attempt["cat"] == "", path
    # classes 1, 3: no write into the board, the run directory, the task's model, the cache
    for path in targets["write"]:
        assert not found[f"write:{path}"]["append"]["ok"] and found[f"write:{path}"]["shell"] != 0, path
    for path in targets["create"]:
        assert not found[f"create:{path}"]["ok"], path
    assert db.read_bytes() == db_bytes and model_file.read_bytes() == model_bytes
    assert "FORGED" not in (first.run_dir / "good.py").read_text()
    assert not list(cache.rglob("planted.txt")) and not list(runs.rglob("planted.txt"))


def test_planted_or_edited_cache_entries_never_hit(tmp_path, monkeypatch):
    from harness.inference import cache

    monkeypatch.setenv("UNLEARN_HARNESS_CACHE", str(tmp_path / "cache"))
    run_dir = tmp_path / "run"
    (run_dir / "mia_results").mkdir(parents=True)
    artifact = run_dir / "forget_0.csv"
    artifact.write_text("id,model_output\n1,true answer\n")
    cache.store("k" * 64, run_dir, [artifact], {"inference": 1.0})
    assert cache.lookup("k" * 64) is not None  # the harness's own entry
    assert (cache.cache_root() / ".secret").stat().st_mode & 0o077 == 0
    (cache.cache_root() / ("k" * 64) / "forget_0.csv").write_text("id,model_output\n1,forged\n")
    assert cache.lookup("k" * 64) is None  # edited: discarded
    assert not (cache.cache_root() / ("k" * 64)).exists()
    planted = cache.cache_root() / ("p" * 64)  # what a child that computed the key would write
    planted.mkdir()
    (planted / "forget_0.csv").write_text("id,model_output\n1,forged\n")
    (planted / "timings.json").write_text("{}")
    (planted / "entry.mac").write_text("0" * 64)
    assert cache.lookup("p" * 64) is None


@pytest.mark.parametrize("mode", ISOLATED)
def test_the_harness_cannot_be_stopped_and_daemons_die(mode, mini_task, tmp_path):  # noqa: F811
    params = {"harness_pid": os.getpid(), "pause": 1.0, "work": 6.0}
    started = time.monotonic()
    result = _run("stop_the_clock", mini_task, tmp_path / "runs", mode, budget_s=3, params=params)
    assert result.status == "TIMEOUT", result.message  # 6 s of work under a 3 s budget
    assert time.monotonic() - started < 20
    assert not any("paused" in w for w in result.warnings)  # the SIGSTOP never reached the harness
    time.sleep(4.5)  # the daemon would have written out/late.txt by now
    assert not (result.run_dir / "work" / "out" / "late.txt").exists()


def test_a_paused_harness_means_the_budget_was_not_enforced(mini_task, tmp_path):  # noqa: F811
    # unisolated, the child can stop the harness: the run must not pass as within its budget
    params = {"harness_pid": os.getpid(), "pause": 4.0, "work": 1.0}
    result = _run("stop_the_clock", mini_task, tmp_path / "runs", "none", budget_s=2, params=params)
    assert result.status == "TIMEOUT" and "paused" in result.message, result.message
    time.sleep(4.0)
    assert not (result.run_dir / "work" / "out" / "late.txt").exists()  # the lingering daemon was killed


@pytest.mark.parametrize("cgroup", [True, False], ids=["cgroup", "polled"])
def test_memfd_pages_count_against_the_memory_cap(cgroup, mini_task, tmp_path, monkeypatch):  # noqa: F811
    from harness.isolation import cgroup as cgroups

    if not cgroup:
        monkeypatch.setattr(cgroups, "create", lambda name, cap: None)
    elif (probe := cgroups.create(f"probe-{uuid.uuid4().hex[:6]}", None)) is None:
        pytest.skip("no memory cgroup can be made here")
    else:
        probe.remove()
    mode = isolation.detect_isolation("auto")
    result = _run(
        "memfd_hog", mini_task, tmp_path / "runs", mode, memory_cap_mb=400, params={"megabytes": 900}
    )
    assert result.status == "OUT_OF_MEMORY", result.message


def test_logs_keep_their_head_and_tail(mini_task, tmp_path, monkeypatch):  # noqa: F811
    monkeypatch.setattr(logs, "HEAD_BYTES", 1 << 20)
    monkeypatch.setattr(logs, "TAIL_BYTES", 1 << 20)
    mode = isolation.detect_isolation("auto")
    result = _run("chatty", mini_task, tmp_path / "runs", mode, params={"megabytes": 6})
    assert result.status == "OK", result.message
    for name in ("stdout.log", "stderr.log"):
        log = result.run_dir / "logs" / name
        assert log.stat().st_size < (2 << 20) + 4096
        text = log.read_text()
        assert "the harness cut" in text and text.startswith("chatter")
    assert "THE LAST LINE" in (result.run_dir / "logs" / "stdout.log").read_text()


def test_child_text_is_never_markup_or_escapes(mini_task, tmp_path):  # noqa: F811
    from harness.cli.run import _print_result

    result = _run("markup_message", mini_task, tmp_path / "runs", isolation.detect_isolation("auto"))
    assert result.status == "CRASHED"
    assert "\x1b" not in result.message and "\x1b" not in result.log_tail
    out = io.StringIO()
    _print_result(result, Console(file=out, width=200, force_terminal=False))  # no MarkupError
    shown = out.getvalue()
    assert "[/] closing tag" in shown and "[bold red]cleared[/]" in shown and "\x1b" not in shown


def test_a_broken_board_or_scored_file_fails_before_the_run(mini_task, tmp_path):  # noqa: F811
    import dataclasses

    runs = tmp_path / "runs"
    db = default_db(runs)
    db.parent.mkdir(parents=True)
    db.write_bytes(b"this is not a database" * 100)
    started = time.monotonic()
    with pytest.raises(USER_ERRORS, match="leaderboard"):
        _run("sleep_forever", mini_task, runs, "none", budget_s=60, score=True)
    assert time.monotonic() - started < 10 and not (runs / "mini").exists()
    broken = tmp_path / "broken.jsonl"
    broken.write_text('{"id": "x1sc1", "input": "a"\n')
    task = dataclasses.replace(mini_task, eval_forget=broken)
    with pytest.raises(USER_ERRORS, match="broken.jsonl"):
        _run("sleep_forever", task, tmp_path / "other", "none", budget_s=60, score=True, record=False)
    assert not (tmp_path / "other").exists()


@pytest.mark.parametrize("launcher", ["torchrun", "accelerate"])
@pytest.mark.parametrize("mode", ISOLATED)
def test_distributed_launchers_run_isolated(mode, launcher, mini_task, tmp_path):  # noqa: F811
    result = _run("ranks", mini_task, tmp_path / "runs", mode, launcher=launcher, processes=2, budget_s=90)
    assert result.status == "OK", result.message + result.log_tail
    out = result.run_dir / "work" / "out"
    assert {p.name for p in out.glob("rank-*")} == {"rank-0-of-2.txt", "rank-1-of-2.txt"}


def test_auto_never_means_unisolated(monkeypatch):
    monkeypatch.setattr(isolation, "_works", lambda mode: mode == "none")
    with pytest.raises(USER_ERRORS, match="--isolation none"):
        isolation.detect_isolation("auto")
    assert isolation.detect_isolation("none") == "none"


def test_every_record_says_which_isolation_and_the_board_marks_none(mini_task, tmp_path):  # noqa: F811
    from leaderboard.ranking import rank_board
    from leaderboard.store import Store

    runs = tmp_path / "runs"
    plain = _run("good", mini_task, runs, "none", variant="plain")
    boxed = _run("good", mini_task, runs, isolation.detect_isolation("auto"), variant="boxed")
    stored = {r.variant: r for r in Store(default_db(runs)).records()}
    assert (
        stored["plain"].isolation == "none" and stored["boxed"].isolation == boxed.record.isolation != "none"
    )
    assert plain.record.isolation == "none"
    board = rank_board(list(stored.values()), task="mini")
    flags = {row.record.variant: row.flags for row in [*board.ranked, *board.failed]}
    assert "unisolated" in flags["plain"] and "unisolated" not in flags["boxed"]


def test_seeds_make_one_group_and_seed_the_entry(mini_task, tmp_path):  # noqa: F811
    from harness.runner import run_group
    from leaderboard.store import Store

    runs = tmp_path / "runs"
    options = {"results_root": runs, "progress": False, "score": False, "isolation": "auto", "grace_s": 1.0}
    group, results = run_group(SUBMISSIONS / "seeded.py", [mini_task], [3, 5], **options)
    assert [r.status for r in results] == ["OK", "OK"]
    draws = [json.loads((r.run_dir / "work" / "out" / "draws.json").read_text()) for r in results]
    assert [d["seed"] for d in draws] == [3, 5] and [d["hash"] for d in draws] == ["3", "5"]
    assert draws[0]["random"] != draws[1]["random"] and draws[0]["numpy"] != draws[1]["numpy"]
    _, again = run_group(SUBMISSIONS / "seeded.py", [mini_task], [3], **options)
    assert (
        json.loads((again[0].run_dir / "work" / "out" / "draws.json").read_text())["random"]
        == draws[0]["random"]
    )
    stored = [r for r in Store(default_db(runs)).records() if r.group_id == group]
    assert sorted(r.seed for r in stored) == [3, 5] and len(stored) == 2
    _, plain = run_group(SUBMISSIONS / "good.py", [mini_task], [0], **options)  # no seed parameter
    assert any("no 'seed' parameter" in w for w in plain[0].warnings)


def test_bad_seeds_are_one_line_and_nothing_is_recorded(mini_task, tmp_path):  # noqa: F811
    from harness.cli.run import parse_seeds
    from harness.runner import run_group

    with pytest.raises(USER_ERRORS, match="comma-separated non-negative integers"):
        parse_seeds("--seeds", "0,x")
    with pytest.raises(USER_ERRORS, match="repeated"):
        parse_seeds("--seeds", "1,1")
    with pytest.raises(USER_ERRORS, match="non-negative integers"):
        run_group(SUBMISSIONS / "good.py", [mini_task], [0, -1], results_root=tmp_path / "runs")
    assert not (tmp_path / "runs").exists()


def test_the_entrys_output_is_shown_while_it_runs(mini_task, tmp_path):  # noqa: F811
    import threading

    from harness.cli.run import LiveOutput

    shown = io.StringIO()
    done: list = []
    worker = threading.Thread(
        target=lambda: done.append(
            _run(
                "talk_then_wait",
                mini_task,
                tmp_path / "runs",
                "auto",
                on_output=LiveOutput(shown),
                record=False,
            )
        )
    )
    worker.start()
    deadline = time.monotonic() + 20
    while "[entry] epoch 1" not in shown.getvalue() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert "[entry] epoch 1: loss 2.5" in shown.getvalue() and not done  # seen while the child still runs
    worker.join()
    assert done[0].status == "OK"
    assert "[entry!] warning from the entry red" in shown.getvalue() and "\x1b" not in shown.getvalue()
    assert "epoch 1" in (done[0].run_dir / "logs" / "stdout.log").read_text()  # and kept in the logs


def test_run_audit_records_robust_forget(tiny_task, tmp_path, monkeypatch):
    import harness.audit
    from leaderboard.ranking import rank_board
    from leaderboard.store import Store

    calls = []

    class Audited:
        robust_forget = 0.4242

    def fake_audit(checkpoint_dir, task, run_dir, *, progress=False):
        calls.append((Path(checkpoint_dir), task.name, Path(run_dir)))
        return Audited()

    monkeypatch.setattr(harness.audit, "audit", fake_audit)
    runs = tmp_path / "runs"
    result = _run("good", tiny_task, runs, "auto", score=True, audit=True, budget_s=120)
    assert result.status == "OK", result.message
    assert calls == [(result.run_dir / "work" / "out", "tiny", result.run_dir)]
    assert result.record.robust_forget == 0.4242 and "audit" in result.record.timings
    stored = Store(default_db(runs)).records()
    assert stored[0].robust_forget == 0.4242
    board = rank_board(stored, task="tiny", intervals=False)
    assert any("robust forget 0.424" in row.flags for row in board.ranked)
