"""Ranking like the official site: the published 7B and 1B boards, best-of, references, ties, failures."""

from __future__ import annotations

import json
import random
import sys
from pathlib import Path

import pytest

from leaderboard.ranking import rank_all, rank_board
from leaderboard.record import RunRecord

sys.path.insert(0, str(Path(__file__).parent / "fixtures" / "leaderboard"))
from fabricate import make_record  # noqa: E402

OFFICIAL = json.loads(
    (Path(__file__).parent / "fixtures" / "leaderboard" / "official_leaderboards.json").read_text()
)


def official_records(board: str) -> list[RunRecord]:
    """The published rows as records; eligibility as the scorer sets it (MMLU not below the threshold)."""
    data = OFFICIAL[board]
    threshold = data["mmlu_threshold"]
    rows = data["eligible"] + data["honorary"]
    records = []
    for minute, row in enumerate(rows):
        records.append(
            make_record(
                f"{board}-{minute:02d}",
                None,
                minute=minute,
                task=board,
                submission_name=row["team"],
                final_score=row["final"],
                task_aggregate=row["task_aggregate"],
                mia_score=row["mia"],
                mmlu_average=row["mmlu"],
                eligible=None if threshold is None else not row["mmlu"] < threshold,
            )
        )
    random.Random(board).shuffle(records)  # the input order must not matter
    return records


@pytest.mark.parametrize("board_name", ["7B", "1B"])
def test_published_boards_rank_in_the_same_order_with_the_same_split(board_name: str) -> None:
    board = rank_board(official_records(board_name), board_name)
    published = OFFICIAL[board_name]
    assert [(row.rank, row.record.submission_name) for row in board.ranked] == [
        (row["rank"], row["team"]) for row in published["eligible"]
    ]
    assert [row.record.submission_name for row in board.below_threshold] == [
        r["team"] for r in published["honorary"]
    ]
    assert board.has_threshold == (published["mmlu_threshold"] is not None)
    assert board.failed == ()


def test_published_ties_share_a_rank_and_keep_submission_order() -> None:
    board = rank_board(official_records("7B"), "7B")
    ranks = {row.record.submission_name: row.rank for row in board.ranked}
    # 0.3082 and 0.3080 differ beyond three digits: distinct ranks; the two equal 0.165 rows share rank 11
    assert (ranks["hk…@georgetown.edu"], ranks["GIL-IIMAS UNAM"]) == (6, 7)
    assert (ranks["h.s…0@gmail.com"], ranks["JU-CSE-NLP'25"], ranks["Tsotsa"]) == (11, 11, 13)
    one_b = rank_board(official_records("1B"), "1B")
    assert [row.rank for row in one_b.ranked][-5:] == [20, 20, 20, 20, 24]


def test_equal_scores_are_ordered_by_submission_time() -> None:
    early = make_record("z-early", None, minute=1, submission_name="late-name", final_score=0.5)
    late = make_record("a-late", None, minute=2, submission_name="early-name", final_score=0.5)
    board = rank_board([late, early], "tiny")
    assert [row.record.run_id for row in board.ranked] == ["z-early", "a-late"]
    assert [row.rank for row in board.ranked] == [1, 1]


def scored(run_id: str, final: float, minute: int = 0, interval=None, **fields) -> RunRecord:
    intervals = {"final_score": interval} if interval else {}
    return make_record(run_id, None, minute=minute, final_score=final, intervals=intervals, **fields)


def test_best_run_per_submission_and_variant_unless_all_runs() -> None:
    records = [
        scored("a1", 0.40, 0, submission_name="npo", variant="v1"),
        scored("a2", 0.55, 1, submission_name="npo", variant="v1"),
        scored("a3", 0.45, 2, submission_name="npo", variant="v1"),
        scored("b1", 0.50, 3, submission_name="npo", variant="v2"),
        scored("c1", 0.30, 4, submission_name="ga", variant="v1"),
    ]
    board = rank_board(records, "tiny")
    assert [(row.record.run_id, row.rank, row.runs) for row in board.ranked] == [
        ("a2", 1, 3),
        ("b1", 2, 1),
        ("c1", 3, 1),
    ]
    everything = rank_board(records, "tiny", all_runs=True)
    assert [row.record.run_id for row in everything.ranked] == ["a2", "b1", "a3", "a1", "c1"]
    assert [row.rank for row in everything.ranked] == [1, 2, 3, 4, 5]


def test_below_threshold_run_shown_only_when_it_beats_the_variants_eligible_best() -> None:
    records = [
        scored("ok", 0.40, 0, submission_name="npo", eligible=True),
        scored("low-better", 0.60, 1, submission_name="npo", eligible=False),
        scored("low-worse", 0.30, 2, submission_name="ga", eligible=True),
        scored("low-dominated", 0.20, 3, submission_name="ga", eligible=False),
    ]
    board = rank_board(records, "tiny")
    assert [row.record.run_id for row in board.ranked] == ["ok", "low-worse"]
    assert [row.record.run_id for row in board.below_threshold] == ["low-better"]
    assert all(row.rank is None for row in board.below_threshold)
    assert board.has_threshold


def test_reference_rows_are_shown_marked_and_not_ranked() -> None:
    records = [
        scored("t-old", 0.10, 0, role="reference-target", submission_name="target"),
        scored("t-new", 0.16, 1, role="reference-target", submission_name="target", unchanged=True),
        scored("gold", 0.70, 2, role="reference-gold", submission_name="gold"),
        scored("e1", 0.50, 3),
        scored("e2", 0.12, 4, submission_name="other"),
    ]
    board = rank_board(records, "tiny")
    assert [(row.record.run_id, row.rank) for row in board.ranked] == [
        ("gold", None),
        ("e1", 1),
        ("t-new", None),
        ("e2", 2),
    ]
    flags = {row.record.run_id: row.flags for row in board.ranked}
    assert flags["t-new"] == ("reference: target (did nothing)",)
    assert flags["e2"] == () and rank_board([scored("u", 0.1, unchanged=True)], "tiny").ranked[0].flags == (
        "unchanged checkpoint",
    )
    assert flags["gold"] == ("reference: gold (retain only)",)
    assert [row.reference for row in board.ranked] == [True, False, True, False]


def test_runs_tied_with_the_leader_by_interval_overlap() -> None:
    records = [
        scored("lead", 0.60, 0, interval=(0.55, 0.65), submission_name="a"),
        scored("close", 0.58, 1, interval=(0.50, 0.56), submission_name="b"),
        scored("apart", 0.50, 2, interval=(0.45, 0.54), submission_name="c"),
        scored("unknown", 0.40, 3, submission_name="d"),  # no interval: never marked
    ]
    board = rank_board(records, "tiny")
    assert [(row.record.run_id, row.tied) for row in board.ranked] == [
        ("lead", True),
        ("close", True),
        ("apart", False),
        ("unknown", False),
    ]
    alone = rank_board(records[:1] + records[2:], "tiny")
    assert not any(row.tied for row in alone.ranked)


def test_flags_and_failed_runs_never_ranked() -> None:
    records = [
        scored("salv", 0.50, 0, status="SALVAGED"),
        make_record("t1", None, minute=1, submission_name="rmu", status="TIMEOUT"),
        make_record("t2", None, minute=2, submission_name="rmu", status="CRASHED", message="boom"),
        scored("nan", float("nan"), 3, submission_name="weird"),
        scored("ok-no-score", 0.1, 4, submission_name="x", status="EVAL_ERROR"),
    ]
    board = rank_board(records, "tiny")
    assert [(row.record.run_id, row.rank, row.flags) for row in board.ranked] == [("salv", 1, ("salvaged",))]
    failed = {row.record.run_id: (row.flags, row.runs) for row in board.failed}
    assert failed == {
        "t2": (("failed: CRASHED",), 2),
        "nan": (("failed: not scored",), 1),
        "ok-no-score": (("failed: EVAL_ERROR",), 1),
    }
    assert {row.record.run_id for row in rank_board(records, "tiny", all_runs=True).failed} == {
        "t1",
        "t2",
        "nan",
        "ok-no-score",
    }


def test_one_board_per_task() -> None:
    records = [scored("a", 0.5, task="t2"), scored("b", 0.4, task="t1"), scored("c", 0.3, task="t1")]
    boards = rank_all(records)
    assert [(b.task, [r.record.run_id for r in b.ranked]) for b in boards] == [("t1", ["b"]), ("t2", ["a"])]
    assert [b.task for b in rank_all(records, task="t2")] == ["t2"]
