"""The run database: one SQLite file (stdlib sqlite3, WAL) holding one immutable row per run.

Each `Store.add` is one short transaction on its own connection, so any number of processes can record at
once (SQLite serialises the writers; a busy database is waited for, never skipped). The file carries an
application id and a schema version; older schemas are migrated in place, and a file that is not an
unlearn-harness leaderboard (corrupted, foreign, or from a newer harness) is refused with a `BoardError`
naming it, never replaced by an empty board.
"""

from __future__ import annotations

import json
import math
import os
import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import fields
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from leaderboard.errors import BoardError
from leaderboard.record import RunRecord

#: PRAGMA application_id of a leaderboard file ("ULHB" in ASCII)
APPLICATION_ID = 0x554C4842
#: the schema version this code writes (PRAGMA user_version); see MIGRATIONS
SCHEMA_VERSION = 4
DB_NAME = "leaderboard.sqlite"
RESULTS_ENV = "UNLEARN_HARNESS_RESULTS"
BUSY_TIMEOUT_S = 60.0

_JSON_FIELDS = ("params", "terms", "intervals", "timings")
_INT_FIELDS = ("seed", "world_seed", "limit")
_BOOL_FIELDS = ("eligible", "unchanged")
_REAL_FIELDS = (
    "task_aggregate",
    "auc",
    "mia_score",
    "mmlu_average",
    "final_score",
    "budget_s",
    "budget_used_s",
    "peak_rss_mb",
    "peak_gpu_mb",
    "robust_forget",
)

#: (version, description, statements); applied in order inside one transaction each
MIGRATIONS: tuple[tuple[int, str, tuple[str, ...]], ...] = (
    (
        1,
        "runs table, immutable records",
        (
            """CREATE TABLE runs (
                run_id TEXT PRIMARY KEY,
                created_at TEXT NOT NULL,
                task TEXT NOT NULL,
                submission_name TEXT NOT NULL,
                submission_sha256 TEXT NOT NULL,
                variant TEXT NOT NULL,
                params TEXT NOT NULL,
                status TEXT NOT NULL,
                role TEXT NOT NULL,
                message TEXT NOT NULL,
                terms TEXT,
                task_aggregate REAL,
                auc REAL,
                mia_score REAL,
                mmlu_average REAL,
                final_score REAL,
                eligible INTEGER,
                unchanged INTEGER NOT NULL,
                intervals TEXT NOT NULL,
                timings TEXT NOT NULL,
                budget_s REAL,
                budget_used_s REAL,
                peak_rss_mb REAL,
                peak_gpu_mb REAL,
                run_dir TEXT NOT NULL,
                harness_version TEXT NOT NULL
            )""",
            "CREATE INDEX runs_task ON runs (task, final_score)",
            """CREATE TRIGGER runs_no_update BEFORE UPDATE ON runs
               BEGIN SELECT RAISE(ABORT, 'leaderboard records are immutable'); END""",
            """CREATE TRIGGER runs_no_delete BEFORE DELETE ON runs
               BEGIN SELECT RAISE(ABORT, 'leaderboard records are immutable'); END""",
        ),
    ),
    (
        2,
        "seed groups: group_id, seed, world_seed (older rows: NULL, each its own one-seed group)",
        (
            "ALTER TABLE runs ADD COLUMN group_id TEXT",
            "ALTER TABLE runs ADD COLUMN seed INTEGER",
            "ALTER TABLE runs ADD COLUMN world_seed INTEGER",
            "CREATE INDEX runs_group ON runs (task, group_id)",
        ),
    ),
    (
        3,
        "provenance and audit: the isolation a run had, its robust forget score (older rows: NULL)",
        ("ALTER TABLE runs ADD COLUMN isolation TEXT", "ALTER TABLE runs ADD COLUMN robust_forget REAL"),
    ),
    (
        4,
        "partial evaluations: the --limit of a run (older rows: NULL, a full evaluation)",
        ('ALTER TABLE runs ADD COLUMN "limit" INTEGER',),
    ),
)


def default_db(results_root: Path | None = None) -> Path:
    """The leaderboard file: <results_root>/leaderboard.sqlite; the root defaults to $UNLEARN_HARNESS_RESULTS or ./runs."""
    if results_root is None:
        results_root = Path(os.environ.get(RESULTS_ENV) or "runs")
    return Path(results_root) / DB_NAME


def _to_sql(value: Any, name: str) -> Any:
    if name in _INT_FIELDS and value is not None:
        if isinstance(value, bool) or not isinstance(value, int):
            raise BoardError(f"a record's {name} must be an integer or None, not {value!r}")
        return value
    if name in _JSON_FIELDS:
        return None if value is None else json.dumps(value, allow_nan=True)
    if name in _BOOL_FIELDS:
        return None if value is None else int(bool(value))
    if name in _REAL_FIELDS and value is not None:
        value = float(value)
        # SQLite stores NaN as NULL, which would turn "scored NaN" (official edge case) into "not scored"
        return "NaN" if math.isnan(value) else value
    return value


def _from_sql(value: Any, name: str) -> Any:
    if name in _JSON_FIELDS:
        if value is None:
            return None
        loaded = json.loads(value)
        if name == "terms":
            return tuple(loaded)
        if name == "intervals":
            return {key: (low, high) for key, (low, high) in loaded.items()}
        return loaded
    if name in _BOOL_FIELDS:
        return None if value is None else bool(value)
    if name in _REAL_FIELDS and value is not None:
        return float(value)
    return value


_FIELDS = tuple(f.name for f in fields(RunRecord))


class Store:
    """The leaderboard database at `path` (created on the first `add`; reading a missing file gives no records)."""

    def __init__(self, path: Path | str) -> None:
        self.path = Path(path)
        if self.path.is_dir():
            raise BoardError(f"{self.path}: is a folder, not a leaderboard file")
        if self.path.exists():
            with self._connect() as conn:
                self._check(conn)

    # -- connections -------------------------------------------------------------------------------------
    @contextmanager
    def _connect(self) -> Iterator[sqlite3.Connection]:
        try:
            conn = sqlite3.connect(self.path, timeout=BUSY_TIMEOUT_S, isolation_level=None)
        except sqlite3.Error as exc:
            raise BoardError(f"{self.path}: cannot open the leaderboard database: {exc}") from None
        try:
            yield conn
        except sqlite3.DatabaseError as exc:
            raise self._explain(exc) from None
        finally:
            conn.close()

    def _explain(self, exc: sqlite3.Error) -> BoardError:
        text = str(exc)
        if "not a database" in text or "malformed" in text or "disk image" in text:
            return BoardError(
                f"{self.path}: not a valid SQLite leaderboard (corrupted or another kind of file)"
            )
        return BoardError(f"{self.path}: leaderboard database error: {text}")

    def _check(self, conn: sqlite3.Connection) -> int:
        """Validate the file's identity and version; returns the schema version (0 for a brand-new empty file)."""
        # one statement, so one consistent snapshot while another process may be creating the schema
        app_id, version, tables = conn.execute(
            "SELECT (SELECT application_id FROM pragma_application_id),"
            " (SELECT user_version FROM pragma_user_version), (SELECT count(*) FROM sqlite_master)"
        ).fetchone()
        if app_id == 0 and version == 0 and tables == 0:
            return 0
        if app_id != APPLICATION_ID:
            raise BoardError(f"{self.path}: not an unlearn-harness leaderboard (a foreign SQLite database)")
        if version > SCHEMA_VERSION:
            raise BoardError(
                f"{self.path}: written by a newer unlearn-harness (schema {version}, this one reads up to "
                f"{SCHEMA_VERSION}); upgrade the harness"
            )
        return version  # an older version is migrated on the next write; migrations only add

    def _migrate(self, conn: sqlite3.Connection) -> None:
        """Create or upgrade the schema under an exclusive write lock (safe when many processes start at once)."""
        if conn.execute("PRAGMA journal_mode=WAL").fetchone()[0].lower() != "wal":
            raise BoardError(f"{self.path}: cannot switch the leaderboard database to WAL mode")
        conn.execute("BEGIN IMMEDIATE")
        try:
            version = self._check(conn)
            if version == 0:
                conn.execute(
                    "CREATE TABLE schema_migrations (version INTEGER PRIMARY KEY, description TEXT NOT NULL,"
                    " applied_at TEXT NOT NULL)"
                )
                conn.execute(f"PRAGMA application_id = {APPLICATION_ID}")
            for number, description, statements in MIGRATIONS:
                if number <= version:
                    continue
                for statement in statements:
                    conn.execute(statement)
                conn.execute(
                    "INSERT INTO schema_migrations VALUES (?, ?, ?)",
                    (number, description, datetime.now(timezone.utc).isoformat(timespec="seconds")),
                )
                conn.execute(f"PRAGMA user_version = {number}")
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise

    def _with_retry(self, action, conn: sqlite3.Connection):
        # busy_timeout covers ordinary waits; a lock upgrade that SQLite refuses outright is retried here
        deadline = time.monotonic() + BUSY_TIMEOUT_S
        while True:
            try:
                return action(conn)
            except sqlite3.OperationalError as exc:
                if "locked" not in str(exc) and "busy" not in str(exc).lower():
                    raise
                if time.monotonic() > deadline:
                    raise BoardError(
                        f"{self.path}: the leaderboard database stayed locked for {BUSY_TIMEOUT_S:.0f} s"
                    ) from None
                time.sleep(0.05)

    # -- public API --------------------------------------------------------------------------------------
    def check(self) -> None:
        """Fail early (BoardError, one line naming the file) when a run could not be recorded here: the file
        is corrupted, foreign or newer, or it (or the folder it would be created in) is not writable.

        Cheap: one read of the header, SQLite's quick_check and a write lock taken and released; nothing is
        written. The runner calls it before a run starts, so a bad database never costs a run's budget.
        """
        if self.path.is_dir():
            raise BoardError(f"{self.path}: is a folder, not a leaderboard file")
        if not self.path.exists():
            folder = next((p for p in self.path.parents if p.exists()), Path("."))
            if not folder.is_dir() or not os.access(folder, os.W_OK | os.X_OK):
                raise BoardError(f"{self.path}: cannot be created: {folder} is not a writable folder")
            return
        for path, what in ((self.path, "the file"), (self.path.parent, "its folder")):
            if not os.access(path, os.W_OK):
                raise BoardError(f"{self.path}: not writable ({what} is read-only)")
        with self._connect() as conn:
            self._check(conn)
            result = conn.execute("PRAGMA quick_check(1)").fetchone()[0]
            if result != "ok":
                raise BoardError(f"{self.path}: the leaderboard database is damaged ({result})")

            def lock(conn: sqlite3.Connection) -> None:
                conn.execute("BEGIN IMMEDIATE")
                conn.execute("ROLLBACK")

            self._with_retry(lock, conn)

    def add(self, record: RunRecord) -> None:
        """Store one record in one transaction. Records are immutable: an existing run id is an error."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        row = tuple(_to_sql(getattr(record, name), name) for name in _FIELDS)
        placeholders = ", ".join("?" for _ in _FIELDS)
        columns = ", ".join(f'"{name}"' for name in _FIELDS)  # quoted: "limit" is an SQL keyword
        sql = f"INSERT INTO runs ({columns}) VALUES ({placeholders})"

        def write(conn: sqlite3.Connection) -> None:
            if conn.execute("PRAGMA user_version").fetchone()[0] != SCHEMA_VERSION:
                self._migrate(conn)
            else:
                self._check(conn)
            try:
                with conn:
                    conn.execute("BEGIN IMMEDIATE")
                    conn.execute(sql, row)
            except sqlite3.IntegrityError:
                raise BoardError(
                    f"{self.path}: run {record.run_id} is already recorded (records are immutable)"
                ) from None

        with self._connect() as conn:
            self._with_retry(write, conn)

    def records(self, task: str | None = None) -> list[RunRecord]:
        """All records (of one task), oldest first."""
        if not self.path.exists():
            return []
        with self._connect() as conn:
            if self._check(conn) == 0:
                return []
            columns = [row[1] for row in conn.execute("PRAGMA table_info(runs)")]
            where, args = ("WHERE task = ?", (task,)) if task is not None else ("", ())
            rows = conn.execute(f"SELECT * FROM runs {where} ORDER BY created_at, rowid", args).fetchall()
        return [self._record(dict(zip(columns, row))) for row in rows]

    def get(self, run_id: str) -> RunRecord:
        """The record with this run id, or the one whose id starts with it; BoardError if none or several."""
        matches = [r for r in self.records() if r.run_id == run_id]
        if not matches:
            matches = [r for r in self.records() if r.run_id.startswith(run_id)]
        if not matches:
            raise BoardError(f"{self.path}: no run with id {run_id!r}")
        if len(matches) > 1:
            shown = ", ".join(r.run_id for r in matches[:5])
            raise BoardError(
                f"{self.path}: run id prefix {run_id!r} is ambiguous ({len(matches)} runs: {shown})"
            )
        return matches[0]

    def select(self, text: str) -> tuple[str, list[RunRecord]]:
        """("run", [record]) or ("group", its records) for a run id, a group id, or a unique prefix of one
        (exact ids first); BoardError when nothing or several things match. A task's reference rows of one
        role are a group (`RunRecord.shared_group`, e.g. ``reference-target:tiny``), on older boards too."""
        records = self.records()
        runs = [r for r in records if r.run_id == text]
        groups = sorted({r.shared_group for r in records if r.shared_group == text})
        if not runs and not groups:
            runs = [r for r in records if r.run_id.startswith(text)]
            groups = sorted({g for r in records if (g := r.shared_group) and g.startswith(text)})
        if len(groups) == 1 and all(r.shared_group == groups[0] for r in runs):
            runs = []  # a prefix of a group id and of its own runs' ids names the group
        found = [f"run {r.run_id}" for r in runs] + [f"group {g}" for g in groups]
        if not found:
            raise BoardError(f"{self.path}: no run or group with id {text!r}")
        if len(found) > 1:
            if not groups:  # the message the run-only lookup always gave
                shown = ", ".join(r.run_id for r in runs[:5])
                raise BoardError(
                    f"{self.path}: run id prefix {text!r} is ambiguous ({len(runs)} runs: {shown})"
                )
            raise BoardError(f"{self.path}: id {text!r} is ambiguous ({', '.join(found[:5])})")
        if runs:
            return "run", runs
        return "group", [r for r in records if r.shared_group == groups[0]]

    def tasks(self) -> list[str]:
        """The task names with at least one record, sorted."""
        return sorted({r.task for r in self.records()})

    @staticmethod
    def _record(row: dict[str, Any]) -> RunRecord:
        return RunRecord(**{name: _from_sql(row[name], name) for name in _FIELDS if name in row})
