"""The board as one self-contained HTML page (inline CSS and SVG, no scripts, no network resources).

Per task: the ranked table (and the below-threshold and failed tables), the spread of the final score (one
dot per seed, the mean as a bar, the 95% interval as a line, per shown row), three trade-off plots with one
point per shown row (a group's mean, its seeds as small dots): forget efficacy (mean of the 6 inverted forget
terms) against retain (mean of the 6 retain terms) and against utility (MMLU average), and the MIA score
against utility; and a detail view per run with its 12 terms (bars and a table; a group's seeds as dots and
columns), closed until opened or reached from a point of a plot (each point links to its run's view; the
browser opens a closed <details> that holds the link's target). Reference rows are drawn as diamonds.
"""

from __future__ import annotations

import re
from datetime import datetime, timezone
from html import escape

from leaderboard.groups import unit_label
from leaderboard.ranking import Board, BoardRow
from leaderboard.record import term_labels
from leaderboard.render import (
    SECTION_TITLES,
    board_sections,
    fmt,
    legend,
    row_cells,
    row_id,
    section_headers,
)

_CSS = """
body { font: 14px/1.4 system-ui, sans-serif; margin: 24px; color: #1d2330; background: #fff; }
h1 { font-size: 22px; margin: 0 0 4px; } h2 { font-size: 18px; margin: 28px 0 8px; }
h3 { font-size: 15px; margin: 18px 0 6px; color: #444; }
table { border-collapse: collapse; margin: 4px 0 8px; }
th, td { padding: 4px 10px; border-bottom: 1px solid #dde2ea; text-align: left; }
th { background: #eef2f8; } td.num { text-align: right; white-space: nowrap; font-variant-numeric: tabular-nums; }
tr.ref td { color: #666; font-style: italic; background: #fafafa; }
tr.failed td { color: #a33; }
.legend, .meta { color: #667; font-size: 12px; }
.plots { display: flex; flex-wrap: wrap; gap: 24px; }
svg text { font: 11px system-ui, sans-serif; fill: #334; }
details.terms { margin: 4px 0; } details.terms summary { cursor: pointer; }
.terms-body { padding: 6px 0 6px 16px; display: flex; flex-wrap: wrap; gap: 16px; align-items: flex-start; } .terms-body:target { outline: 2px solid #2f6fdb; }
"""

_STYLE = {
    "entry": ("circle", "#2f6fdb", "#2f6fdb"),
    "below": ("circle", "#ffffff", "#e07b00"),
    "reference-target": ("diamond", "#d9342b", "#d9342b"),
    "reference-gold": ("diamond", "#1c9a4a", "#1c9a4a"),
}
_LEGEND = (
    ("entry", "ranked run"),
    ("below", "below the utility threshold"),
    ("reference-target", "reference: target"),
    ("reference-gold", "reference: gold"),
)


def _point_kind(row: BoardRow, below: bool) -> str:
    if row.reference:
        return row.record.role
    return "below" if below else "entry"


def _marker(kind: str, x: float, y: float, title: str = "") -> str:
    shape, fill, stroke = _STYLE[kind]
    tip = f"<title>{escape(title)}</title>" if title else ""
    if shape == "diamond":
        points = f"{x},{y - 7} {x + 7},{y} {x},{y + 7} {x - 7},{y}"
        return f'<polygon points="{points}" fill="{fill}" stroke="{stroke}" stroke-width="2">{tip}</polygon>'
    return (
        f'<circle cx="{x}" cy="{y}" r="5.5" fill="{fill}" stroke="{stroke}" stroke-width="2">{tip}</circle>'
    )


def _seed_dot(x: float, y: float, kind: str, title: str) -> str:
    _, fill, stroke = _STYLE[kind]
    colour = stroke if fill == "#ffffff" else fill
    return (
        f'<circle class="seed" cx="{x}" cy="{y}" r="2.5" fill="{colour}" fill-opacity="0.45" stroke="none">'
        f"<title>{escape(title)}</title></circle>"
    )


_X_FORGET = "forget efficacy (mean of the 6 inverted forget terms)"
_X_MIA = "MIA score (1 - 2 |AUC - 0.5|)"


def _plot(
    points: list[tuple[float, float, str, str, str, str]],
    seeds: list[tuple[float, float, str, str]],
    x_title: str,
    y_title: str,
    name: str,
) -> str:
    """points: (x, y, kind, label, tooltip, link) with x, y in [0, 1]; seeds: (x, y, kind, tooltip) small dots.

    The svg says what it drew (data-plot, data-points) so a test can read it back from the rendered page."""
    width, height, left, right, top, bottom = 440, 380, 56, 16, 16, 48
    pw, ph = width - left - right, height - top - bottom

    def sx(v: float) -> float:
        return round(left + max(0.0, min(1.0, v)) * pw, 1)

    def sy(v: float) -> float:
        return round(top + (1 - max(0.0, min(1.0, v))) * ph, 1)

    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" class="plot" data-plot="{name}" data-points="{len(points)}" '
        f'width="{width}" height="{height}" role="img" aria-label="{escape(y_title)} against {escape(x_title)}">'
    ]
    parts.append(f'<rect x="{left}" y="{top}" width="{pw}" height="{ph}" fill="#f7f9fc" stroke="#9aa5b5"/>')
    for tick in (0.0, 0.2, 0.4, 0.6, 0.8, 1.0):
        parts.append(f'<line x1="{sx(tick)}" y1="{top}" x2="{sx(tick)}" y2="{top + ph}" stroke="#e1e6ee"/>')
        parts.append(f'<line x1="{left}" y1="{sy(tick)}" x2="{left + pw}" y2="{sy(tick)}" stroke="#e1e6ee"/>')
        parts.append(f'<text x="{sx(tick)}" y="{top + ph + 16}" text-anchor="middle">{tick:.1f}</text>')
        parts.append(f'<text x="{left - 6}" y="{sy(tick) + 4}" text-anchor="end">{tick:.1f}</text>')
    parts.append(
        f'<text x="{left + pw / 2}" y="{height - 8}" text-anchor="middle">{escape(x_title)} →</text>'
    )
    parts.append(
        f'<text transform="translate(14 {top + ph / 2}) rotate(-90)" text-anchor="middle">{escape(y_title)} →</text>'
    )
    for x, y, kind, tip in seeds:
        parts.append(_seed_dot(sx(x), sy(y), kind, tip))
    for x, y, kind, label, tip, link in points:
        parts.append(f'<a href="#{link}">{_marker(kind, sx(x), sy(y), tip + " (click: its 12 terms)")}</a>')
        parts.append(f'<text x="{sx(x) + 8}" y="{sy(y) - 6}">{escape(label)}</text>')
    if not points:
        parts.append(
            f'<text x="{left + pw / 2}" y="{top + ph / 2}" text-anchor="middle">no run to draw</text>'
        )
    parts.append("</svg>")
    return "".join(parts)


def _label(row: BoardRow, kind: str) -> str:
    if row.rank is not None:
        return str(row.rank)
    return "T" if kind == "reference-target" else "G" if kind == "reference-gold" else "h"


def _shown(board: Board) -> list[tuple[BoardRow, str]]:
    return [
        (row, _point_kind(row, below))
        for below, rows in ((False, board.ranked), (True, board.below_threshold))
        for row in rows
    ]


def _anchor(board: Board, row: BoardRow) -> str:
    """The id of a row's detail view (unique on the page: task and row id, HTML-safe)."""
    return "terms-" + re.sub(r"[^A-Za-z0-9_.-]", "-", f"{board.task}-{row_id(row)}")


def _forget_retain(terms: tuple[float, ...] | None) -> tuple[float, float] | None:
    """(forget efficacy, retain): which terms are forget and which retain is only known for the full 12."""
    if terms is None or len(terms) != 12:
        return None
    return sum(terms[:6]) / 6, sum(terms[6:]) / 6


def _points(board: Board) -> dict[str, tuple[list, list]]:
    """The three trade-off plots' points and seed dots: name -> (points, seeds)."""
    plots: dict[str, tuple[list, list]] = {name: ([], []) for name in ("retain", "utility", "mia")}
    for row, kind in _shown(board):
        label, tip = _label(row, kind), f"{row.record.submission_name}/{row.record.variant} ({row_id(row)})"
        link = _anchor(board, row)
        fr, mmlu, mia = _forget_retain(row.group.terms()), row.value("mmlu_average"), row.value("mia_score")
        if fr is not None:
            plots["retain"][0].append((fr[0], fr[1], kind, label, tip, link))
            if mmlu is not None:
                plots["utility"][0].append((fr[0], mmlu, kind, label, tip, link))
        if mia is not None and mmlu is not None:
            plots["mia"][0].append((mia, mmlu, kind, label, tip, link))
        if row.group.size == 1:
            continue
        for record in row.group.records:
            seed_tip = f"{tip}, {unit_label(record)} ({record.run_id})"
            own = _forget_retain(record.terms)
            if own is not None:
                plots["retain"][1].append((own[0], own[1], kind, seed_tip))
                if record.mmlu_average is not None:
                    plots["utility"][1].append((own[0], record.mmlu_average, kind, seed_tip))
            if record.mia_score is not None and record.mmlu_average is not None:
                plots["mia"][1].append((record.mia_score, record.mmlu_average, kind, seed_tip))
    return plots


def _plots(board: Board) -> str:
    plots = _points(board)
    keys = "".join(
        f'<svg width="16" height="16">{_marker(kind, 8, 8)}</svg> {escape(text)} &nbsp; '
        for kind, text in _LEGEND
    )
    task = re.sub(r"[^A-Za-z0-9_.-]", "-", board.task)
    return (
        '<div class="plots">'
        f'<div id="plot-{task}-retain">'
        f"{_plot(*plots['retain'], _X_FORGET, 'retain (mean of the 6 retain terms)', 'forget-retain')}</div>"
        f'<div id="plot-{task}-utility">'
        f"{_plot(*plots['utility'], _X_FORGET, 'utility (MMLU average)', 'forget-utility')}</div>"
        f'<div id="plot-{task}-mia">'
        f"{_plot(*plots['mia'], _X_MIA, 'utility (MMLU average)', 'mia-utility')}</div>"
        "</div>"
        f'<p class="legend">{keys}<br>Labels are ranks (T: target, G: gold, h: below the threshold); '
        "a group of seeds is drawn at its mean, its seeds as small dots; hover a point for its run, click it for "
        "its 12 terms. Up and to the right is better. The MIA score is 1 at AUC 0.5 (members and non-members "
        "look alike) and 0 at AUC 0 or 1 (forgotten documents still, or suspiciously, recognisable).</p>"
    )


def _spread(board: Board) -> str:
    """The final score of each shown row: one dot per seed, the mean as a bar, the 95% interval as a line."""
    rows = [(row, kind) for row, kind in _shown(board) if row.value("final_score") is not None]
    if not rows:
        return ""
    width, left, right, top, step = 640, 210, 20, 14, 22
    height = top + step * len(rows) + 30
    pw = width - left - right

    def sx(v: float) -> float:
        return round(left + max(0.0, min(1.0, v)) * pw, 1)

    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" role="img">']
    for tick in (0.0, 0.2, 0.4, 0.6, 0.8, 1.0):
        parts.append(
            f'<line x1="{sx(tick)}" y1="{top}" x2="{sx(tick)}" y2="{height - 30}" stroke="#e1e6ee"/>'
        )
        parts.append(f'<text x="{sx(tick)}" y="{height - 14}" text-anchor="middle">{tick:.1f}</text>')
    for i, (row, kind) in enumerate(rows):
        y = top + step * i + step / 2
        _, fill, stroke = _STYLE[kind]
        name = (
            f"{_label(row, kind)}. {row.record.submission_name}/{row.record.variant} ({row.group.size} seed"
        )
        parts.append(
            f'<text x="{left - 8}" y="{y + 4}" text-anchor="end">{escape(name)}{"s" * (row.group.size > 1)})</text>'
        )
        interval = row.interval("final_score")
        if interval is not None:
            parts.append(
                f'<line x1="{sx(interval[0])}" y1="{y}" x2="{sx(interval[1])}" y2="{y}" stroke="{stroke}" '
                'stroke-width="1.5" stroke-opacity="0.6"/>'
            )
        for record in row.group.records:
            parts.append(
                _seed_dot(
                    sx(float(record.final_score or 0.0)), y, kind, f"{unit_label(record)} ({record.run_id})"
                )
            )
        mean = float(row.value("final_score") or 0.0)
        parts.append(
            f'<rect class="mean" x="{sx(mean) - 1.5}" y="{y - 7}" width="3" height="14" fill="{stroke}">'
            f"<title>mean {mean:.4f}</title></rect>"
        )
    parts.append(f'<text x="{left + pw / 2}" y="{height - 1}" text-anchor="middle">final score →</text>')
    parts.append("</svg>")
    return (
        f'<div class="spread">{"".join(parts)}</div><p class="legend">Final score per row: small dots are the '
        "seeds, the bar is the mean, the line the 95% interval (two-level for a group, rows only for one seed)."
        "</p>"
    )


_TERM_COLOURS = {"forget": "#8a5cd0", "retain": "#2a9d8f"}


def _term_bars(terms: tuple[float, ...], seeds: list[tuple[float, ...]]) -> str:
    """The 12 terms as horizontal bars (forget inverted, then retain), each seed's value as a dot on its bar."""
    labels = term_labels(len(terms))
    width, left, bar, step, top = 700, 250, 330, 20, 8
    height = top + step * len(terms) + 24
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" class="term-bars" data-terms="{len(terms)}" width="{width}" '
        f'height="{height}" role="img" aria-label="the {len(terms)} terms">'
    ]
    for tick in (0.0, 0.5, 1.0):
        x = left + tick * bar
        parts.append(f'<line x1="{x}" y1="{top}" x2="{x}" y2="{height - 20}" stroke="#e1e6ee"/>')
        parts.append(f'<text x="{x}" y="{height - 6}" text-anchor="middle">{tick:.1f}</text>')
    for i, (label, value) in enumerate(zip(labels, terms)):
        y = top + step * i
        colour = _TERM_COLOURS.get(label.split(" ")[0], "#667")
        zero = value == 0
        name = f"{label} (1 - score)" if label.startswith("forget") else label
        red = ' fill="#c0262d"' if zero else ""
        parts.append(f'<text x="{left - 8}" y="{y + 14}" text-anchor="end"{red}>{escape(name)}</text>')
        parts.append(
            f'<rect class="term" x="{left}" y="{y + 3}" width="{round(max(0.0, min(1.0, value)) * bar, 1)}" '
            f'height="{step - 6}" fill="{colour}"><title>{escape(label)}: {value:.4f}</title></rect>'
        )
        note = " (0: the task aggregate is 0)" if zero else ""
        parts.append(f'<text x="{left + bar + 8}" y="{y + 14}">{value:.3f}{note}</text>')
        for own in seeds:
            cx = round(left + max(0.0, min(1.0, own[i])) * bar, 1)
            parts.append(f'<circle cx="{cx}" cy="{y + step / 2}" r="2.5" fill="#1d2330" fill-opacity="0.6"/>')
    parts.append("</svg>")
    return "".join(parts)


def _details(board: Board) -> str:
    """A closed detail view per shown run with terms: its 12 terms as bars and a table (a group: the mean over
    its seeds, each seed as a dot and a column). A point of a plot links to its run's view, which opens."""
    out = []
    for row, kind in _shown(board):
        terms = row.group.terms()
        if terms is None:
            continue
        seeds = [r.terms or () for r in row.group.records] if row.group.size > 1 else []
        labels = term_labels(len(terms))
        low = min(range(len(terms)), key=lambda i: terms[i])
        summary = (
            f"{_label(row, kind)}. {row.record.submission_name}/{row.record.variant} ({row_id(row)}): task "
            f"aggregate {fmt(row.value('task_aggregate'))}, lowest term {labels[low]} {terms[low]:.3f}"
        )
        head = "".join(f"<th>{escape(unit_label(r))}</th>" for r in row.group.records) if seeds else ""
        body = "".join(
            f"<tr><td>{escape(label)}</td><td class='num'>{value:.4f}</td>"
            + "".join(f"<td class='num'>{own[i]:.4f}</td>" for own in seeds)
            + "</tr>"
            for i, (label, value) in enumerate(zip(labels, terms))
        )
        out.append(
            f'<details class="terms"><summary>{escape(summary)}</summary><div class="terms-body" '
            f'id="{_anchor(board, row)}">{_term_bars(terms, seeds)}<table><thead><tr><th>term</th>'
            f"<th>{'mean' if seeds else 'value'}</th>{head}</tr></thead><tbody>{body}</tbody></table></div>"
            "</details>"
        )
    if not out:
        return ""
    return (
        "<h3>The 12 terms of each run</h3><p class='legend'>The official terms in their order (forget inverted: "
        "1 - the mean score, so higher is better everywhere); any term at 0 makes the task aggregate 0.</p>"
        + "".join(out)
    )


def _table(board: Board, section: str, rows: tuple[BoardRow, ...]) -> str:
    headers = section_headers(section)
    out = ["<table><thead><tr>", *(f"<th>{escape(h)}</th>" for h in headers), "</tr></thead><tbody>"]
    numeric = {i for i, h in enumerate(headers) if h in ("#", "Final", "Task agg.", "MIA", "MMLU")}
    for row in rows:
        css = "ref" if row.reference else ("failed" if section == "failed" else "")
        out.append(f'<tr class="{css}">')
        for i, cell in enumerate(row_cells(row, board, ranked=section == "ranked")):
            out.append(f'<td class="num">{escape(cell)}</td>' if i in numeric else f"<td>{escape(cell)}</td>")
        out.append("</tr>")
    out.append("</tbody></table>")
    return "".join(out)


def boards_to_html(boards: list[Board], *, title: str = "Unlearning leaderboard") -> str:
    """One self-contained page for all boards."""
    generated = datetime.now(timezone.utc).isoformat(timespec="seconds")
    body = [
        f"<h1>{escape(title)}</h1>",
        f'<p class="meta">SemEval-2025 Task 4 scoring (V3). Generated {generated}.</p>',
    ]
    for board in boards:
        body.append(f"<h2>Task {escape(board.task)}</h2>")
        sections = board_sections(board)
        if not sections:
            body.append("<p>No runs recorded.</p>")
            continue
        for section, rows in sections:
            if section != "ranked" or board.has_threshold:
                heading = (
                    "Eligible (MMLU above the threshold)" if section == "ranked" else SECTION_TITLES[section]
                )
                body.append(f"<h3>{escape(heading)}</h3>")
            body.append(_table(board, section, rows))
        body.append(f'<p class="legend">{escape(legend(board))}</p>')
        body.append(_spread(board))
        body.append(_plots(board))
        body.append(_details(board))
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f"<title>{escape(title)}</title><style>{_CSS}</style></head><body>"
        + "\n".join(body)
        + "</body></html>\n"
    )
