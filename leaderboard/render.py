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
from leaderboard.record import HEADLINES

HEADLINE_TITLES = {
    "final_score": "Final",
    "task_aggregate": "Task agg.",
    "mia_score": "MIA",
    "mmlu_average": "MMLU",
}
TIE_MARK = "≈"
SECTIONS = ("ranked", "below_threshold", "failed")
SECTION_TITLES = {
    "ranked": "Ranked",
    "below_threshold": "Below the utility threshold (honorary mentions, not ranked)",
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
    value = getattr(row.record, key)
    text = fmt(value, _digits(key))
    interval = row.record.intervals.get(key)
    if interval is not None and value is not None:
        text += f" [{fmt(interval[0])}, {fmt(interval[1])}]"
    return text


def fmt_rank(row: BoardRow) -> str:
    if row.rank is None:
        return "ref" if row.reference else ""
    return f"{row.rank}{' ' + TIE_MARK if row.tied else ''}"


def row_flags(row: BoardRow, board: Board) -> list[str]:
    flags = list(row.flags)
    failed = any(f.startswith("failed") for f in row.flags)
    if row.runs > 1 and not board.all_runs:
        flags.append(f"latest of {row.runs} failed runs" if failed else f"best of {row.runs} runs")
    if failed and row.record.message:
        flags.append(row.record.message)
    return flags


def board_sections(board: Board) -> list[tuple[str, tuple[BoardRow, ...]]]:
    return [(name, getattr(board, name)) for name in SECTIONS if getattr(board, name)]


# -- data forms ---------------------------------------------------------------------------------------------
def row_to_dict(row: BoardRow, board: Board) -> dict[str, Any]:
    record = row.record
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
        **{key: getattr(record, key) for key in HEADLINES},
        "auc": record.auc,
        "eligible": record.eligible,
        "unchanged": record.unchanged,
        "intervals": {key: list(value) for key, value in record.intervals.items()},
        "terms": list(record.terms) if record.terms is not None else None,
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
    columns = ["task", "section", "rank", "tied_with_leader", "reference", "run_id", "submission", "variant"]
    columns += ["role", "status", "created_at"]
    for key in (*HEADLINES, "auc"):
        columns += [key] + ([f"{key}_low", f"{key}_high"] if key != "auc" else [])
    columns += ["eligible", "unchanged", "runs", "flags", "run_dir"]
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
                    low, high = row.record.intervals.get(key, (None, None))
                    line[f"{key}_low"], line[f"{key}_high"] = low, high
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
        cells += [fmt_headline(row, key) for key in HEADLINES]
        cells.append(", ".join(row_flags(row, board)))
    cells.append(record.run_id[:10])
    return cells


def section_headers(section: str) -> list[str]:
    if section == "failed":
        return ["Submission", "Variant", "Status", "Notes", "Run"]
    first = ["#"] if section == "ranked" else []
    return [*first, "Submission", "Variant", *(HEADLINE_TITLES[k] for k in HEADLINES), "Flags", "Run"]


def legend(board: Board) -> str:
    text = "Numbers: official score [95% bootstrap interval]. "
    text += f"{TIE_MARK}: the final-score interval overlaps the leader's (tied for rank 1). "
    text += "ref: reference row, not ranked."
    if not board.all_runs:
        text += " Best run per submission + variant (--all-runs shows every run)."
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
def render_boards(boards: list[Board], console: Console) -> None:
    """Rich tables, one group per task."""
    for board in boards:
        for section, rows in board_sections(board):
            title = f"Task {board.task}"
            if section != "ranked" or board.has_threshold:
                title += " — " + ("eligible" if section == "ranked" else SECTION_TITLES[section])
            table = Table(title=title, title_justify="left", show_lines=False)
            for header in section_headers(section):
                numeric = header in HEADLINE_TITLES.values() or header == "#"
                table.add_column(header, justify="right" if numeric else "left", overflow="fold")
            for row in rows:
                style = "dim" if row.reference else ("red" if section == "failed" else None)
                table.add_row(
                    *(Text(c) for c in row_cells(row, board, ranked=section == "ranked")), style=style
                )
            console.print(table)
        if not any(rows for _, rows in board_sections(board)):
            console.print(f"Task {board.task}: no runs recorded.")
        console.print(Text(legend(board), style="dim"), soft_wrap=True)
        console.print()


# -- comparisons --------------------------------------------------------------------------------------------
def _compare_rows(comparison: Comparison) -> list[list[str]]:
    rows = []
    for line in comparison.lines:
        interval = "—" if line.interval is None else f"[{line.interval[0]:+.3f}, {line.interval[1]:+.3f}]"
        diff = "—" if line.diff is None else f"{line.diff:+.4f}"
        rows.append([line.label, fmt(line.a, 4), fmt(line.b, 4), diff, interval, line.verdict or ""])
    return rows


COMPARE_HEADERS = ["", "A", "B", "B - A", "95% interval (paired)", "Verdict for B"]


def _compare_caption(comparison: Comparison) -> str:
    a, b = comparison.a, comparison.b
    text = (
        f"A = {a.run_id} ({a.submission_name}/{a.variant}), B = {b.run_id} ({b.submission_name}/{b.variant}); "
        f"paired bootstrap, {comparison.resamples} resamples, seed {comparison.seed}"
    )
    if comparison.matched:
        text += " over " + ", ".join(f"{v} {k}" for k, v in comparison.matched.items())
    if comparison.note:
        text += f". Note: {comparison.note}"
    return text + "."


def render_comparison(comparison: Comparison, console: Console) -> None:
    table = Table(title=f"Task {comparison.a.task}: B compared with A", title_justify="left")
    for header in COMPARE_HEADERS:
        table.add_column(header, justify="left" if header in ("", "Verdict for B") else "right")
    styles = {"better": "green", "worse": "red"}
    for index, row in enumerate(_compare_rows(comparison)):
        line = comparison.lines[index]
        table.add_row(*row, style=styles.get(line.verdict or "", None), end_section=line.key == "auc")
    console.print(table)
    console.print(Text(_compare_caption(comparison), style="dim"), soft_wrap=True)


def comparison_to_markdown(comparison: Comparison) -> str:
    lines = _md_table(COMPARE_HEADERS, _compare_rows(comparison))
    return "\n".join([*lines, "", _compare_caption(comparison), ""])


def comparison_to_json(comparison: Comparison) -> str:
    data = {
        "task": comparison.a.task,
        "a": comparison.a.run_id,
        "b": comparison.b.run_id,
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
            }
            for line in comparison.lines
        ],
    }
    return json.dumps(data, indent=2)
