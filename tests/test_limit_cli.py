"""`--limit N` on `run` and `score` (a quick, partial evaluation): the rows each CSV holds, the manifest and
the record, the board's separate unranked table and its flag, and the one-line refusals."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pandas as pd
import pytest
from test_runner import SUBMISSIONS
from test_runner_cli import invoke

from leaderboard.html import boards_to_html
from leaderboard.ranking import rank_board
from leaderboard.render import boards_to_csv, boards_to_json, boards_to_markdown
from tasks.data import read_mmlu

sys.path.insert(0, str(Path(__file__).parent / "fixtures" / "leaderboard"))
from fabricate import Numbers, make_record  # noqa: E402

LIMIT = 4


def _rows(path: Path) -> int:
    return len(pd.read_csv(path, keep_default_na=False))


def _run(tmp_path: Path, capsys, *extra: str) -> dict:
    args = ["run", str(SUBMISSIONS / "good.py"), "--task", "tiny", "--json", "--results", str(tmp_path)]
    code, out, err = invoke([*args, "--set", 'mode="copy"', *extra], capsys)
    assert code == 0, err
    return json.loads(out)


def test_run_limit_4_on_the_tiny_task(tiny_task, tmp_path: Path, capsys) -> None:
    full = _run(tmp_path, capsys)  # the target's own evaluation: in the engine's cache
    limited = _run(tmp_path, capsys, "--limit", str(LIMIT), "--name", "quick")
    run_dir = Path(limited["run_dir"])
    for name in ("forget_0.csv", "retain_0.csv", "mia_results/member_0.csv", "mia_results/nonmember_0.csv"):
        assert _rows(run_dir / name) == LIMIT, name
    subjects = read_mmlu(tiny_task.mmlu_dir, tiny_task.mmlu_subjects)
    assert len(subjects) > 1 and all(len(s.test) > LIMIT for s in subjects)
    for subject in subjects:
        assert _rows(run_dir / "mmlu_results" / f"{subject.name}.csv") == LIMIT, subject.name
    assert _rows(Path(full["run_dir"]) / "forget_0.csv") > LIMIT
    manifest = json.loads((run_dir / "manifest.json").read_text())
    assert manifest["limit"] == LIMIT and limited["limit"] == LIMIT
    assert (
        full["limit"] is None
        and json.loads((Path(full["run_dir"]) / "manifest.json").read_text())["limit"] is None
    )

    code, out, err = invoke(["board", "--db", str(tmp_path / "leaderboard.sqlite"), "--json"], capsys)
    assert code in (0, None), err
    (board,) = json.loads(out)
    ranked = [r["run_id"] for r in board["ranked"] if r["role"] == "entry"]
    assert ranked == [full["run_id"]]  # the limited run is never ranked against the full one
    (row,) = board["limited"]
    assert row["run_id"] == limited["run_id"] and row["rank"] is None and row["limit"] == LIMIT
    assert f"limited to {LIMIT} (partial evaluation, not comparable)" in row["flags"]
    code, out, _ = invoke(["board", "--db", str(tmp_path / "leaderboard.sqlite")], capsys)
    assert "Partial evaluations (--limit: not comparable with full runs, not ranked)" in out
    assert f"limited to {LIMIT}" in out


def test_score_limit_prints_json_and_says_what_it_scored(tiny_task, tmp_path: Path, capsys) -> None:
    args = ["score", str(tiny_task.model_dir), "--task", "tiny", "--limit", "2", "--run-dir"]
    code, out, err = invoke([*args, str(tmp_path / "json"), "--json"], capsys)
    assert code in (0, None), err
    assert "harmonic-mean-task-aggregate" in json.loads(out)
    assert "partial evaluation (--limit 2)" in err  # said on stderr, the JSON stays alone on stdout
    assert _rows(tmp_path / "json" / "forget_0.csv") == 2
    code, out, err = invoke([*args, str(tmp_path / "table")], capsys)
    assert code in (0, None), err
    assert "partial evaluation (--limit 2): the first 2 rows per split" in " ".join(out.split())


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--generations", "x"], "error: --limit goes with CHECKPOINT --task (it limits the evaluation)"),
        (
            ["ckpt", "--task", "tiny", "--official-env"],
            "error: --official-env runs the exact path on the whole",
        ),
    ],
)
def test_score_limit_refusals_are_one_line(args, message, capsys) -> None:
    code, _, err = invoke(["score", *args, "--limit", "3"], capsys)
    assert code == 2 and err.strip().startswith(message) and len(err.strip().splitlines()) == 1


def test_limit_must_be_positive(capsys) -> None:
    code, _, err = invoke(["run", str(SUBMISSIONS / "good.py"), "--task", "tiny", "--limit", "0"], capsys)
    assert code == 2 and "--limit" in err


def test_a_limited_group_is_ranked_apart_and_flagged(tmp_path: Path) -> None:
    high = Numbers(
        terms=(0.9,) * 12, task_aggregate=0.9, auc=0.5, mia_score=1.0, mmlu_average=0.9, final_score=0.9
    )
    low = Numbers(
        terms=(0.2,) * 12, task_aggregate=0.2, auc=0.5, mia_score=1.0, mmlu_average=0.2, final_score=0.2
    )
    records = [
        make_record("full", low, variant="v"),
        make_record("part", high, minute=1, variant="v", limit=4),  # scores higher, but on 4 rows only
        make_record("other", high, minute=2, variant="w", limit=8),
    ]
    board = rank_board(records, "tiny", intervals=False)
    assert [(r.record.run_id, r.rank) for r in board.ranked] == [("full", 1)]
    assert [(r.record.run_id, r.rank) for r in board.limited] == [("part", None), ("other", None)]
    assert "limited to 4 (partial evaluation, not comparable)" in board.limited[0].flags
    assert not any(
        "best of" in f for r in board.ranked for f in r.flags
    )  # its variant's limited run not counted
    (data,) = json.loads(boards_to_json([board]))
    assert [r["run_id"] for r in data["limited"]] == ["part", "other"]
    lines = boards_to_csv([board]).splitlines()
    header = lines[0].split(",")
    sections = {line.split(",")[header.index("run_id")]: line.split(",")[1] for line in lines[1:]}
    assert sections == {"full": "ranked", "part": "limited", "other": "limited"}
    page = boards_to_html([board])
    assert "Partial evaluations (--limit: not comparable with full runs, not ranked)" in page
    assert "limited to 8 (partial evaluation, not comparable)" in page
    assert "Partial evaluations" in boards_to_markdown([board])


def test_sweep_resume_does_not_take_a_limited_run_for_the_full_one() -> None:
    from dataclasses import replace

    from harness import sweep as sweeps
    from tasks.registry import describe_task

    task = describe_task("tiny")  # nothing is built
    (todo,) = sweeps.plan({"lr": [1e-4]}, {}, None)
    full = make_record("full", None, params={"lr": 1e-4}, status="OK", final_score=0.5, world_seed=0)
    limited = replace(full, run_id="quick", limit=LIMIT)
    assert [r.run_id for r in sweeps.resume([todo], [full], full.submission_sha256, task)[0].done] == ["full"]
    assert sweeps.resume([todo], [limited], full.submission_sha256, task)[0].left
