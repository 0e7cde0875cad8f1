"""`unlearn-harness board` and `board compare` end to end on a fabricated leaderboard (no runner needed)."""

from __future__ import annotations

import csv
import io
import json
import os
import re
import stat
import statistics
import subprocess
import sys
from pathlib import Path

import pytest

from harness.cli import main

sys.path.insert(0, str(Path(__file__).parent / "fixtures" / "leaderboard"))
from fabricate import demo_board, seeds_demo_board  # noqa: E402


@pytest.fixture(scope="module")
def demo_db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """8 scored runs (2 references, one salvaged, one below the threshold, one unchanged) and a timeout."""
    return demo_board(tmp_path_factory.mktemp("demo-runs"))


def run_cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as exit_info:
        main(list(args))
    captured = capsys.readouterr()
    return exit_info.value.code, captured.out, captured.err


def test_table_shows_ranks_intervals_sections_and_flags(demo_db: Path, capsys) -> None:
    code, out, err = run_cli(capsys, "board", "--db", str(demo_db))
    assert code == 0, err
    assert "Task tiny — eligible" in out
    assert "Below the utility threshold" in out and "grad_ascent" in out
    assert "Failed runs" in out and "TIMEOUT" in out
    assert "reference: target (did nothing)" in out and "reference: gold (retain only)" in out
    assert "salvaged" in out and "unchanged checkpoint" in out and "best of 2 runs" in out
    assert "1 ≈" in out  # the leader's interval overlaps the runner-up's in this fixture


def test_json_board(demo_db: Path, capsys) -> None:
    code, out, _ = run_cli(capsys, "board", "--db", str(demo_db), "--json")
    assert code == 0
    (board,) = json.loads(out)
    ranked = [(row["rank"], row["run_id"]) for row in board["ranked"]]
    assert ranked == [
        (None, "8d1e5b0c44"),
        (1, "a41f09d2c3"),
        (2, "b7c2d1e0f9"),
        (3, "d15ea5e001"),
        (4, "e1e2e3e4e5"),
        (None, "3f9c2a1e7b"),
    ]
    assert [row["run_id"] for row in board["below_threshold"]] == ["c0ffee1234"]
    assert [(row["run_id"], row["status"]) for row in board["failed"]] == [("f00dbabe99", "TIMEOUT")]
    for row in board["ranked"]:
        low, high = row["intervals"]["final_score"]
        assert low <= row["final_score"] <= high


def test_all_runs_shows_every_run(demo_db: Path, capsys) -> None:
    _, out, _ = run_cli(capsys, "board", "--db", str(demo_db), "--format", "json", "--all-runs")
    ids = [row["run_id"] for row in json.loads(out)[0]["ranked"]]
    assert "a4d5e6f7a8" in ids and len(ids) == 7


def test_csv_and_markdown(demo_db: Path, capsys, tmp_path: Path) -> None:
    code, out, _ = run_cli(capsys, "board", "--db", str(demo_db), "--format", "csv")
    assert code == 0
    rows = list(csv.DictReader(io.StringIO(out)))
    assert [row["section"] for row in rows].count("ranked") == 6
    assert {row["section"] for row in rows} == {"ranked", "below_threshold", "failed"}
    leader = next(row for row in rows if row["rank"] == "1")
    assert (
        float(leader["final_score_low"]) <= float(leader["final_score"]) <= float(leader["final_score_high"])
    )
    target = tmp_path / "out" / "board.md"
    code, _, err = run_cli(
        capsys, "board", "--db", str(demo_db), "--format", "markdown", "--output", str(target)
    )
    assert code == 0 and f"wrote {target}" in err
    text = target.read_text()
    assert "| 1 ≈ | npo | lr=1e-5 |" in text and "**Failed runs (not ranked)**" in text
    assert [p.name for p in target.parent.iterdir()] == ["board.md"]  # no temporary file left behind


OFFICIAL_NAMES = [
    f"{split} Task{task} {kind}"
    for split in ("forget", "retain")
    for task in (1, 2, 3)
    for kind in ("regurgitation", "knowledge")
]


def test_csv_and_json_carry_the_12_terms_by_name(demo_db: Path, capsys) -> None:
    """CSV: one column per term, named after the official term (forget_Task1_regurgitation, ...); JSON: `terms`
    stays the list in the official order, `terms_by_label` maps each name to its value (rows and seeds)."""
    from leaderboard.store import Store

    stored = {r.run_id: r.terms for r in Store(demo_db).records()}
    code, out, _ = run_cli(capsys, "board", "--db", str(demo_db), "--format", "csv")
    assert code == 0
    reader = csv.DictReader(io.StringIO(out))
    columns = [name.replace(" ", "_") for name in OFFICIAL_NAMES]
    assert reader.fieldnames[-12:] == columns
    rows = list(reader)
    for row in rows:
        terms = stored[row["run_id"]]
        if terms is None:  # the timed-out run: no terms, empty cells
            assert row["section"] == "failed" and all(row[c] == "" for c in columns)
        else:
            assert [float(row[c]) for c in columns] == list(terms)
    assert sum(stored[row["run_id"]] is not None for row in rows) == 7
    code, out, _ = run_cli(capsys, "board", "--db", str(demo_db), "--json")
    (board,) = json.loads(out)
    for row in board["ranked"] + board["below_threshold"]:
        assert list(row["terms_by_label"]) == OFFICIAL_NAMES
        assert list(row["terms_by_label"].values()) == row["terms"] == list(stored[row["run_id"]])
        (seed,) = row["per_seed"]
        assert seed["terms_by_label"] == row["terms_by_label"]
    assert board["failed"][0]["terms"] is None and board["failed"][0]["terms_by_label"] is None


def test_unknown_task_and_bad_databases_end_in_one_line(demo_db: Path, capsys, tmp_path: Path) -> None:
    code, out, err = run_cli(capsys, "board", "--db", str(demo_db), "--task", "lume")
    assert (
        code == 2
        and err.count("\n") == 1
        and "no runs recorded for task 'lume' (tasks with runs: tiny)" in err
    )
    broken = tmp_path / "broken.sqlite"
    broken.write_text("definitely not sqlite\n" * 200)
    code, _, err = run_cli(capsys, "board", "--db", str(broken))
    assert (
        code == 2
        and err == f"error: {broken}: not a valid SQLite leaderboard (corrupted or another kind of file)\n"
    )
    code, out, _ = run_cli(capsys, "board", "--db", str(tmp_path / "none.sqlite"))
    assert code == 0 and "No runs recorded" in out and not (tmp_path / "none.sqlite").exists()


def test_compare_by_prefix_with_verdicts(demo_db: Path, capsys) -> None:
    code, out, err = run_cli(capsys, "board", "compare", "d15", "a41", "--db", str(demo_db), "--json")
    assert code == 0, err
    data = json.loads(out)
    assert (data["a"], data["b"]) == ("d15ea5e001", "a41f09d2c3")
    lines = {line["key"]: line for line in data["lines"]}
    assert len(data["lines"]) == 4 + 1 + 12
    final = lines["final_score"]
    assert final["interval"][0] > 0 and final["verdict"] == "better"
    assert final["diff"] == pytest.approx(final["b"] - final["a"])
    code, out, _ = run_cli(capsys, "board", "--db", str(demo_db), "compare", "a41f", "a41f09d2c3")
    assert code == 0 and out.count("not distinguishable") == 4
    code, _, err = run_cli(capsys, "board", "compare", "a4", "d15", "--db", str(demo_db))
    assert code == 2 and "ambiguous" in err and err.count("\n") == 1
    code, _, err = run_cli(capsys, "board", "compare", "f00d", "d15", "--db", str(demo_db))
    assert code == 2 and "has no scores to compare (status TIMEOUT)" in err


def test_html_page_is_self_contained(demo_db: Path, capsys, tmp_path: Path) -> None:
    page = tmp_path / "board.html"
    code, _, err = run_cli(capsys, "board", "--db", str(demo_db), "--format", "html", "--output", str(page))
    assert code == 0, err
    html = page.read_text()
    # three trade-off plots (forget efficacy against retain and against MMLU, MIA score against MMLU), one point
    # per shown run in each: 4 ranked entries + 1 below the threshold as circles, the 2 reference rows as
    # diamonds; the legend adds 2 circles and 2 diamonds
    assert html.count("<circle cx") == 3 * 5 + 2 and html.count("<polygon") == 3 * 2 + 2
    for name in ("forget-retain", "forget-utility", "mia-utility"):
        assert html.count(f'data-plot="{name}" data-points="7"') == 1
    # a detail view per shown run (7), closed, with its 12 terms as bars; each point links to its run's view
    assert html.count('<details class="terms">') == 7 and html.count('<rect class="term"') == 7 * 12
    targets = re.findall(r'<a href="#(terms-[^"]+)">', html)
    assert len(targets) == 3 * 7 and all(html.count(f'id="{t}"') == 1 for t in set(targets))
    assert 'id="terms-tiny-a41f09d2c3"' in html  # the leader's view, named by its run id
    # the spread plot: one dot per seed (every row here is one run) and one mean bar per shown row (6 + 1)
    assert html.count('<circle class="seed"') == 7 and html.count('<rect class="mean"') == 7
    for resource in ("<script", "<link", "src=", "url(", "@import", "https://"):
        assert resource not in html
    assert html.replace('xmlns="http://www.w3.org/2000/svg"', "").count("http://") == 0
    # the default output is next to the database
    code, _, err = run_cli(capsys, "board", "--db", str(demo_db), "--format", "html")
    assert code == 0 and demo_db.with_suffix(".html").is_file()


@pytest.fixture(scope="module")
def seeds_db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Three variants on seeds 0-2, one on seeds 0-1, one single run (fabricate.seeds_demo_board)."""
    return seeds_demo_board(tmp_path_factory.mktemp("seed-runs"))


def test_board_rows_are_seed_groups(seeds_db: Path, capsys) -> None:
    code, out, err = run_cli(capsys, "board", "--db", str(seeds_db), "--json")
    assert code == 0, err
    (board,) = json.loads(out)
    rows = {
        row["variant"] if row["submission"] == "rmu" else row["submission"]: row for row in board["ranked"]
    }
    assert {name: row["seeds"] for name, row in rows.items()} == {
        "steady": 3,
        "fragile": 3,
        "grad_diff": 3,
        "sugd": 2,
        "npo": 1,
    }
    fragile = rows["fragile"]
    finals = [seed["final_score"] for seed in fragile["per_seed"]]
    assert [seed["seed"] for seed in fragile["per_seed"]] == [0, 1, 2]
    assert fragile["final_score"] == pytest.approx(sum(finals) / 3)
    assert fragile["sd"]["final_score"] == pytest.approx(statistics.stdev(finals))
    two_level, rows_only = fragile["intervals"]["final_score"], fragile["row_intervals"]["final_score"]
    assert two_level[1] - two_level[0] > rows_only[1] - rows_only[0]
    assert (
        rows["npo"]["sd"]["final_score"] is None and rows["npo"]["intervals"] == rows["npo"]["row_intervals"]
    )
    steady = rows["steady"]  # a group's terms are the means of its seeds' terms, by name
    for name, value in steady["terms_by_label"].items():
        assert value == pytest.approx(statistics.mean(s["terms_by_label"][name] for s in steady["per_seed"]))
    code, out, _ = run_cli(capsys, "board", "--db", str(seeds_db))
    assert code == 0 and "±" in out and "Seeds 1: a single run" in out


def test_html_draws_every_seed_and_each_mean(seeds_db: Path, capsys, tmp_path: Path) -> None:
    page = tmp_path / "seeds.html"
    code, _, err = run_cli(capsys, "board", "--db", str(seeds_db), "--format", "html", "--output", str(page))
    assert code == 0, err
    html = page.read_text()
    seeds = 3 + 3 + 3 + 2 + 1
    # the spread plot: a dot per seed and a bar per row; the two trade-off plots: a dot per seed of a group
    assert html.count('<rect class="mean"') == 5
    assert html.count('<circle class="seed"') == seeds + 3 * (seeds - 1)
    # a group's detail view: the mean of each term as a bar, each seed as a dot on it and a column
    assert html.count('<details class="terms">') == 5
    assert html.count('fill="#1d2330" fill-opacity="0.6"') == 12 * (seeds - 1)


def test_compare_groups_by_id_and_bad_seed_sets(seeds_db: Path, capsys) -> None:
    code, out, err = run_cli(capsys, "board", "compare", "9a1", "7f6", "--db", str(seeds_db), "--json")
    assert code == 0, err
    data = json.loads(out)
    assert (data["a"], data["b"], data["paired_by_seed"]) == ("9a1b2c3d4e", "7f6e5d4c3b", True)
    assert [u["seed"] for u in data["units"]] == [0, 1, 2] and len(data["b_runs"]) == 3
    code, _, err = run_cli(capsys, "board", "compare", "9a1", "3c3", "--db", str(seeds_db))
    assert code == 2 and err == (
        "error: 9a1b2c3d4e and 3c3c3c3c3c were run on different seed sets ({0, 1, 2} vs {0, 1}): "
        "compare groups run on the same seeds\n"
    )
    code, _, err = run_cli(
        capsys, "board", "compare", "9a1b2c3d4e-run0", "7f6e5d4c3b-run0", "--db", str(seeds_db)
    )
    assert code == 0, err  # two runs of two groups: compared as runs, by row
    code, _, err = run_cli(capsys, "board", "compare", "zz", "7f6", "--db", str(seeds_db))
    assert code == 2 and err.count("\n") == 1 and "no run or group with id 'zz'" in err


def test_stability_command(seeds_db: Path, capsys, demo_db: Path) -> None:
    code, out, err = run_cli(
        capsys, "board", "stability", "--db", str(seeds_db), "--json", "--resamples", "300"
    )
    assert code == 0, err
    data = json.loads(out)
    variants = data["variants"]
    assert len(variants) == 5 and [v["rank"] for v in variants] == [1, 2, 3, 4, 5]
    assert sum(v["p_rank1"] for v in variants) == pytest.approx(1.0)
    assert all(1 <= v["expected_rank"] <= 5 for v in variants)
    assert -1 <= data["kendall_tau_v3_v1"] <= 1 and 0 <= data["ranks_changed_without_mia"] <= 5
    code, out, _ = run_cli(capsys, "board", "stability", "--db", str(seeds_db), "--resamples", "50")
    assert code == 0 and "P(rank 1)" in out and "Kendall's tau" in out
    code, _, err = run_cli(capsys, "board", "stability", "--db", str(seeds_db), "--task", "lume")
    assert code == 2 and err.count("\n") == 1 and "no runs recorded for task 'lume'" in err
    code, _, err = run_cli(capsys, "board", "stability", "--db", str(seeds_db), "--resamples", "0")
    assert code == 2 and "Invalid value for '--resamples'" in err  # click's usage error
    code, out, err = run_cli(
        capsys, "board", "stability", "--db", str(demo_db), "--json", "--resamples", "50"
    )
    assert code == 0, err  # a board of single runs: the two levels are the rows only
    assert [v["seeds"] for v in json.loads(out)["variants"]] == [1, 1, 1, 1]


@pytest.mark.parametrize("umask", [0o022, 0o077])
def test_written_boards_respect_the_umask(demo_db: Path, capsys, tmp_path: Path, umask: int) -> None:
    """The HTML page (default place and --output) and any --output file get 0666 & ~umask: 0644 under 022,
    0600 under 077, also when they replace an older file of another mode."""
    old = tmp_path / "old.html"
    old.write_text("old")
    old.chmod(0o640)
    default_page = demo_db.with_suffix(".html")
    default_page.unlink(missing_ok=True)
    previous = os.umask(umask)
    try:
        for args in (
            ["--format", "html"],
            ["--format", "html", "--output", str(old)],
            ["--format", "csv", "--output", str(tmp_path / "board.csv")],
        ):
            code, _, err = run_cli(capsys, "board", "--db", str(demo_db), *args)
            assert code == 0, err
    finally:
        os.umask(previous)
    for path in (default_page, old, tmp_path / "board.csv"):
        assert stat.S_IMODE(path.stat().st_mode) == 0o666 & ~umask, path
    assert old.read_text().startswith("<!DOCTYPE html>")


def test_narrow_pipes_never_cut_ids(tmp_path: Path) -> None:
    """In a pipe or CI log (stdout not a terminal, COLUMNS=40) the board, `compare` and `stability` tables
    print whole: every id, submission and variant on one line, no '…'."""
    from fabricate import constant_run, make_record

    from leaderboard.bootstrap import bootstrap_run
    from leaderboard.store import Store, default_db

    store = Store(default_db(tmp_path))
    long_ids = ["20261202T000000-a41f09d2c3e4b5a6", "20261202T000100-d15ea5e001f2e3d4"]
    variant = "lr=0.0001,epochs=3,forget_weight=2.5,retain_weight=1.0"
    for k, run_id in enumerate(long_ids):
        run_dir = tmp_path / f"run{k}"
        numbers = constant_run(run_dir, term=0.5 + 0.2 * k, mmlu=0.45)
        store.add(
            make_record(
                run_id,
                numbers,
                run_dir,
                minute=k,
                submission_name="a_rather_long_submission_name",
                variant=f"{variant},k={k}",
                intervals=bootstrap_run(run_dir, n=50),  # "[low, high]" makes the table wider than 200
            )
        )
    env = {**os.environ, "COLUMNS": "40", "TERM": "dumb"}

    def piped(*args: str) -> str:
        done = subprocess.run(
            [sys.executable, "-m", "harness", *args, "--db", str(store.path)],
            capture_output=True,
            text=True,
            env=env,
            timeout=120,
        )
        assert done.returncode == 0, done.stderr
        return done.stdout

    for out in (piped("board"), piped("board", "compare", long_ids[0][:20], long_ids[1][:20])):
        assert "…" not in out and "..." not in out
        lines = out.splitlines()
        for text in (*long_ids, variant):
            assert any(text in line for line in lines), (text, out)
    out = piped("board", "stability", "--resamples", "20")
    assert "…" not in out and any(variant in line for line in out.splitlines())
