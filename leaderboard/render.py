"""Rendering boards and comparisons: rich tables for the terminal, markdown, CSV and JSON for scripts."""

from __future__ import annotations

import csv
import io
import json
import math
from typing import Any

from rich.console import Console
from rich.table import Table
from rich.text import Text

from leaderboard.compare import Comparison
from leaderboard.ranking import Board, BoardRow
from leaderboard.record import HEADLINES, TERM_LABELS, RunRecord, labelled_terms, term_column
from leaderboard.stability import Stability

HEADLINE_TITLES = {
    "final_score": "Final",
    "task_aggregate": "Task agg.",
    "mia_score": "MIA",
    "mmlu_average": "MMLU",
}
TIE_MARK = "≈"
SECTIONS = ("ranked", "below_threshold", "limited", "failed")
SECTION_TITLES = {
    "ranked": "Ranked",
    "below_threshold": "Below the utility threshold (honorary mentions, not ranked)",
    "limited": "Partial evaluations (--limit: not comparable with full runs, not ranked)",
    "failed": "Failed runs (not ranked)",
}


def fmt(value: float | None, digits: int = 3) -> str:
    if value is None:
        return "—"
    if math.isnan(value):
        return "nan"
    return f"{value:.{digits}f}"


def _digits(key: str) -> int:
    # four digits for the final score: the site separates 0.3082 from 0.3080
    return 4 if key == "final_score" else 3


def fmt_headline(row: BoardRow, key: str) -> str:
    """value [interval] for one seed; mean ±seed SD [two-level interval] for a group."""
    value = row.value(key)
    text = fmt(value, _digits(key))
    sd = row.group.sd(key)
    if sd is not None and value is not None:
        text += f" ±{fmt(sd)}"
    interval = row.interval(key)
    if interval is not None and value is not None:
        text += f" [{fmt(interval[0])}, {fmt(interval[1])}]"
    return text


def row_id(row: BoardRow) -> str:
    """The id a row is known by: its group id for a group of several seeds, else its run id."""
    return row.group.group_id if row.group.size > 1 else row.record.run_id


def fmt_rank(row: BoardRow) -> str:
    if row.rank is None:
        return "ref" if row.reference else ""
    return f"{row.rank}{' ' + TIE_MARK if row.tied else ''}"


def row_flags(row: BoardRow, board: Board) -> list[str]:
    flags = list(row.flags)
    failed = any(f.startswith("failed") for f in row.flags)
    if row.runs > 1 and not board.all_runs:
        if failed:
            flags.append(f"latest of {row.runs} failed runs")
        else:
            flags.append(f"best of {row.runs} {'runs' if row.single_runs else 'seed groups'}")
    if failed and row.record.message:
        flags.append(row.record.message)
    return flags


def board_sections(board: Board) -> list[tuple[str, tuple[BoardRow, ...]]]:
    return [(name, getattr(board, name)) for name in SECTIONS if getattr(board, name)]


# -- data forms ---------------------------------------------------------------------------------------------
def _seed_dict(record: RunRecord) -> dict[str, Any]:
    return {
        "run_id": record.run_id,
        "seed": record.seed,
        "world_seed": record.world_seed,
        "status": record.status,
        **{key: getattr(record, key) for key in HEADLINES},
        "auc": record.auc,
        "terms": None if record.terms is None else list(record.terms),
        "terms_by_label": labelled_terms(record.terms),
        "run_dir": record.run_dir,
    }


def row_to_dict(row: BoardRow, board: Board) -> dict[str, Any]:
    """Every field of a row; the headline numbers are the means over the group's seeds (one seed: the run's)."""
    record, group = row.record, row.group
    return {
        "rank": row.rank,
        "tied_with_leader": row.tied,
        "reference": row.reference,
        "flags": row_flags(row, board),
        "runs": row.runs,
        "run_id": record.run_id,
        "created_at": record.created_at,
        "submission": record.submission_name,
        "submission_sha256": record.submission_sha256,
        "variant": record.variant,
        "params": record.params,
        "role": record.role,
        "status": record.status,
        "group_id": record.group_id,
        "seeds": group.size,
        **{key: row.value(key) for key in HEADLINES},
        "auc": row.value("auc"),
        "sd": {key: group.sd(key) for key in HEADLINES},
        "eligible": group.eligible,
        "unchanged": record.unchanged,
        "isolation": record.isolation,
        "robust_forget": record.robust_forget,
        "limit": record.limit,
        "intervals": {key: list(value) for key, value in group.intervals.items()},
        "row_intervals": {key: list(value) for key, value in group.row_intervals.items()},
        "terms": None if (terms := group.terms()) is None else list(terms),
        "terms_by_label": labelled_terms(terms),
        "per_seed": [_seed_dict(r) for r in group.records],
        "budget_used_s": record.budget_used_s,
        "run_dir": record.run_dir,
        "message": record.message,
    }


def boards_to_json(boards: list[Board]) -> str:
    data = [
        {
            "task": board.task,
            "has_threshold": board.has_threshold,
            "all_runs": board.all_runs,
            **{name: [row_to_dict(row, board) for row in getattr(board, name)] for name in SECTIONS},
        }
        for board in boards
    ]
    return json.dumps(data, indent=2, ensure_ascii=False)


def boards_to_csv(boards: list[Board]) -> str:
    columns = ["task", "section", "rank", "tied_with_leader", "reference", "run_id", "group_id", "seeds"]
    columns += ["submission", "variant", "role", "status", "created_at"]
    for key in (*HEADLINES, "auc"):
        columns += [key] + ([f"{key}_sd", f"{key}_low", f"{key}_high"] if key != "auc" else [])
    columns += ["eligible", "unchanged", "isolation", "robust_forget", "limit", "runs", "flags", "run_dir"]
    columns += [term_column(label) for label in TERM_LABELS]  # empty for a task without the official 12
    out = io.StringIO()
    writer = csv.DictWriter(out, columns, lineterminator="\n")
    writer.writeheader()
    for board in boards:
        for section, rows in board_sections(board):
            for row in rows:
                data = row_to_dict(row, board)
                line = {key: data.get(key) for key in columns}
                line.update(task=board.task, section=section, flags="; ".join(data["flags"]))
                for key in HEADLINES:
                    low, high = row.interval(key) or (None, None)
                    line[f"{key}_low"], line[f"{key}_high"] = low, high
                    line[f"{key}_sd"] = row.group.sd(key)
                for label, value in (data["terms_by_label"] or {}).items():
                    if label in TERM_LABELS:
                        line[term_column(label)] = value
                writer.writerow(line)
    return out.getvalue()


# -- markdown -----------------------------------------------------------------------------------------------
def _md_cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _md_table(headers: list[str], rows: list[list[str]]) -> list[str]:
    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    lines += ["| " + " | ".join(_md_cell(c) for c in row) + " |" for row in rows]
    return lines


def row_cells(row: BoardRow, board: Board, *, ranked: bool) -> list[str]:
    record = row.record
    cells = [fmt_rank(row)] if ranked else []
    cells += [record.submission_name, record.variant]
    if any(f.startswith("failed") for f in row.flags):
        cells += [record.status, "; ".join(f for f in row_flags(row, board) if not f.startswith("failed"))]
    else:
        cells.append(str(row.group.size))
        cells += [fmt_headline(row, key) for key in HEADLINES]
        cells.append(", ".join(row_flags(row, board)))
    cells.append(row_id(row))  # whole: `board compare` takes it (or a prefix the user chooses)
    return cells


def section_headers(section: str) -> list[str]:
    if section == "failed":
        return ["Submission", "Variant", "Status", "Notes", "Run"]
    first = ["#"] if section == "ranked" else []
    titles = (HEADLINE_TITLES[k] for k in HEADLINES)
    return [*first, "Submission", "Variant", "Seeds", *titles, "Flags", "Run"]


def legend(board: Board) -> str:
    text = (
        "Numbers: official score [95% bootstrap interval over rows]; for a group of seeds, the mean over seeds "
        "±seed SD [95% two-level interval: seeds, then rows]. Seeds 1: a single run, its interval covers the "
        "rows only. Run: the group id of a group. "
    )
    text += f"{TIE_MARK}: the final-score interval overlaps the leader's (tied for rank 1). "
    text += "ref: reference row, not ranked."
    if not board.all_runs:
        text += " Best run or group per submission + variant (--all-runs shows every one)."
    return text


def boards_to_markdown(boards: list[Board]) -> str:
    lines: list[str] = []
    for board in boards:
        lines += [f"### Task `{board.task}`", ""]
        for section, rows in board_sections(board):
            if section != "ranked" or board.has_threshold:
                title = (
                    "Eligible (MMLU above the threshold)" if section == "ranked" else SECTION_TITLES[section]
                )
                lines += [f"**{title}**", ""]
            cells = [row_cells(row, board, ranked=section == "ranked") for row in rows]
            lines += _md_table(section_headers(section), cells) + [""]
        if not any(rows for _, rows in board_sections(board)):
            lines += ["No runs recorded.", ""]
        lines += [legend(board), ""]
    return "\n".join(lines)


# -- terminal -----------------------------------------------------------------------------------------------
def print_whole(console: Console, table: Table) -> None:
    """Print `table` without cutting a cell. On a console that is not a terminal (a pipe, a CI log, a file)
    the table is printed at its natural width, however narrow the console, so no id or path is folded onto
    two lines or cut with '…'; on a terminal, long cells fold (every column has overflow="fold")."""
    if console.is_terminal:
        console.print(table)
        return
    needed = console.measure(table, options=console.options.update_width(10_000)).maximum
    saved = console.width
    console.width = max(saved, needed)
    try:
        console.print(table)
    finally:
        console.width = saved


def render_boards(boards: list[Board], console: Console) -> None:
    """Rich tables, one group per task."""
    for board in boards:
        for section, rows in board_sections(board):
            title = f"Task {board.task}"
            if section != "ranked" or board.has_threshold:
                title += " — " + ("eligible" if section == "ranked" else SECTION_TITLES[section])
            table = Table(title=title, title_justify="left", show_lines=False)
            for header in section_headers(section):
                numeric = header in HEADLINE_TITLES.values() or header in ("#", "Seeds")
                table.add_column(header, justify="right" if numeric else "left", overflow="fold")
            for row in rows:
                style = "dim" if row.reference else ("red" if section == "failed" else None)
                table.add_row(
                    *(Text(c) for c in row_cells(row, board, ranked=section == "ranked")), style=style
                )
            print_whole(console, table)
        if not any(rows for _, rows in board_sections(board)):
            console.print(f"Task {board.task}: no runs recorded.")
        console.print(Text(legend(board), style="dim"), soft_wrap=True)
        console.print()


# -- comparisons --------------------------------------------------------------------------------------------
def _compare_rows(comparison: Comparison) -> list[list[str]]:
    rows = []
    for line in comparison.lines:
        interval = (
            "—"
            if line.interval is None
            else f"[{fmt_bound(line.interval[0])}, {fmt_bound(line.interval[1])}]"
        )
        diff = "—" if line.diff is None else f"{line.diff:+.4f}"
        rows.append([line.label, fmt(line.a, 4), fmt(line.b, 4), diff, interval, line.verdict_text])
    return rows


def fmt_bound(value: float) -> str:
    """An interval bound of a difference: exactly 0 as "0", a bound that would round to ±0.000 with two
    significant digits (so +0.0003 is never shown as +0.000 beside a verdict it contradicts)."""
    if value == 0:
        return "0"
    if abs(value) < 0.0005:
        return f"{value:+.1e}"
    return f"{value:+.3f}"


COMPARE_HEADERS = ["", "A", "B", "B - A", "95% interval (paired)", "Verdict for B"]


def _compare_caption(comparison: Comparison) -> str:
    a, b = comparison.a, comparison.b

    def side(record: RunRecord, name: str) -> str:
        return f"{name} ({record.submission_name}/{record.variant})"

    text = f"A = {side(a, comparison.a_id)}, B = {side(b, comparison.b_id)}; "
    if comparison.units:
        # reference rows against each other: one run per world, no run seed
        what = "worlds" if all(seed is None for _, seed in comparison.units) else "seeds"
        text += (
            f"means over {len(comparison.units)} {what}, paired by {what[:-1]} and by row (two-level "
            f"bootstrap), {comparison.resamples} resamples, seed {comparison.seed}"
        )
    else:
        text += f"paired bootstrap, {comparison.resamples} resamples, seed {comparison.seed}"
    if comparison.matched:
        text += " over " + ", ".join(f"{v} {k}" for k, v in comparison.matched.items())
    if comparison.note:
        text += f". Note: {comparison.note}"
    return text + "."


def render_comparison(comparison: Comparison, console: Console) -> None:
    title = f"Task {comparison.a.task}: B compared with A" + (" (seed groups)" if comparison.units else "")
    table = Table(title=title, title_justify="left")
    for header in COMPARE_HEADERS:
        table.add_column(
            header, justify="left" if header in ("", "Verdict for B") else "right", overflow="fold"
        )
    styles = {"better": "green", "worse": "red"}
    for index, row in enumerate(_compare_rows(comparison)):
        line = comparison.lines[index]
        table.add_row(*row, style=styles.get(line.verdict or "", None), end_section=line.key == "auc")
    print_whole(console, table)
    console.print(Text(_compare_caption(comparison), style="dim"), soft_wrap=True)


def comparison_to_markdown(comparison: Comparison) -> str:
    lines = _md_table(COMPARE_HEADERS, _compare_rows(comparison))
    return "\n".join([*lines, "", _compare_caption(comparison), ""])


def comparison_to_json(comparison: Comparison) -> str:
    data = {
        "task": comparison.a.task,
        "a": comparison.a_id,
        "b": comparison.b_id,
        "a_runs": [r.run_id for r in comparison.a_group.records]
        if comparison.a_group
        else [comparison.a.run_id],
        "b_runs": [r.run_id for r in comparison.b_group.records]
        if comparison.b_group
        else [comparison.b.run_id],
        "paired_by_seed": bool(comparison.units),
        "units": [{"world_seed": w, "seed": s} for w, s in comparison.units],
        "resamples": comparison.resamples,
        "seed": comparison.seed,
        "matched": comparison.matched,
        "unmatched": comparison.unmatched,
        "note": comparison.note,
        "lines": [
            {
                "key": line.key,
                "label": line.label,
                "a": line.a,
                "b": line.b,
                "diff": line.diff,
                "interval": list(line.interval) if line.interval else None,
                "verdict": line.verdict,
                "verdict_note": line.note,
                "shares": None
                if line.shares is None
                else dict(zip(("below_zero", "zero", "above_zero"), line.shares)),
            }
            for line in comparison.lines
        ],
    }
    return json.dumps(data, indent=2)


# -- stability ----------------------------------------------------------------------------------------------
def _rank_or_dash(value: int | None) -> str:
    return "—" if value is None else str(value)


def stability_to_json(result: Stability) -> str:
    data = {
        "task": result.task,
        "resamples": result.resamples,
        "seed": result.seed,
        "kendall_tau_v3_v1": result.tau_v1,
        "kendall_tau_v3_v2": result.tau_v2,
        "ranks_changed_without_mia": result.changed_without_mia,
        "note": result.note,
        "variants": [dict(row.__dict__) for row in result.rows],
    }
    return json.dumps(data, indent=2)


def render_stability(result: Stability, console: Console) -> None:
    table = Table(title=f"Task {result.task}: ranking stability", title_justify="left")
    headers = ["#", "Submission", "Variant", "Seeds", "Final", "P(rank 1)", "Expected rank", "V1 #", "V2 #"]
    for header in [*headers, "# without MIA"]:
        justify = "left" if header in ("Submission", "Variant") else "right"
        table.add_column(header, justify=justify, overflow="fold")
    for row in result.rows:
        table.add_row(
            str(row.rank),
            row.submission,
            row.variant,
            str(row.seeds),
            fmt(row.final_score, 4),
            f"{row.p_rank1:.3f}",
            f"{row.expected_rank:.2f}",
            _rank_or_dash(row.rank_v1),
            _rank_or_dash(row.rank_v2),
            _rank_or_dash(row.rank_without_mia),
        )
    print_whole(console, table)
    tau = f"Kendall's tau of the V3 ranking with V1: {fmt(result.tau_v1)}, with V2: {fmt(result.tau_v2)}. "
    changed = "—" if result.changed_without_mia is None else str(result.changed_without_mia)
    caption = (
        f"{tau}Ranks that change without the MIA term: {changed} of {len(result.rows)}. "
        f"Two-level bootstrap (seeds, then rows), {result.resamples} resamples, seed {result.seed}."
    )
    if result.note:
        caption += f" Note: {result.note}."
    console.print(Text(caption, style="dim"), soft_wrap=True)
