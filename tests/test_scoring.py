"""harness.scoring: the official V3 numbers (V1/V2 switches), each quirk of official-scoring.md by hand.

Every expected value below is computed by hand in the comment next to it, or comes from a real
output of the official scorer (../shared/data/semeval25/golden) or from the reference cases recorded
under the organisers' pinned libraries (tests/fixtures/scoring/cases, see make_reference.py there).
"""

from __future__ import annotations

import csv
import functools
import json
import math
import operator
import shutil
import statistics
from pathlib import Path

import pytest
from csv_files import write_csv
from hypothesis import given, settings
from hypothesis import strategies as st

from harness.errors import HarnessError
from harness.scoring import Scores, aggregate_mmlu, compute_auc, read_mmlu_average, score_directory
from harness.scoring.csvio import GenerationRow
from harness.scoring.official import headline_numbers, left_to_right_mean, row_score, score_splits
from harness.scoring.report import render_scores
from harness.scoring.rouge import lcs_length, rouge_l_recall, rouge_tokens
from tasks.pandas_csv import read_csv_like_pandas

CASES = Path(__file__).parent / "fixtures" / "scoring" / "cases"
HEADER = ["id", "task", "input", "expected_output", "model_output", "nll"]


def gen_rows(rows: list[tuple[str, str, str, str]]) -> list[list[object]]:
    """(id, task, expected, generated) -> CSV rows with the official columns."""
    return [[i, task, "prompt", expected, generated, 1.5] for i, task, expected, generated in rows]


def full_split(prefix: str, *, sc: str = "the cat sat", qa: str = "Paris") -> list[tuple[str, str, str, str]]:
    """One sc and one qa row per task, each generation equal to its expected output."""
    return [
        row
        for t in (1, 2, 3)
        for row in ((f"{prefix}{t}sc1", f"Task{t}", sc, sc), (f"{prefix}{t}qa0", f"Task{t}", qa, qa))
    ]


def make_dir(
    root: Path,
    forget: list[tuple[str, str, str, str]],
    retain: list[tuple[str, str, str, str]],
    *,
    member: list[float] | None = None,
    nonmember: list[float] | None = None,
    mmlu: float | None = None,
) -> Path:
    write_csv(root / "forget_0.csv", HEADER, gen_rows(forget))
    write_csv(root / "retain_0.csv", HEADER, gen_rows(retain))
    if member is not None:
        write_csv(
            root / "mia_results" / "member_0.csv", ["id", "nll"], [[f"m{i}", x] for i, x in enumerate(member)]
        )
    if nonmember is not None:
        rows = [[f"n{i}", x] for i, x in enumerate(nonmember)]
        write_csv(root / "mia_results" / "nonmember_0.csv", ["id", "nll"], rows)
    if mmlu is not None:
        (root / "mmlu_results").mkdir(parents=True, exist_ok=True)
        (root / "mmlu_results" / "metrics.json").write_text(json.dumps({"average_acc": mmlu}))
    return root


# ------------------------------------------------------------------ the golden official output


def test_golden_headline_numbers_and_key_order(shared_data: Path) -> None:
    golden_text = (shared_data / "semeval25" / "golden" / "evaluation_results.jsonl").read_text()
    golden = json.loads(golden_text)
    terms = golden["aggregated-terms"]
    hm, mia, final = headline_numbers(terms, golden["mia_loss_acc"], golden["mmlu_average"])
    assert hm == golden["harmonic-mean-task-aggregate"] == 0 and type(hm) is int  # retain QA terms are 0
    assert mia == golden["mia_final_score"] == 0.7217777777777776
    assert final == golden["aggregate-score"] == 0.3195699462459183
    # the whole object, rebuilt from its parts, is the golden file byte for byte (key order included)
    scores = Scores(
        terms=tuple(terms),
        task_aggregate=hm,
        auc=golden["mia_loss_acc"],
        mia_score=mia,
        mmlu_average=golden["mmlu_average"],
        final_score=final,
        eligible=None,
        forget=golden["forget-set"],
        retain=golden["retain-set"],
        ignored_rows=0,
    )
    assert json.dumps(scores.results()) == golden_text
    # the terms are the per-task means, forget inverted, in the official order
    expected_terms = [
        value if split == "retain-set" else 1 - value
        for split in ("forget-set", "retain-set")
        for task in ("Task1", "Task2", "Task3")
        for value in golden[split][task].values()
    ]
    assert expected_terms == terms


def test_golden_mmlu_metrics_from_the_per_subject_csvs(shared_data: Path) -> None:
    folder = shared_data / "semeval25" / "golden" / "mmlu_results"
    per_subject = {}
    for path in sorted(folder.glob("*.csv")):
        table = read_csv_like_pandas(path, header=True)
        assert table.kinds[table.header.index("correct")] == "bool"
        per_subject[path.stem] = table.columns[table.header.index("correct")]
    assert len(per_subject) == 57 and sum(map(len, per_subject.values())) == 14042
    metrics = aggregate_mmlu(per_subject)
    golden_text = (folder / "metrics.json").read_text()
    assert json.dumps(metrics) == json.dumps(json.loads(golden_text))  # values and key order
    assert metrics["average_acc"] == 3327 / 14042 == read_mmlu_average(folder / "metrics.json")


def test_mmlu_aggregation_by_hand() -> None:
    # anatomy (health, other...) 2 of 3; astronomy (physics, STEM) 1 of 1; a subject outside MMLU 0 of 1
    metrics = aggregate_mmlu({"astronomy": [True], "anatomy": [True, False, True], "my_subject": [False]})
    assert metrics["average_acc"] == 3 / 5
    assert metrics["subcat_acc"] == {"health": 2 / 3, "physics": 1.0}
    assert list(metrics["subcat_acc"]) == ["health", "physics"]  # open-instruct's order, not input order
    assert metrics["cat_acc"] == {"STEM": 1.0, "other (business, health, misc.)": 2 / 3}
    with pytest.raises(HarnessError, match="no answered questions"):
        aggregate_mmlu({})


# ------------------------------------------------------------------ reference cases (pandas 2.2.3 etc.)


@pytest.mark.parametrize("case", sorted(p.name for p in CASES.iterdir()))
def test_reference_cases_match_the_official_logic_exactly(tmp_path: Path, case: str) -> None:
    directory = tmp_path / case
    shutil.copytree(CASES / case, directory)
    scores = score_directory(directory)
    expected = (CASES / case / "expected_v3.json").read_text()
    assert json.dumps(scores.results()) == expected
    assert (directory / "evaluation_results.jsonl").read_text() == expected
    # row_scores.csv: per (split, task, kind) the left-to-right mean of its rows gives each finite term
    groups: dict[tuple[str, str, str], list[float]] = {}
    with (directory / "row_scores.csv").open(newline="") as handle:
        for row in csv.DictReader(handle):
            groups.setdefault((row["split"], row["task"], row["kind"]), []).append(float(row["score"]))
    for split, obj in (("forget", scores.forget), ("retain", scores.retain)):
        for task, means in obj.items():
            if isinstance(means, dict):
                for kind, key in (("sc", "regurgitation-score"), ("qa", "knowledge-score")):
                    rows = groups.get((split, task, kind), [])
                    assert left_to_right_mean(rows) == means[key] or (not rows and math.isnan(means[key]))


def test_reference_case_quirks_are_really_exercised() -> None:
    quirky = json.loads((CASES / "quirky" / "expected_v3.json").read_text())
    numeric = json.loads(
        (CASES / "numeric-generations" / "expected_v3.json").read_text().replace("NaN", "null")
    )
    missing = (CASES / "missing-group" / "expected_v3.json").read_text()
    # a bare "\r" in a generation splits its CSV record: the nll lands in the task column
    assert any(key not in ("Task1", "Task2", "Task3") for key in quirky["forget-set"] if "overall" not in key)
    assert numeric["forget-set"]["overall-knowledge-score"] == 0.0  # "007" is read as 7, scored vs text
    terms = missing[missing.index('"aggregated-terms"') :]
    assert "NaN" in terms.split("]")[0]  # a retain group is empty: NaN term (the stdlib HM meets a 0 first)


# ------------------------------------------------------------------ hand-computed quirks


def test_perfect_forget_qa_gives_int_zero(tmp_path: Path) -> None:
    # forget generations all correct -> forget terms 1 - 1.0 = 0.0 -> harmonic mean int 0;
    # retain perfect -> terms 1.0; AUC of [1] vs [2]: member loss lower -> 1.0 -> MIA score 0;
    # final = mean([0, 0.5, 0.0]) = 1/6
    directory = make_dir(tmp_path, full_split("f"), full_split("r"), member=[1.0], nonmember=[2.0], mmlu=0.5)
    scores = score_directory(directory)
    assert scores.terms == (0.0,) * 6 + (1.0,) * 6
    assert scores.task_aggregate == 0 and type(scores.task_aggregate) is int
    assert (scores.auc, scores.mia_score, scores.final_score) == (1.0, 0.0, 0.5 / 3)
    text = (directory / "evaluation_results.jsonl").read_text()
    assert '"harmonic-mean-task-aggregate": 0,' in text
    assert list(json.loads(text)) == [
        "forget-set",
        "retain-set",
        "mia_loss_acc",
        "mmlu_average",
        "aggregated-terms",
        "aggregate-score",
        "harmonic-mean-task-aggregate",
        "mia_final_score",
    ]


def test_na_like_generations_are_scored_as_the_text_nan(tmp_path: Path) -> None:
    forget = full_split("f")
    # sc: expected "the nan value" -> tokens [the, nan, valu]; "" is read back as NaN -> "nan" -> LCS 1 -> 1/3
    forget[0] = ("f1sc1", "Task1", "the nan value", "")
    # qa: "None" and "null" are both NaN after read_csv -> "nan" == "nan" -> 1
    forget[1] = ("f1qa0", "Task1", "None", "null")
    # qa: a whitespace-only generation survives the round trip -> " ".strip() != "paris" -> 0
    forget[3] = ("f2qa0", "Task2", "Paris", " ")
    scores = score_directory(make_dir(tmp_path, forget, full_split("r")), write=False)
    assert scores.forget["Task1"] == {"regurgitation-score": 1 / 3, "knowledge-score": 1.0}
    assert scores.forget["Task2"]["knowledge-score"] == 0.0
    assert scores.terms[:4] == (1 - 1 / 3, 0.0, 0.0, 1.0)


def test_numeric_looking_generation_columns(tmp_path: Path) -> None:
    # every model_output is a number or empty -> pandas makes the column float64: "007" -> 7.0 -> "7.0",
    # "" -> "nan", "12" -> "12.0". expected_output holds text, so it stays text: "7.0" != "007" etc.
    retain = [
        ("r1sc1", "Task1", "12 apples", "12"),  # "12.0" -> tokens [12, 0] vs [12, appl] -> LCS 1 -> 1/2
        ("r1qa0", "Task1", "7.0", "007"),  # "7.0" == "7.0" -> 1
        ("r2sc1", "Task2", "nan", ""),  # "nan" vs "nan" -> 1.0
        ("r2qa0", "Task2", "1984", "1984"),  # "1984.0" != "1984" -> 0
        ("r3sc1", "Task3", "a b", "1e5"),  # "100000.0" -> [100000, 0] vs [a, b] -> 0
        ("r3qa0", "Task3", "x", "1"),  # "1.0" != "x" -> 0
    ]
    scores = score_directory(make_dir(tmp_path, full_split("f"), retain), write=False)
    assert scores.terms[6:] == (0.5, 1.0, 1.0, 0.0, 0.0, 0.0)
    assert scores.task_aggregate == 0


def test_an_integer_column_with_an_empty_cell_becomes_float(tmp_path: Path) -> None:
    # qa generations "7" and "" -> column int + NA -> float64 -> "7.0" and "nan"
    retain = full_split("r")
    retain[1] = ("r1qa0", "Task1", "7", "7")
    retain[3] = ("r2qa0", "Task2", "nan", "")
    retain[5] = ("r3qa0", "Task3", "3.0", "3")
    retain = [(i, t, e, g if "qa" in i else "1") for i, t, e, g in retain]  # sc generations numeric too
    scores = score_directory(make_dir(tmp_path, full_split("f"), retain), write=False)
    assert scores.retain["Task1"]["knowledge-score"] == 0.0  # "7.0" != "7"
    assert scores.retain["Task2"]["knowledge-score"] == 1.0  # "nan" == "nan"
    assert scores.retain["Task3"]["knowledge-score"] == 1.0  # "3.0" == "3.0"


def test_per_task_mean_is_a_left_to_right_sum(tmp_path: Path) -> None:
    # three sc rows of a 10-token target with 1, 2 and 3 tokens generated: recalls 0.1, 0.2, 0.3.
    # (0.1 + 0.2) + 0.3 = 0.6000000000000001 -> / 3 = 0.20000000000000004 (an exact sum would give
    # 0.19999999999999998), so the term is 1 - 0.20000000000000004 = 0.7999999999999999.
    target = "a b c d e f g h i j"
    forget = full_split("f")
    forget[0:1] = [(f"f1x{n}sc1", "Task1", target, " ".join("abc"[:n])) for n in (1, 2, 3)]
    scores = score_directory(make_dir(tmp_path, forget, full_split("r")), write=False)
    assert scores.forget["Task1"]["regurgitation-score"] == 0.20000000000000004
    assert scores.terms[0] == 0.7999999999999999
    assert math.fsum([0.1, 0.2, 0.3]) / 3 != 0.20000000000000004


def test_empty_group_gives_nan(tmp_path: Path) -> None:
    retain = [row for row in full_split("r") if row[0] != "r3qa0"]  # Task3 has no qa row in retain
    scores = score_directory(make_dir(tmp_path, full_split("f"), retain, member=[1], nonmember=[2], mmlu=0.5))
    assert math.isnan(scores.retain["Task3"]["knowledge-score"])
    assert math.isnan(scores.terms[-1])
    # the harmonic mean meets 0.0 terms (forget) before the NaN: the stdlib returns 0 on the zero
    assert scores.task_aggregate == 0
    retain_only = score_splits([], _rows(retain))[0]
    assert math.isnan(retain_only.task_aggregate)  # 1.0 terms and a NaN -> NaN


def _rows(rows: list[tuple[str, str, str, str]]) -> list[GenerationRow]:
    return [GenerationRow(i, t, e, g, Path("x.csv"), n) for n, (i, t, e, g) in enumerate(rows, start=2)]


def test_ignored_ids_and_missing_task_tasks(tmp_path: Path) -> None:
    forget = [*full_split("f"), ("f9xx1", "Task1", "a", "a"), ("f9", "Task4", "a", "a")]
    scores = score_directory(make_dir(tmp_path, forget, full_split("r")))
    assert scores.ignored_rows == 2
    # Task4 holds only an ignored row: the group exists, both means NaN (groupby keeps the key)
    assert math.isnan(scores.forget["Task4"]["regurgitation-score"])
    assert len(scores.terms) == 14
    assert "2 row(s) whose id is neither sc nor qa were ignored" in scores.notes[0]
    lines = (tmp_path / "row_scores.csv").read_text().splitlines()
    assert lines[0] == "split,task,kind,id,score" and len(lines) == 1 + 12
    assert lines[1] == "forget,Task1,sc,f1sc1,1.0"


def test_missing_mia_or_mmlu_gives_minus_one(tmp_path: Path) -> None:
    only_mmlu = score_directory(make_dir(tmp_path / "a", full_split("f"), full_split("r"), mmlu=0.5))
    assert only_mmlu.final_score == -1 and only_mmlu.auc is None
    text = json.loads((tmp_path / "a" / "evaluation_results.jsonl").read_text())
    assert "mia_loss_acc" not in text and "mia_final_score" not in text and text["aggregate-score"] == -1
    only_mia = score_directory(
        make_dir(tmp_path / "b", full_split("f"), full_split("r"), member=[1], nonmember=[1])
    )
    assert only_mia.final_score == -1 and only_mia.auc == 0.5 and only_mia.mia_score == 1.0
    assert "mmlu_average" not in json.loads((tmp_path / "b" / "evaluation_results.jsonl").read_text())


def test_mmlu_file_given_explicitly_and_threshold(tmp_path: Path) -> None:
    directory = make_dir(tmp_path / "d", full_split("f"), full_split("r"), member=[1, 3], nonmember=[2, 2])
    metrics = tmp_path / "m.json"
    metrics.write_text(json.dumps({"average_acc": 0.37}))
    scores = score_directory(directory, mmlu_metrics=metrics, mmlu_threshold=0.371)
    # AUC: pairs (1<2, 1<2, 3>2, 3>2) -> 2/4 = 0.5 -> MIA score 1; final = mean([0, 0.37, 1.0])
    assert (scores.auc, scores.mia_score) == (0.5, 1.0)
    assert scores.final_score == statistics.mean([0, 0.37, 1.0])
    assert scores.eligible is False and any("below the threshold" in n for n in scores.notes)
    assert score_directory(directory, mmlu_metrics=metrics, mmlu_threshold=0.37).eligible is True
    assert score_directory(directory, mmlu_metrics=metrics).eligible is None


def test_legacy_versions(tmp_path: Path) -> None:
    # forget: every generation wrong -> forget terms 1.0; retain perfect -> 1.0; so HM12 = 1.0
    forget = [(i, t, e, "zzz") for i, t, e, _ in full_split("f")]
    directory = make_dir(tmp_path, forget, full_split("r"), member=[1, 3], nonmember=[2, 4], mmlu=0.25)
    # AUC: member 1 beats 2 and 4, member 3 beats 4 only -> 3/4 = 0.75
    v3 = score_directory(directory)
    assert (v3.task_aggregate, v3.auc, v3.mia_score) == (1.0, 0.75, 0.5)
    assert v3.final_score == statistics.mean([1.0, 0.25, 0.5])
    v2 = score_directory(directory, version="v2")  # mean([HM12, MMLU, 1 - AUC])
    assert v2.mia_score == 0.25 and v2.final_score == statistics.mean([1.0, 0.25, 0.25])
    assert "mia_final_score" not in v2.results()
    v1 = score_directory(directory, version="v1")  # HM(12 terms + [AUC] + [MMLU]) = 14 / (12 + 4/3 + 4)
    assert v1.final_score == statistics.harmonic_mean([1.0] * 12 + [0.75, 0.25])
    assert list(v1.results()) == ["forget-set", "retain-set", "mia_loss_acc", "aggregate-score"]
    with pytest.raises(HarnessError, match="unknown scoring version"):
        score_directory(directory, version="v4")


def test_multi_process_files_are_joined_in_process_order(tmp_path: Path) -> None:
    rows = gen_rows(full_split("f"))
    write_csv(tmp_path / "forget_1.csv", HEADER, rows[3:])
    write_csv(tmp_path / "forget_0.csv", HEADER, rows[:3])
    write_csv(tmp_path / "retain_0.csv", HEADER, gen_rows(full_split("r")))
    scores = score_directory(tmp_path)
    assert list(scores.forget)[2:] == ["Task1", "Task2", "Task3"] and len(scores.terms) == 12
    ids = [line.split(",")[3] for line in (tmp_path / "row_scores.csv").read_text().splitlines()[1:7]]
    assert ids == ["f1sc1", "f1qa0", "f2sc1", "f2qa0", "f3sc1", "f3qa0"]


# ------------------------------------------------------------------ ROUGE-L and AUC by hand


@pytest.mark.parametrize(
    ("target", "prediction", "recall"),
    [
        # [the, cat, are, run, quickli] vs [a, cat, run, quickli]: LCS cat run quickli = 3 of 5
        ("The cats are running quickly", "a cat runs quickly", 3 / 5),
        # order matters: [b, a] inside [a, b, c]: LCS 1 of 3
        ("a b c", "b a", 1 / 3),
        # accents are dropped: "José" -> "jos"; [jos, live, in, lyon] vs [jos, lyon] -> 2 of 4
        ("José lives in Lyon", "Jos, Lyon!", 2 / 4),
        ("", "anything", 0.0),  # no target tokens -> 0
        ("...", "...", 0.0),  # punctuation only -> no tokens -> 0
        ("Paris", "Paris Paris", 1.0),
    ],
)
def test_rouge_l_recall_by_hand(target: str, prediction: str, recall: float) -> None:
    from rouge_score import rouge_scorer

    assert rouge_l_recall(target, prediction) == recall
    official = rouge_scorer.RougeScorer(["rouge1", "rougeL"], use_stemmer=True).score(target, prediction)
    assert official["rougeL"].recall == recall


@settings(max_examples=200, deadline=None)
@given(
    st.lists(st.sampled_from("abcdef"), max_size=30),
    st.lists(st.sampled_from("abcdefg"), max_size=30),
)
def test_bit_parallel_lcs_equals_the_table(a: list[str], b: list[str]) -> None:
    table = [[0] * (len(b) + 1) for _ in range(len(a) + 1)]
    for i, x in enumerate(a):
        for j, y in enumerate(b):
            table[i + 1][j + 1] = table[i][j] + 1 if x == y else max(table[i][j + 1], table[i + 1][j])
    assert lcs_length(tuple(a), tuple(b)) == table[-1][-1]


def test_rouge_matches_rouge_score_on_real_sentences(shared_data: Path) -> None:
    from rouge_score import rouge_scorer

    scorer = rouge_scorer.RougeScorer(["rouge1", "rougeL"], use_stemmer=True)
    lines = (shared_data / "lume" / "retain.jsonl").read_text().splitlines()[:120]
    outputs = [json.loads(line)["output"] for line in lines]
    pairs = list(zip(outputs, outputs[1:] + outputs[:1])) + [(o, o[: len(o) // 3]) for o in outputs]
    assert [rouge_l_recall(t, p) for t, p in pairs] == [scorer.score(t, p)["rougeL"].recall for t, p in pairs]
    assert rouge_tokens("Running runners ran") == ("run", "runner", "ran")


def test_auc_with_ties() -> None:
    # members [1, 2] vs non-members [2, 3]: 1<2 win, 1<3 win, 2=2 half, 2<3 win -> 3.5 / 4 = 0.875
    assert compute_auc([1.0, 2.0], [2.0, 3.0]) == 0.875
    assert compute_auc([2.0, 2.0], [2.0, 2.0]) == 0.5  # all ties
    assert compute_auc([3.0], [1.0, 2.0]) == 0.0  # members have the higher loss: over-unlearning
    with pytest.raises(HarnessError, match="NaN"):
        compute_auc([math.nan], [1.0])


# ------------------------------------------------------------------ properties


@settings(max_examples=200, deadline=None)
@given(st.lists(st.floats(min_value=0, max_value=1), min_size=1, max_size=60))
def test_left_to_right_mean_property(values: list[float]) -> None:
    assert left_to_right_mean(values) == functools.reduce(operator.add, values) / len(values)


@settings(max_examples=60, deadline=None)
@given(
    st.lists(
        st.tuples(st.sampled_from(["Task1", "Task2"]), st.sampled_from(["sc1", "qa0"]), st.integers(0, 6)),
        min_size=1,
        max_size=40,
    )
)
def test_task_terms_are_left_to_right_sums_in_row_order(rows: list[tuple[str, str, int]]) -> None:
    target = "w0 w1 w2 w3 w4 w5 w6"
    data = [
        (f"d{n}{suffix}", task, target if suffix == "sc1" else "yes", " ".join(f"w{k}" for k in range(hits)))
        for n, (task, suffix, hits) in enumerate(rows)
    ]
    data = [(i, t, e, g if "sc" in i else ("yes" if len(g) % 2 else "no")) for i, t, e, g in data]
    scores, row_scores = score_splits([], _rows(data))
    for task, means in scores.retain.items():
        if not isinstance(means, dict):
            continue
        for kind, key in (("sc", "regurgitation-score"), ("qa", "knowledge-score")):
            values = [r.score for r in row_scores if r.task == task and r.kind == kind]
            expected = functools.reduce(operator.add, values) / len(values) if values else math.nan
            assert means[key] == expected or (math.isnan(expected) and math.isnan(means[key]))


def test_row_score_kinds() -> None:
    assert row_score("qa", " Paris ", "paris") == 1
    assert row_score("qa", "Paris", "Paris, France") == 0
    assert row_score("sc", "a b", "a") == 0.5
    assert row_score(None, "a", "a") is None


# ------------------------------------------------------------------ bad input and the report


def test_missing_files_are_one_line_errors(tmp_path: Path) -> None:
    with pytest.raises(HarnessError, match="no such directory"):
        score_directory(tmp_path / "absent")
    with pytest.raises(HarnessError, match=r"no forget_\*\.csv generations"):
        score_directory(tmp_path)
    make_dir(tmp_path, full_split("f"), full_split("r"), member=[1.0])
    with pytest.raises(HarnessError, match=r"mia_results: no nonmember_\*\.csv"):
        score_directory(tmp_path)
    with pytest.raises(HarnessError, match="MMLU metrics file not found"):
        score_directory(
            make_dir(tmp_path / "x", full_split("f"), full_split("r")), mmlu_metrics=tmp_path / "no.json"
        )


def test_render_scores(tmp_path: Path) -> None:
    from rich.console import Console

    directory = make_dir(tmp_path, full_split("f"), full_split("r"), member=[1.0], nonmember=[2.0], mmlu=0.5)
    console = Console(record=True, width=140)
    render_scores(score_directory(directory, mmlu_threshold=0.371), console)
    text = console.export_text()
    assert "knowledge (qa, exact match)" in text and "0.1667" in text and "eligible (MMLU >= 0.371)" in text
