"""The SQLite run store: round trip, immutability, bad files, migrations and concurrent writers."""

from __future__ import annotations

import math
import multiprocessing
import os
import sqlite3
import sys
from dataclasses import replace
from pathlib import Path

import pytest

from leaderboard.errors import BoardError
from leaderboard.record import RunRecord
from leaderboard.store import APPLICATION_ID, SCHEMA_VERSION, Store, default_db

sys.path.insert(0, str(Path(__file__).parent / "fixtures" / "leaderboard"))
from fabricate import make_record  # noqa: E402


def full_record(run_id: str = "r1") -> RunRecord:
    return RunRecord(
        run_id=run_id,
        created_at="2026-01-01T00:00:00+00:00",
        task="tiny",
        submission_name="npo",
        submission_sha256="ab" * 32,
        variant="lr=1e-5",
        params={"lr": 1e-5, "epochs": 2, "nested": {"a": [1, 2]}},
        status="SALVAGED",
        role="entry",
        message="salvaged the last checkpoint",
        terms=(0.1, 0.2, 0.30000000000000004, 1.0, 0.0, 0.5, 0.6, 0.7, 0.8, 0.9, 0.25, 1 / 3),
        task_aggregate=0.0,
        auc=0.6391111111111112,
        mia_score=0.7217777777777776,
        mmlu_average=0.2369320609599772,
        final_score=0.3195699462459183,
        eligible=False,
        unchanged=True,
        intervals={"final_score": (0.25, 0.375), "mia_score": (0.5, 0.9)},
        timings={"unlearn": 12.5, "eval": 3.25},
        budget_s=600.0,
        budget_used_s=12.5,
        peak_rss_mb=1024.5,
        peak_gpu_mb=None,
        run_dir="/tmp/runs/r1",
        harness_version="0.1.0",
    )


def test_round_trip_keeps_every_field_exactly(tmp_path: Path) -> None:
    store = Store(tmp_path / "lb.sqlite")
    record = full_record()
    store.add(record)
    assert store.records() == [record]
    assert store.get("r1") == record
    # eligible None and a NaN final (official edge case: a NaN term) survive too
    nan_record = make_record("r2", None, final_score=float("nan"), eligible=None, terms=(0.5, float("nan")))
    store.add(nan_record)
    back = store.get("r2")
    assert back.eligible is None and math.isnan(back.final_score) and math.isnan(back.terms[1])


def test_records_filter_by_task_and_keep_insertion_time_order(tmp_path: Path) -> None:
    store = Store(tmp_path / "lb.sqlite")
    store.add(make_record("b", None, minute=2, task="t1"))
    store.add(make_record("a", None, minute=1, task="t1"))
    store.add(make_record("c", None, minute=0, task="t2"))
    assert [r.run_id for r in store.records("t1")] == ["a", "b"]
    assert [r.run_id for r in store.records()] == ["c", "a", "b"]
    assert store.tasks() == ["t1", "t2"]


def test_missing_file_reads_as_empty_and_is_not_created(tmp_path: Path) -> None:
    path = tmp_path / "nothing" / "lb.sqlite"
    assert Store(path).records() == []
    assert not path.exists()


def test_records_are_immutable(tmp_path: Path) -> None:
    store = Store(tmp_path / "lb.sqlite")
    store.add(make_record("r1", None))
    with pytest.raises(BoardError, match="already recorded"):
        store.add(make_record("r1", None, status="OK"))
    conn = sqlite3.connect(store.path)
    with pytest.raises(sqlite3.IntegrityError, match="immutable"):
        conn.execute("UPDATE runs SET status = 'OK'")
    with pytest.raises(sqlite3.IntegrityError, match="immutable"):
        conn.execute("DELETE FROM runs")
    conn.close()
    assert len(store.records()) == 1


def test_run_id_prefixes(tmp_path: Path) -> None:
    store = Store(tmp_path / "lb.sqlite")
    for run_id in ("abc123", "abd456", "abc"):
        store.add(make_record(run_id, None))
    assert store.get("abd").run_id == "abd456"
    assert store.get("abc").run_id == "abc"  # an exact id wins over prefixes
    with pytest.raises(BoardError, match="ambiguous"):
        store.get("ab")
    with pytest.raises(BoardError, match="no run with id 'zz'"):
        store.get("zz")


def test_schema_version_and_migrations_table(tmp_path: Path) -> None:
    store = Store(tmp_path / "lb.sqlite")
    store.add(make_record("r1", None))
    conn = sqlite3.connect(store.path)
    assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    assert conn.execute("PRAGMA application_id").fetchone()[0] == APPLICATION_ID
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert [v for (v,) in conn.execute("SELECT version FROM schema_migrations")] == [1, 2, 3, 4]
    conn.close()


def test_corrupted_file_is_an_error_naming_it(tmp_path: Path) -> None:
    path = tmp_path / "lb.sqlite"
    path.write_bytes(b"this is not a database at all" * 100)
    with pytest.raises(BoardError, match=r"lb\.sqlite: not a valid SQLite leaderboard"):
        Store(path)
    assert path.read_bytes().startswith(b"this is not")  # untouched


def test_damaged_leaderboard_is_an_error(tmp_path: Path) -> None:
    path = tmp_path / "lb.sqlite"
    store = Store(path)
    for i in range(5):
        store.add(make_record(f"r{i}", None, message="x" * 500))
    data = bytearray(path.read_bytes())
    data[:16] = b"garbage garbage!"  # the SQLite header
    path.write_bytes(bytes(data))
    with pytest.raises(BoardError, match="lb.sqlite"):
        Store(path).records()


def test_foreign_database_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "other.sqlite"
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE runs (x)")
    conn.commit()
    conn.close()
    with pytest.raises(BoardError, match="other.sqlite: not an unlearn-harness leaderboard"):
        Store(path)


def test_newer_schema_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "lb.sqlite"
    Store(path).add(make_record("r1", None))
    conn = sqlite3.connect(path)
    conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    conn.commit()
    conn.close()
    with pytest.raises(BoardError, match="newer unlearn-harness"):
        Store(path)


def test_default_db(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("UNLEARN_HARNESS_RESULTS", raising=False)
    assert default_db() == Path("runs") / "leaderboard.sqlite"
    assert default_db(tmp_path) == tmp_path / "leaderboard.sqlite"
    monkeypatch.setenv("UNLEARN_HARNESS_RESULTS", str(tmp_path / "elsewhere"))
    assert default_db() == tmp_path / "elsewhere" / "leaderboard.sqlite"


WRITERS, PER_WRITER = 20, 5


def _writer(path: str, index: int, barrier) -> None:
    barrier.wait()  # every process creates/opens the fresh database at the same moment
    store = Store(path)
    for k in range(PER_WRITER):
        store.add(
            make_record(f"w{index:02d}-{k}", None, minute=k, submission_name=f"sub{index}", variant=str(k))
        )


def test_twenty_processes_recording_at_once_lose_nothing(tmp_path: Path) -> None:
    path = tmp_path / "lb.sqlite"
    ctx = multiprocessing.get_context("fork")
    barrier = ctx.Barrier(WRITERS)
    procs = [ctx.Process(target=_writer, args=(str(path), i, barrier)) for i in range(WRITERS)]
    for proc in procs:
        proc.start()
    for proc in procs:
        proc.join(120)
    assert [proc.exitcode for proc in procs] == [0] * WRITERS
    records = Store(path).records()
    assert len(records) == WRITERS * PER_WRITER
    expected = {f"w{i:02d}-{k}" for i in range(WRITERS) for k in range(PER_WRITER)}
    assert {r.run_id for r in records} == expected
    for record in records:
        index, k = record.run_id[1:].split("-")
        assert record.submission_name == f"sub{int(index)}" and record.variant == k


def old_schema_database(path: Path, run_ids: list[str]) -> None:
    """A leaderboard as schema 1 wrote it (before seed groups), with a few rows."""
    from leaderboard.store import MIGRATIONS

    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute(
        "CREATE TABLE schema_migrations (version INTEGER PRIMARY KEY, description TEXT NOT NULL,"
        " applied_at TEXT NOT NULL)"
    )
    for statement in MIGRATIONS[0][2]:
        conn.execute(statement)
    conn.execute("INSERT INTO schema_migrations VALUES (1, 'runs table, immutable records', '2026-01-01')")
    conn.execute(f"PRAGMA application_id = {APPLICATION_ID}")
    conn.execute("PRAGMA user_version = 1")
    columns = [row[1] for row in conn.execute("PRAGMA table_info(runs)")]
    assert "group_id" not in columns
    for minute, run_id in enumerate(run_ids):
        values = {name: "" for name in columns}
        values.update(
            run_id=run_id,
            created_at=f"2026-01-01T00:0{minute}:00+00:00",
            task="tiny",
            params="{}",
            status="OK",
            role="entry",
            variant="default",
            final_score=0.5 + minute / 10,
            unchanged=0,
            intervals="{}",
            timings="{}",
            terms=None,
            eligible=None,
        )
        for name in ("task_aggregate", "auc", "mia_score", "mmlu_average", "budget_s", "budget_used_s"):
            values[name] = None
        values.update(peak_rss_mb=None, peak_gpu_mb=None)
        conn.execute(
            f"INSERT INTO runs ({', '.join(columns)}) VALUES ({', '.join('?' for _ in columns)})",
            [values[name] for name in columns],
        )
    conn.close()


def test_an_old_schema_database_is_read_and_migrated(tmp_path: Path) -> None:
    path = tmp_path / "lb.sqlite"
    old_schema_database(path, ["old1", "old2"])
    store = Store(path)
    old = store.records()  # reading does not migrate: the old rows are each their own one-seed group
    assert [(r.run_id, r.group_id, r.seed, r.world_seed, r.group_key) for r in old] == [
        ("old1", None, None, None, "old1"),
        ("old2", None, None, None, "old2"),
    ]
    new = make_record("new", None, minute=5, group_id="g7", seed=2, world_seed=1)
    store.add(new)
    conn = sqlite3.connect(path)
    assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION == 4
    assert [v for (v,) in conn.execute("SELECT version FROM schema_migrations")] == [1, 2, 3, 4]
    assert "runs_group" in {name for (name,) in conn.execute("SELECT name FROM sqlite_master")}
    conn.close()
    back = store.records()
    assert [r.run_id for r in back] == ["old1", "old2", "new"]
    assert back[:2] == old and back[2] == new and back[2].unit == (1, 2)


def test_a_failed_migration_leaves_the_old_schema_whole(tmp_path: Path) -> None:
    path = tmp_path / "lb.sqlite"
    old_schema_database(path, ["old1"])
    conn = sqlite3.connect(path)
    conn.execute("CREATE INDEX runs_group ON runs (task)")  # the migration's last statement will now fail
    conn.commit()
    conn.close()
    with pytest.raises(BoardError, match=r"lb\.sqlite: leaderboard database error: index runs_group already"):
        Store(path).add(make_record("new", None, group_id="g"))
    conn = sqlite3.connect(path)
    assert conn.execute("PRAGMA user_version").fetchone()[0] == 1
    assert "group_id" not in [row[1] for row in conn.execute("PRAGMA table_info(runs)")]  # ALTERs rolled back
    assert [v for (v,) in conn.execute("SELECT version FROM schema_migrations")] == [1]
    conn.close()
    assert [r.run_id for r in Store(path).records()] == ["old1"]


@pytest.mark.parametrize("bad", ["1", 1.5, True])
def test_a_non_integer_seed_is_refused_and_nothing_recorded(tmp_path: Path, bad) -> None:
    store = Store(tmp_path / "lb.sqlite")
    with pytest.raises(BoardError, match=r"a record's seed must be an integer or None, not "):
        store.add(make_record("r1", None, seed=bad))
    assert store.records() == []


def test_check_fails_early_on_what_would_fail_a_record(tmp_path: Path) -> None:
    fresh = Store(tmp_path / "sub" / "lb.sqlite")
    fresh.check()  # a file not yet created in a folder that can be created: fine, and nothing is made
    assert not (tmp_path / "sub").exists()
    fresh.add(make_record("r1", None))
    fresh.check()
    corrupt = tmp_path / "bad.sqlite"
    corrupt.write_bytes(b"this is not a database at all" * 100)
    store = object.__new__(Store)  # Store() itself refuses the file; check() must too, on its own
    store.path = corrupt
    with pytest.raises(BoardError, match=r"bad\.sqlite: not a valid SQLite leaderboard"):
        store.check()
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    with pytest.raises(BoardError, match=r"cannot be created: .*a-file is not a writable folder"):
        Store(blocker / "lb.sqlite").check()
    with pytest.raises(BoardError, match="is a folder"):
        Store(tmp_path).check()


@pytest.mark.skipif(hasattr(os, "geteuid") and os.geteuid() == 0, reason="root may write read-only files")
def test_check_refuses_a_read_only_database(tmp_path: Path) -> None:
    store = Store(tmp_path / "lb.sqlite")
    store.add(make_record("r1", None))
    store.path.chmod(0o444)
    try:
        with pytest.raises(BoardError, match="not writable"):
            store.check()
    finally:
        store.path.chmod(0o644)


def test_a_limited_run_keeps_its_limit(tmp_path: Path) -> None:
    """The "limit" column (an SQL keyword, quoted) stores a partial evaluation's --limit; a full run's is NULL."""
    store = Store(tmp_path / "lb.sqlite")
    store.add(replace(make_record("full", None), limit=None))
    store.add(replace(make_record("part", None, minute=1), limit=4))
    assert [(r.run_id, r.limit) for r in store.records()] == [("full", None), ("part", 4)]
