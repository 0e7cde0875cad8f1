"""The board's reference rows (harness.reference): built by the runner's record builder, recorded by `run`
and `board --task` where a board lacks them, quietly under --json. The tiny target's and gold model's
evaluations are in the engine's cache after the first test that evaluates them: each costs seconds."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from harness import __version__
from harness.cli import main
from leaderboard.record import RunRecord
from leaderboard.store import Store, default_db

GOOD = Path(__file__).parent / "fixtures" / "submissions" / "good.py"


def invoke(capsys, *args: str) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as exit_info:
        main(list(args))
    captured = capsys.readouterr()
    return exit_info.value.code, captured.out, captured.err


def roles(root: Path) -> list[str]:
    return sorted(r.role for r in Store(default_db(root)).records(task="tiny"))


def test_a_reference_row_comes_from_the_runs_record_builder(tiny_task, tmp_path, monkeypatch):
    import harness.runner
    from harness.reference import reference_record

    built = []

    def spy(task, **fields):
        record = real(task, **fields)
        built.append(record)
        return record

    real = harness.runner.build_record
    monkeypatch.setattr(harness.runner, "build_record", spy)
    record = reference_record("reference-target", tiny_task.model_dir, tiny_task, tmp_path, progress=False)
    assert built == [record]
    # what the builder derives for every run: the world seed, the version, rounded timings, the scores
    assert record.world_seed == 0 and record.harness_version == __version__
    assert record.timings and all(round(v, 3) == v for v in record.timings.values())
    assert record.role == "reference-target" and record.unchanged and record.variant == "reference"
    assert record.terms is not None and len(record.terms) == 12 and "final_score" in record.intervals
    assert Path(record.run_dir).parent == (tmp_path / "tiny").resolve()


@pytest.mark.slow
def test_run_records_the_missing_reference_rows_once(tiny_task, tmp_path, capsys):
    args = ["run", str(GOOD), "--task", "tiny", "--results", str(tmp_path), "--set", 'mode="copy"', "--json"]
    code, out, err = invoke(capsys, *args)
    assert code == 0, err
    assert json.loads(out)["status"] == "OK"  # stdout carries the JSON object only
    assert "reference rows" not in err  # quiet under --json
    assert roles(tmp_path) == ["entry", "reference-gold", "reference-target"]
    code, out, err = invoke(capsys, *args[:-1])  # a second run: the rows are there, nothing re-evaluated
    assert code == 0, err
    assert "reference rows" not in err
    assert roles(tmp_path) == ["entry", "entry", "reference-gold", "reference-target"]
    assert "equals the untouched target's" in out  # the summary compares with the row recorded before
    elsewhere = [
        "run",
        str(GOOD),
        "--task",
        "tiny",
        "--results",
        str(tmp_path / "none"),
        "--set",
        'mode="copy"',
    ]
    code, _, err = invoke(capsys, *elsewhere, "--no-record", "--json")
    assert code == 0, err
    assert not (tmp_path / "none" / "leaderboard.sqlite").exists()  # --no-record: no rows of any kind


def _entry(root: Path, run_id: str = "e1", **fields) -> None:
    """A recorded run without reference rows (a board made by an older harness, or a sweep's)."""
    Store(default_db(root)).add(
        RunRecord(
            run_id=run_id,
            created_at="2026-01-01T00:00:00+00:00",
            task="tiny",
            submission_name="ga",
            submission_sha256="0" * 64,
            terms=(0.5,) * 12,
            task_aggregate=0.5,
            auc=0.5,
            mia_score=1.0,
            mmlu_average=0.5,
            final_score=2 / 3,
            **fields,
        )  # fmt: skip
    )


def test_board_on_a_task_records_its_missing_reference_rows(tiny_task, tmp_path, capsys):
    _entry(tmp_path)
    db = str(default_db(tmp_path))
    code, out, _ = invoke(capsys, "board", "--db", db, "--json")  # no --task: nothing is added
    assert code == 0 and roles(tmp_path) == ["entry"]
    code, out, err = invoke(capsys, "board", "--db", db, "--task", "tiny", "--json")
    assert code == 0, err
    (board,) = json.loads(out)  # stdout: the JSON board only
    shown = {row["submission"]: row["rank"] for row in board["ranked"]}
    assert shown == {"ga": 1, "untouched-target": None, "gold-retain-only": None}
    assert roles(tmp_path) == ["entry", "reference-gold", "reference-target"]
    code, out, err = invoke(capsys, "board", "--db", db, "--task", "tiny")
    assert code == 0 and roles(tmp_path) == ["entry", "reference-gold", "reference-target"]
    assert "untouched-target" in out and "reference rows" not in err  # nothing missing any more
    code, _, err = invoke(capsys, "board", "--db", db, "--task", "lume")
    assert code == 2 and "no runs recorded for task 'lume'" in err  # no board is made out of nothing


def test_a_reference_row_that_fails_is_one_warning_and_the_board_still_shows(
    tiny_task, tmp_path, capsys, monkeypatch
):
    import harness.inference

    def broken(*args, **kwargs):
        raise RuntimeError("the gold model is corrupted\nsecond line")

    monkeypatch.setattr(harness.inference, "evaluate", broken)
    _entry(tmp_path)
    code, out, err = invoke(capsys, "board", "--db", str(default_db(tmp_path)), "--task", "tiny")
    assert code == 0 and "ga" in out
    assert (
        "warning: the reference rows of tiny (world 0) were not recorded: the gold model is corrupted\n"
        in err
    )
    assert roles(tmp_path) == ["entry"]


def _world(seed: int):
    """The tiny task on world ``seed``, where it is built (these tests never build a world)."""
    from tasks.registry import describe_task

    task = describe_task("tiny", {"seed": str(seed)})
    if task.missing():
        pytest.skip(
            f"tiny world {seed} is not built in the cache (`unlearn-harness run ... --world-seeds 0,{seed}`)"
        )
    return task


def by_world(root: Path) -> list[tuple[str, int | None]]:
    """(role, world seed) of the board's reference rows, sorted."""
    rows = Store(default_db(root)).records(task="tiny")
    return sorted((r.role, r.world_seed) for r in rows if r.role != "entry")


def test_each_world_gets_its_own_reference_rows_once(tiny_task, tmp_path):
    from harness.reference import ensure_reference_rows, missing_roles, record_missing_rows
    from leaderboard.ranking import rank_board

    world1 = _world(1)
    first = ensure_reference_rows(tiny_task, tmp_path, progress=False)
    assert sorted((r.role, r.world_seed) for r in first) == [("reference-gold", 0), ("reference-target", 0)]
    # world 0's rows are not world 1's: a world-1 run is compared with its own target
    assert [role for role, _ in missing_roles(world1, default_db(tmp_path))] == [
        "reference-target",
        "reference-gold",
    ]
    added = record_missing_rows([tiny_task, world1], tmp_path, progress=False)
    assert sorted((r.role, r.world_seed) for r in added) == [("reference-gold", 1), ("reference-target", 1)]
    assert record_missing_rows([tiny_task, world1], tmp_path, progress=False) == []  # nothing missing now
    assert by_world(tmp_path) == [
        ("reference-gold", 0),
        ("reference-gold", 1),
        ("reference-target", 0),
        ("reference-target", 1),
    ]
    board = rank_board(Store(default_db(tmp_path)).records(), "tiny", resamples=100)
    (target,) = [row for row in board.ranked if row.record.role == "reference-target"]
    assert target.group.group_id == "reference-target:tiny" and target.group.units == ((0, None), (1, None))
    finals = [r.final_score for r in (*first, *added) if r.role == "reference-target"]
    assert target.value("final_score") == pytest.approx(sum(finals) / 2)


def test_run_with_world_seeds_records_each_worlds_reference_rows(tiny_task, tmp_path, capsys, monkeypatch):
    import harness.cli.run

    _world(1)
    ran = []

    # the entry's runs are another test's (the slow one above): only the reference rows here
    def no_runs(submission, tasks, seeds, **options):
        ran.append([task.extra.get("seed") for task in tasks])
        return "g", []

    monkeypatch.setattr(harness.cli.run, "run_group", no_runs)
    args = ["run", str(GOOD), "--task", "tiny", "--world-seeds", "0,1", "--results", str(tmp_path)]
    code, _, err = invoke(capsys, *args)
    assert code == 0, err
    assert ran == [["0", "1"]]
    said = " ".join(err.split())  # the console wraps at its width
    assert "reference rows tiny (world 1): evaluating untouched-target and gold-retain-only once" in said
    assert by_world(tmp_path) == [
        ("reference-gold", 0),
        ("reference-gold", 1),
        ("reference-target", 0),
        ("reference-target", 1),
    ]
    code, _, err = invoke(capsys, *args)
    assert code == 0 and "reference rows" not in err and len(by_world(tmp_path)) == 4


def test_board_on_a_task_records_the_reference_rows_of_the_worlds_it_has_runs_on(tiny_task, tmp_path, capsys):
    from harness.reference import board_tasks

    _world(1)
    _entry(tmp_path, "w1", world_seed=1, group_id="g", seed=0)
    records = Store(default_db(tmp_path)).records()
    assert [task.extra["seed"] for task in board_tasks("tiny", records)] == ["1"]
    _entry(tmp_path)  # a run of no known world (an older board): the default world's rows too
    records = Store(default_db(tmp_path)).records()
    assert [task.extra["seed"] for task in board_tasks("tiny", records)] == ["0", "1"]
    assert board_tasks("lume", records) == [] and board_tasks("nonesuch", records) == []
    code, out, err = invoke(capsys, "board", "--db", str(default_db(tmp_path)), "--task", "tiny", "--json")
    assert code == 0, err
    assert [w for _, w in by_world(tmp_path)] == [0, 1, 0, 1]
    (board,) = json.loads(out)
    (target,) = [row for row in board["ranked"] if row["role"] == "reference-target"]
    assert [(s["world_seed"], s["seed"]) for s in target["per_seed"]] == [(0, None), (1, None)]
