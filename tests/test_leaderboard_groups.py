"""Seed groups on the board: aggregates, the two-level interval, paired group comparison and stability."""

from __future__ import annotations

import shutil
import statistics
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from leaderboard.bootstrap import bootstrap_group, bootstrap_group_pair, bootstrap_pair, bootstrap_run
from leaderboard.compare import compare_groups, compare_selected
from leaderboard.errors import BoardError
from leaderboard.groups import group_records
from leaderboard.ranking import rank_board
from leaderboard.stability import board_stability

sys.path.insert(0, str(Path(__file__).parent / "fixtures" / "leaderboard"))
from fabricate import constant_run, fabricate_group, fabricate_run, make_record  # noqa: E402

HEADLINES = ("final_score", "task_aggregate", "mia_score", "mmlu_average")


def width(interval: tuple[float, float]) -> float:
    return interval[1] - interval[0]


def copies(source: Path, root: Path, count: int) -> list[Path]:
    """`count` identical run directories: seeds that all agree."""
    out = []
    for i in range(count):
        shutil.copytree(source, root / f"copy{i}")
        out.append(root / f"copy{i}")
    return out


def test_seed_variance_widens_the_two_level_interval(tmp_path: Path) -> None:
    records = fabricate_group(
        tmp_path, "g1", [0, 1, 2], forget_by_seed={0: 0.05, 1: 0.35, 2: 0.7}, rows=40, mia_shift=0.1
    )
    result = bootstrap_group([r.run_dir for r in records], n=600)
    for key in ("final_score", "task_aggregate"):
        assert width(result.intervals[key]) > 1.5 * width(result.row_intervals[key]), key
    # the interval is of the mean over seeds: it holds the mean, not necessarily each seed
    finals = [r.final_score for r in records]
    low, high = result.intervals["final_score"]
    assert low < statistics.mean(finals) < high


def test_seeds_that_agree_give_the_row_interval(tmp_path: Path) -> None:
    fabricate_run(tmp_path / "one", seed=3, rows=25, mia_shift=0.2)
    dirs = copies(tmp_path / "one", tmp_path, 3)
    result = bootstrap_group(dirs, n=500)
    alone = bootstrap_run(tmp_path / "one", n=500)
    for key in HEADLINES:
        assert result.intervals[key] == pytest.approx(result.row_intervals[key], abs=1e-12), key
        assert result.intervals[key] == pytest.approx(alone[key], abs=1e-12), key


def test_a_one_seed_group_is_its_run(tmp_path: Path) -> None:
    fabricate_run(tmp_path / "one", seed=4, rows=20)
    result = bootstrap_group([tmp_path / "one"], n=300, seed=2)
    assert result.intervals == result.row_intervals == bootstrap_run(tmp_path / "one", n=300, seed=2)


def test_board_has_one_row_per_group_with_mean_and_seed_sd(tmp_path: Path) -> None:
    group = fabricate_group(tmp_path, "grp", [0, 1, 2], forget_by_seed={0: 0.1, 1: 0.3, 2: 0.5}, rows=30)
    single = fabricate_run(tmp_path / "solo", seed=9, forget=0.9, rows=30)
    solo = make_record(
        "solo",
        single,
        tmp_path / "solo",
        minute=9,
        submission_name="ga",
        intervals=bootstrap_run(tmp_path / "solo"),
    )
    records = [*group, solo]
    board = rank_board(records, "tiny", resamples=300)
    assert [(row.group.group_id, row.group.size, row.rank) for row in board.ranked] == [
        ("grp", 3, 1),
        ("solo", 1, 2),
    ]
    row = board.ranked[0]
    finals = [r.final_score for r in group]
    assert row.value("final_score") == pytest.approx(statistics.mean(finals))
    assert row.group.sd("final_score") == pytest.approx(statistics.stdev(finals))
    assert board.ranked[1].group.sd("final_score") is None  # one seed: no SD
    assert board.ranked[1].interval("final_score") == solo.intervals["final_score"]  # its stored row interval
    low, high = row.interval("final_score")
    assert low < row.value("final_score") < high


def test_a_failed_seed_is_listed_and_not_averaged(tmp_path: Path) -> None:
    group = fabricate_group(tmp_path, "g", [0, 1], rows=15)
    crashed = make_record("g-run2", None, minute=5, group_id="g", seed=2, status="CRASHED")
    board = rank_board([*group, crashed], "tiny", resamples=100)
    (row,) = board.ranked
    assert row.group.size == 2 and "1 of 3 seeds failed (not averaged in)" in row.flags
    assert [r.record.run_id for r in board.failed] == ["g-run2"]


def test_group_comparison_pairs_by_seed_and_row(tmp_path: Path) -> None:
    a = fabricate_group(tmp_path, "a", [0, 1, 2], forget=0.7, rows=40)
    b = fabricate_group(tmp_path, "b", [2, 0, 1], forget=0.1, rows=40, submission="rmu")
    comparison = compare_selected(("group", a), ("group", b), n=300)
    lines = {line.key: line for line in comparison.lines}
    assert comparison.units == ((None, 0), (None, 1), (None, 2))
    assert lines["task_aggregate"].verdict == "better"
    mean_a = statistics.mean(r.task_aggregate for r in a)
    mean_b = statistics.mean(r.task_aggregate for r in b)
    assert lines["task_aggregate"].diff == pytest.approx(mean_b - mean_a)
    # a group against itself: every difference is exactly 0
    same = compare_groups(*group_records(a), *group_records(a), n=100)
    assert {line.interval for line in same.lines if line.interval} == {(0.0, 0.0)}


def test_one_seed_groups_compare_as_the_paired_run_bootstrap(tmp_path: Path) -> None:
    (a,) = fabricate_group(tmp_path, "a", [0], forget=0.6, rows=20)
    (b,) = fabricate_group(tmp_path, "b", [0], forget=0.2, rows=20)
    by_seed = compare_selected(("group", [a]), ("group", [b]), n=200)
    paired = bootstrap_pair(a.run_dir, b.run_dir, n=200)
    assert {line.key: line.interval for line in by_seed.lines if line.key in HEADLINES} == {
        key: paired.diffs[key] for key in HEADLINES
    }


def test_different_seed_sets_are_one_clear_error(tmp_path: Path) -> None:
    a = fabricate_group(tmp_path, "a", [0, 1, 2], rows=10)
    b = fabricate_group(tmp_path, "b", [0, 1], rows=10)
    with pytest.raises(BoardError) as info:
        compare_selected(("group", a), ("group", b), n=50)
    message = str(info.value)
    assert message == (
        "a and b were run on different seed sets ({0, 1, 2} vs {0, 1}): compare groups run on the same seeds"
    )
    with pytest.raises(BoardError, match="different seed sets"):
        compare_selected(("group", a), ("run", [b[0]]), n=50)


def hand_made_board(root: Path) -> list:
    """A: seeds 0 and 1 with finals 0.7 and 0.5; B: one seed, 0.55 (its MIA score 0); C: three seeds of 0.4.

    Every row of a run scores the same, so only the seeds vary: A's resampled mean is 0.7 (1/4), 0.6 (1/2)
    or 0.5 (1/4), B's is 0.55 and C's 0.4. By hand: P(rank 1) = 3/4, 1/4, 0; E[rank] = 1.25, 1.75, 3.
    """
    plan = [
        ("A", 0, dict(term=0.6, mmlu=0.5)),
        ("A", 1, dict(term=0.25, mmlu=0.25)),
        ("B", 0, dict(term=0.9, mmlu=0.75, auc=1.0)),
        ("C", 0, dict(term=0.1, mmlu=0.1)),
        ("C", 1, dict(term=0.1, mmlu=0.1)),
        ("C", 2, dict(term=0.1, mmlu=0.1)),
    ]
    records = []
    for minute, (name, seed, kwargs) in enumerate(plan):
        run_dir = root / f"{name}{seed}"
        numbers = constant_run(run_dir, **kwargs)
        records.append(
            make_record(
                f"{name}-{seed}",
                numbers,
                run_dir,
                minute=minute,
                submission_name=name,
                group_id=f"group-{name}",
                seed=seed,
            )
        )
    return records


def test_stability_on_a_hand_made_board(tmp_path: Path) -> None:
    records = hand_made_board(tmp_path)
    finals = {r.run_id: r.final_score for r in records}
    assert finals["A-0"] == pytest.approx(0.7) and finals["A-1"] == pytest.approx(0.5)
    assert finals["B-0"] == pytest.approx(0.55) and finals["C-2"] == pytest.approx(0.4)
    result = board_stability(rank_board(records, "tiny", intervals=False), n=4000, seed=1)
    rows = {row.submission: row for row in result.rows}
    assert [rows[k].rank for k in "ABC"] == [1, 2, 3]
    # 3 standard errors of a proportion near 3/4 over 4,000 resamples: 0.021
    assert rows["A"].p_rank1 == pytest.approx(0.75, abs=0.021)
    assert rows["B"].p_rank1 == pytest.approx(0.25, abs=0.021)
    assert rows["C"].p_rank1 == 0.0
    assert rows["A"].expected_rank == pytest.approx(1.25, abs=0.021)
    assert rows["C"].expected_rank == 3.0
    assert sum(row.p_rank1 for row in result.rows) == pytest.approx(1.0)
    # V2 (MIA term 1 - AUC): A 0.4333, B 0.55, C 0.2333 -> B first; V1 (HM with AUC and MMLU): B 0.894,
    # A 0.421, C 0.106. One pair of three swaps: tau = (2 - 1) / 3. Without MIA: A 0.4, B 0.825, C 0.1
    assert (rows["A"].rank_v2, rows["B"].rank_v2, rows["C"].rank_v2) == (2, 1, 3)
    assert (rows["A"].rank_v1, rows["B"].rank_v1, rows["C"].rank_v1) == (2, 1, 3)
    assert result.tau_v1 == pytest.approx(1 / 3) and result.tau_v2 == pytest.approx(1 / 3)
    assert result.changed_without_mia == 2


def test_stability_pairs_groups_on_the_same_seeds(tmp_path: Path) -> None:
    """Two groups on the same seeds draw the same seeds: B (A's runs, each +0.01) is first every time."""
    records = []
    for name, bump in (("A", 0.0), ("B", 0.01)):
        for seed, term in ((0, 0.2), (1, 0.8)):
            run_dir = tmp_path / f"{name}{seed}"
            numbers = constant_run(run_dir, term=term + bump, mmlu=0.5)
            records.append(
                make_record(f"{name}{seed}", numbers, run_dir, submission_name=name, group_id=name, seed=seed)
            )
    result = board_stability(rank_board(records, "tiny", intervals=False), n=500)
    assert {row.submission: row.p_rank1 for row in result.rows} == {"B": 1.0, "A": 0.0}


def test_stability_bad_input(tmp_path: Path) -> None:
    (only,) = fabricate_group(tmp_path, "g", [0], rows=10)
    with pytest.raises(BoardError, match="stability needs at least two ranked variants, found 1"):
        board_stability(rank_board([only], "tiny", intervals=False))
    gone = make_record("gone", None, submission_name="x", final_score=0.9, run_dir=str(tmp_path / "nowhere"))
    with pytest.raises(BoardError, match="run gone: its row-level artifacts are not on disk"):
        board_stability(rank_board([only, gone], "tiny", intervals=False))


def test_worlds_draw_their_own_rows(tmp_path: Path) -> None:
    """Runs of two worlds (other data, other row ids) still bootstrap together: rows are drawn per world."""
    fabricate_run(tmp_path / "w0", seed=1, rows=20)
    fabricate_run(tmp_path / "w1", seed=2, rows=20)
    together = bootstrap_group([tmp_path / "w0", tmp_path / "w1"], [0, 1], n=200)
    assert np.isfinite(together.intervals["final_score"]).all()


# -- reference rows: one row per role over the worlds, paired by world ----------------------------------------
REFERENCE_NAMES = {"reference-target": "untouched-target", "reference-gold": "gold-retain-only"}


def fabricated(
    root: Path, name: str, key: str, minute: int, numbers: dict, *, intervals: bool = False, **fields
):
    """A fabricated run `name` (its rows seeded by `key`, with `numbers`) and its record with `fields`
    (and its row bootstrap intervals where ``intervals``)."""
    run_dir = root / name
    made = fabricate_run(run_dir, seed=zlib_seed(key), **numbers)
    if intervals:
        fields["intervals"] = bootstrap_run(run_dir)
    return make_record(name, made, run_dir, minute=minute, **fields)


def reference_rows(root: Path, role: str, worlds: list, *, grouped: bool = True, minute: int = 0, **kwargs):
    """A task's reference rows of one role as harness.reference records them: one per world, run seed None,
    the role's group id (``grouped``; an older board's rows have none)."""
    from leaderboard.record import reference_group_id

    group_id = reference_group_id("tiny", role) if grouped else None
    return [
        fabricated(
            root,
            f"{role}-w{world}-m{minute + k}",
            f"{role}/{world}/{minute + k}",
            minute + k,
            kwargs,
            intervals=True,
            submission_name=REFERENCE_NAMES[role],
            variant="reference",
            role=role,
            world_seed=world,
            group_id=group_id,
            unchanged=role == "reference-target",
        )  # fmt: skip
        for k, world in enumerate(worlds)
    ]


def zlib_seed(text: str) -> int:
    import zlib

    return zlib.crc32(text.encode())


def world_group(root: Path, group_id: str, worlds: list[int], seeds: list[int], **kwargs) -> list:
    """An entry's group over worlds x seeds (`run --seeds ... --world-seeds ...`)."""
    units = [(world, seed) for world in worlds for seed in seeds]
    return [
        fabricated(
            root,
            f"{group_id}-w{world}-s{seed}",
            f"{group_id}/{world}/{seed}",
            10 + k,
            kwargs,
            submission_name="npo",
            group_id=group_id,
            seed=seed,
            world_seed=world,
        )  # fmt: skip
        for k, (world, seed) in enumerate(units)
    ]


def test_the_reference_rows_of_every_world_are_one_board_row(tmp_path: Path) -> None:
    target = reference_rows(tmp_path, "reference-target", [0, 1, 2], forget=0.9, rows=20)
    gold = reference_rows(tmp_path, "reference-gold", [0, 1, 2], forget=0.2, rows=20)
    entry = world_group(tmp_path, "g", [0, 1, 2], [0], forget=0.4, rows=20)
    board = rank_board([*target, *gold, *entry], "tiny", resamples=200)
    rows = {
        row.record.role: [r for r in board.ranked if r.record.role == row.record.role] for row in board.ranked
    }
    assert {role: len(found) for role, found in rows.items()} == {
        "reference-target": 1,
        "reference-gold": 1,
        "entry": 1,
    }
    (row,) = rows["reference-target"]
    assert row.group.group_id == "reference-target:tiny" and row.rank is None
    assert row.group.units == ((0, None), (1, None), (2, None))
    finals = [r.final_score for r in target]
    assert row.value("final_score") == pytest.approx(statistics.mean(finals))
    assert row.group.sd("final_score") == pytest.approx(statistics.stdev(finals))
    assert "mean over worlds 0, 1, 2" in row.flags
    low, high = row.interval("final_score")  # two-level: worlds, then the rows of each world
    assert low <= statistics.mean(finals) <= high


def test_an_older_boards_reference_rows_join_their_roles_row(tmp_path: Path) -> None:
    """Rows without a group id, a row of no known world (before world seeds), a world recorded twice."""
    legacy = reference_rows(tmp_path, "reference-target", [None], grouped=False, forget=0.5, rows=10)
    old = reference_rows(tmp_path, "reference-target", [0, 1], grouped=False, minute=1, forget=0.9, rows=10)
    again = reference_rows(tmp_path, "reference-target", [1], minute=5, forget=0.8, rows=10)
    (alone,) = rank_board(legacy, "tiny", resamples=50).ranked  # an old board as it was: its one row
    assert alone.record.run_id == legacy[0].run_id and alone.group.size == 1
    board = rank_board([*legacy, *old, *again], "tiny", resamples=50)
    (row,) = board.ranked
    # one row per world: world 1's latest, and the row of no known world gives way to world 0's
    assert [r.run_id for r in row.group.records] == [old[0].run_id, again[0].run_id]
    assert row.value("final_score") == pytest.approx((old[0].final_score + again[0].final_score) / 2)


def test_a_group_compares_with_the_untouched_target_by_world(tmp_path: Path) -> None:
    target = reference_rows(tmp_path, "reference-target", [0, 1, 2], forget=0.9, rows=30)
    entry = world_group(tmp_path, "g", [0, 1], [0, 1], forget=0.2, rows=30)
    comparison = compare_selected(("group", target), ("group", entry), n=300)
    assert comparison.units == ((0, 0), (0, 1), (1, 0), (1, 1))
    # each world's target stands for every seed of that world; world 2 has no entry run and is left out
    assert [r.run_id for r in comparison.a_group.records] == [target[w].run_id for w in (0, 0, 1, 1)]
    assert "world 2 (not in g) is left out" in comparison.note
    lines = {line.key: line for line in comparison.lines}
    expected = statistics.mean(r.final_score for r in entry) - statistics.mean(
        r.final_score for r in target[:2]
    )
    assert lines["final_score"].diff == pytest.approx(expected)
    dirs_a = [target[w].run_dir for w in (0, 0, 1, 1)]
    paired = bootstrap_group_pair(dirs_a, [r.run_dir for r in entry], [0, 0, 1, 1], n=300)
    assert lines["final_score"].interval == paired.diffs["final_score"]
    assert lines["task_aggregate"].verdict == "better"
    # the other way round: the same pairing, the signs flipped
    back = {line.key: line for line in compare_selected(("group", entry), ("group", target), n=300).lines}
    assert back["final_score"].diff == pytest.approx(-expected)
    # a run without seeds (a plain `run`) pairs with its own world's target
    (solo,) = world_group(tmp_path / "solo", "solo", [2], [0], forget=0.2, rows=30)
    plain = replace(solo, run_id="plain", seed=None, group_id=None)
    one = compare_selected(("group", target), ("run", [plain]), n=100)
    assert [r.run_id for r in one.a_group.records] == [target[2].run_id]


def test_a_target_without_the_groups_world_is_one_clear_error(tmp_path: Path) -> None:
    target = reference_rows(tmp_path, "reference-target", [0], rows=10)
    entry = world_group(tmp_path, "g", [0, 1], [0], rows=10)
    with pytest.raises(BoardError) as info:
        compare_selected(("group", entry), ("group", target), n=50)
    assert str(info.value) == (
        "reference-target:tiny has no run on world 1 of g ({?@world0} vs {0@world0, 0@world1}): "
        "record it with `unlearn-harness run` on that world"
    )


def test_a_boards_reference_rows_are_selected_as_one_group(tmp_path: Path) -> None:
    from leaderboard.store import Store

    store = Store(tmp_path / "board.sqlite")
    rows = [
        *reference_rows(tmp_path, "reference-target", [0], grouped=False, rows=5),  # an older board's
        *reference_rows(tmp_path, "reference-target", [1], minute=1, rows=5),
        *reference_rows(tmp_path, "reference-gold", [0], minute=2, rows=5),
    ]
    for record in rows:
        store.add(record)
    kind, found = store.select("reference-target:tiny")
    assert kind == "group" and [r.run_id for r in found] == [rows[0].run_id, rows[1].run_id]
    assert store.select("reference-gold")[1] == [rows[2]]  # a prefix names it too
