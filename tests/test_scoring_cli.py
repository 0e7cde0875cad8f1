"""`unlearn-harness score`: both modes, --json, and bad input as one error line (never a traceback)."""

from __future__ import annotations

import json
import math
import os
import re
import shutil
import statistics
import subprocess
import sys
from pathlib import Path

import pytest

from harness.cli import main
from harness.errors import HarnessError
from harness.scoring import score_directory

CASES = Path(__file__).parent / "fixtures" / "scoring" / "cases"


def run_cli(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as info:
        main(args)
    out, err = capsys.readouterr()
    return int(info.value.code or 0), out, err


@pytest.fixture
def quirky(tmp_path: Path) -> Path:
    directory = tmp_path / "quirky"
    shutil.copytree(CASES / "quirky", directory)
    return directory


def test_generations_json_is_the_official_object(quirky: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run_cli(["score", "--generations", str(quirky), "--json"], capsys)
    assert code == 0, err
    assert out.strip() == (CASES / "quirky" / "expected_v3.json").read_text()
    assert (quirky / "evaluation_results.jsonl").read_text() == out.strip()


def test_results_that_cannot_be_written_are_one_line_naming_the_file(
    quirky: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (quirky / "evaluation_results.jsonl").mkdir()  # a folder where the results file goes
    code, out, err = run_cli(["score", "--generations", str(quirky)], capsys)
    assert code == 2
    assert err == f"error: {quirky / 'evaluation_results.jsonl'}: cannot write: Is a directory\n"


def test_generations_table_and_no_write(quirky: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run_cli(
        ["score", "--generations", str(quirky), "--mmlu-threshold", "0.371", "--no-write"], capsys
    )
    assert code == 0, err
    expected = score_directory(quirky, mmlu_threshold=0.371, write=False)
    assert "Aggregated terms" in out and "Headline numbers" in out
    final = "NaN" if math.isnan(expected.final_score) else f"{expected.final_score:.4f}"
    assert "final score (V3)" in out and final in out.split("final score (V3)")[1].splitlines()[0]
    assert "eligible (MMLU >= 0.371)" in out
    assert not (quirky / "evaluation_results.jsonl").exists() and not (quirky / "row_scores.csv").exists()


def test_scoring_version_and_explicit_mmlu(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    directory = tmp_path / "two"
    shutil.copytree(CASES / "two-processes", directory)
    metrics = tmp_path / "metrics.json"
    metrics.write_text(json.dumps({"average_acc": 0.5}))
    code, out, _ = run_cli(
        [
            "score",
            "--generations",
            str(directory),
            "--mmlu",
            str(metrics),
            "--scoring-version",
            "v2",
            "--json",
        ],
        capsys,
    )
    assert code == 0
    result = json.loads(out)
    assert result["mmlu_average"] == 0.5 and "mia_final_score" not in result
    assert result["aggregate-score"] == statistics.mean(
        [result["harmonic-mean-task-aggregate"], 0.5, 1 - result["mia_loss_acc"]]
    )
    assert (
        result["aggregate-score"]
        == score_directory(directory, mmlu_metrics=metrics, version="v2").final_score
    )


def _corrupt(directory: Path, name: str, how: str) -> None:
    path = directory / name
    if how == "extra field":
        path.write_text(path.read_text().replace("\n", ",x,y\n", 2).replace(",x,y\n", "\n", 1))
    elif how == "drop column":
        path.write_text("\n".join(line.rsplit(",", 1)[0] for line in path.read_text().splitlines()) + "\n")
    elif how == "text":
        path.write_text("id,nll\n1,low\n2,0.5\n")
    elif how == "nan":
        path.write_text("id,nll\n1,\n2,0.5\n")
    elif how == "json":
        path.write_text('{"average_acc": ')
    elif how == "delete":
        path.unlink()


@pytest.mark.parametrize(
    ("name", "how", "message"),
    [
        ("forget_0.csv", "extra field", r"forget_0\.csv:2: expected 6 fields, found 8"),
        ("mia_results/member_0.csv", "drop column", r"member_0\.csv:1: missing column\(s\) nll"),
        ("mia_results/nonmember_0.csv", "text", r"nonmember_0\.csv:2: nll 'low' is not a number"),
        ("mia_results/member_0.csv", "nan", r"member_0\.csv:2: nll is NaN"),
        ("mmlu_results/metrics.json", "json", r"metrics\.json:1: not valid JSON"),
        ("retain_0.csv", "delete", r"no retain_\*\.csv generations"),
    ],
)
def test_corrupted_copies_give_one_error_line(
    quirky: Path, capsys: pytest.CaptureFixture[str], name: str, how: str, message: str
) -> None:
    _corrupt(quirky, name, how)
    code, out, err = run_cli(["score", "--generations", str(quirky)], capsys)
    assert code == 2
    assert err.startswith("error: ") and err.count("\n") == 1 and "Traceback" not in err
    assert re.search(message, err), err


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["score"], "exactly one of CHECKPOINT or --generations"),
        (["score", "ckpt", "--generations", "x"], "exactly one of CHECKPOINT or --generations"),
        (["score", "ckpt"], "CHECKPOINT needs --task"),
        (["score", "--generations", "x", "--task", "tiny"], "--task goes with CHECKPOINT"),
        (["score", "--generations", "no/such/dir"], "no such directory"),
    ],
)
def test_usage_errors(args: list[str], message: str, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run_cli(args, capsys)
    assert code == 2 and message in err and err.count("\n") == 1


def test_corrupted_data_file_through_a_subprocess(shared_data: Path, tmp_path: Path) -> None:
    # a copy of the shared data whose LUME forget file has a broken line 3; everything else linked
    root = tmp_path / "data"
    root.mkdir()
    for child in shared_data.iterdir():
        (root / child.name).symlink_to(child)
    (root / "lume").unlink()
    (root / "lume").mkdir()
    for child in (shared_data / "lume").iterdir():
        (root / "lume" / child.name).symlink_to(child)
    (root / "lume" / "forget.jsonl").unlink()
    lines = (shared_data / "lume" / "forget.jsonl").read_text().splitlines()
    (root / "lume" / "forget.jsonl").write_text("\n".join([*lines[:2], lines[2][:40], *lines[3:10]]))
    env = {**os.environ, "UNLEARN_HARNESS_SHARED_DATA": str(root)}
    done = subprocess.run(
        [sys.executable, "-m", "harness", "tasks", "--check"],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 2
    assert (
        done.stderr.strip()
        == f"error: {root / 'lume' / 'forget.jsonl'}:3: not valid JSON "
        + (done.stderr.strip().split(" not valid JSON ", 1)[1])
    )
    assert "Traceback" not in done.stderr and done.stderr.count("\n") == 1


@pytest.mark.slow
def test_checkpoint_mode_on_the_tiny_task(
    tiny_world, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("UNLEARN_HARNESS_TINY_MAX_NEW_TOKENS", "4")  # the wiring is under test, not the model
    run_dir = tmp_path / "run"
    code, out, err = run_cli(
        ["score", str(tiny_world.model_dir), "--task", "tiny", "--run-dir", str(run_dir), "--json"], capsys
    )
    assert code == 0, err
    result = json.loads(out)
    # the printed object is the one written into the run directory, and rescoring its files agrees
    assert json.loads((run_dir / "evaluation_results.jsonl").read_text()) == result
    assert score_directory(run_dir, write=False).final_score == result["aggregate-score"]
    assert len(result["aggregated-terms"]) == 12
    # where the numbers come from, and the fast path's near ties, on stderr beside the JSON
    assert "numbers from: this environment" in err and "rows settled by the exact loop" in err


def test_checkpoint_mode_passes_the_batch_caps_to_the_engine(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    import harness.inference

    seen: dict[str, object] = {}

    def fake_evaluate(checkpoint, task, run_dir, **kwargs):
        seen.update(kwargs)
        raise HarnessError("stop here")

    monkeypatch.setattr(harness.inference, "evaluate", fake_evaluate)
    checkpoint = tmp_path / "ckpt"
    checkpoint.mkdir()
    args = ["score", str(checkpoint), "--task", "tiny", "--batch-size", "8", "--max-tokens", "512"]
    code, _, err = run_cli(args, capsys)
    assert code == 2 and "stop here" in err
    assert seen["batch_size"] == 8 and seen["max_tokens"] == 512


def test_the_source_line_reports_what_settling_near_ties_cost(tmp_path: Path) -> None:
    from harness.cli.score import _source_line
    from harness.inference.engine import NEAR_TIE_SECONDS, NEAR_TIES

    payload = {"exact_rows": {"generations": 3, "MIA losses": 0}, "exact_steps": {"generations": 17}}
    (tmp_path / NEAR_TIES).write_text(json.dumps(payload))
    line = _source_line(tmp_path, False, {NEAR_TIE_SECONDS: 0.5, "total": 2.0})
    assert line.endswith(
        "rows settled by the exact loop at near ties: 3 generations (17 exact decoding steps), "
        "taking 0.50 s of the evaluation's 2.00 s"
    )
    # a cached evaluation from before the timing existed: the counts alone
    assert _source_line(tmp_path, False, {"total": 2.0}).endswith("(17 exact decoding steps)")
    # nothing settled: no cost to report
    (tmp_path / NEAR_TIES).write_text(json.dumps({"exact_rows": {"generations": 0}}))
    assert _source_line(tmp_path, False, {NEAR_TIE_SECONDS: 0.0}).endswith("near ties: none")
    assert "near ties" not in _source_line(tmp_path, True, {NEAR_TIE_SECONDS: 0.5})  # the exact path
