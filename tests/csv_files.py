"""The tests' one CSV writer: files written like pandas' ``to_csv`` (minimal quoting, "\\n" line ends),
the way the official scorer writes its generations and MIA losses."""

from __future__ import annotations

import csv
from pathlib import Path


def write_csv(path: Path, header: list[str], rows: list[list[object]]) -> Path:
    """Write `header` and `rows` to `path` (parents created); returns `path`."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(header)
        writer.writerows(rows)
    return path
