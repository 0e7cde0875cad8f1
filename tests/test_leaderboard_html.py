"""The HTML board in headless Chromium: the MIA-score-against-utility plot is drawn where its runs are, and a
point's link opens that run's detail view of the 12 terms (a screenshot, read back pixel by pixel).

Skips where Chromium is absent (CI installs the Debian package `chromium`).
"""

from __future__ import annotations

import json
import shutil
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import numpy as np
import pytest

from harness.cli import main

sys.path.insert(0, str(Path(__file__).parent / "fixtures" / "leaderboard"))
from fabricate import demo_board  # noqa: E402

CHROMIUM = Path("/usr/bin/chromium")
pytestmark = pytest.mark.skipif(
    not CHROMIUM.exists(),
    reason="headless Chromium (/usr/bin/chromium, Debian package chromium) not installed",
)

# the page's colours (leaderboard/html.py) and the trade-off plot's geometry in CSS pixels
PLOT_FILL = (0xF7, 0xF9, 0xFC)
POINT = {
    "entry": (0x2F, 0x6F, 0xDB),
    "below": (0xE0, 0x7B, 0x00),  # a white circle with an orange ring
    "reference-target": (0xD9, 0x34, 0x2B),
    "reference-gold": (0x1C, 0x9A, 0x4A),
}
FORGET_BAR, RETAIN_BAR = (0x8A, 0x5C, 0xD0), (0x2A, 0x9D, 0x8F)
PLOT_W, PLOT_H = 368, 316


def png_pixels(path: Path) -> np.ndarray:
    """(height, width, 3) RGB of an 8-bit RGB/RGBA non-interlaced PNG (stdlib zlib + numpy)."""
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    pos, idat, header = 8, b"", None
    while pos < len(data):
        (length,) = struct.unpack(">I", data[pos : pos + 4])
        kind, body = data[pos + 4 : pos + 8], data[pos + 8 : pos + 8 + length]
        if kind == b"IHDR":
            header = struct.unpack(">IIBBBBB", body)
        elif kind == b"IDAT":
            idat += body
        pos += 12 + length
    width, height, depth, colour, _, _, interlace = header
    assert depth == 8 and colour in (2, 6) and interlace == 0
    bpp = 3 if colour == 2 else 4
    stride = width * bpp
    raw = np.frombuffer(zlib.decompress(idat), dtype=np.uint8).reshape(height, stride + 1)
    out = np.zeros((height, stride), dtype=np.uint8)
    previous = np.zeros(stride, dtype=np.int32)
    for y in range(height):
        kind, line = raw[y, 0], raw[y, 1:].astype(np.int32)
        if kind == 1:  # sub: a running sum per channel
            line = np.cumsum(line.reshape(width, bpp), axis=0).reshape(-1) & 255
        elif kind == 2:  # up
            line = (line + previous) & 255
        elif kind in (3, 4):  # average, paeth: sequential along the row
            row = line.tolist()
            up = previous.tolist()
            for i in range(stride):
                a = row[i - bpp] if i >= bpp else 0
                b, c = up[i], up[i - bpp] if i >= bpp else 0
                if kind == 3:
                    row[i] = (row[i] + (a + b) // 2) & 255
                else:
                    p = a + b - c
                    pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                    row[i] = (row[i] + (a if pa <= pb and pa <= pc else b if pb <= pc else c)) & 255
            line = np.array(row, dtype=np.int32)
        out[y] = line
        previous = line
    return out.reshape(height, width, bpp)[:, :, :3]


def plot_areas(pixels: np.ndarray) -> list[tuple[int, int, int, int]]:
    """(x0, y0, x1, y1) of each trade-off plot's area (its fill colour), top to bottom; the page must stack
    the plots (a narrow window), and the grid lines that cross an area are bridged."""
    fill = np.all(pixels == PLOT_FILL, axis=2)
    rows = np.flatnonzero(fill.sum(axis=1) > 100)
    bands: list[list[int]] = []
    for y in rows:
        if bands and y - bands[-1][1] <= 3:
            bands[-1][1] = y
        else:
            bands.append([y, y])
    areas = []
    for y0, y1 in bands:
        xs = np.flatnonzero(fill[y0 : y1 + 1].any(axis=0))
        areas.append((int(xs[0]), int(y0), int(xs[-1]), int(y1)))
    return areas


def near(pixels: np.ndarray, x: float, y: float, colour: tuple[int, int, int], radius: int) -> bool:
    xi, yi = round(x), round(y)
    patch = pixels[max(0, yi - radius) : yi + radius + 1, max(0, xi - radius) : xi + radius + 1]
    return bool(np.any(np.all(np.abs(patch.astype(int) - colour) <= 8, axis=2)))


def screenshot(page: str, shot: Path, profile: Path, size: str) -> np.ndarray:
    command = [
        str(CHROMIUM),
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
    ]
    command += ["--disable-background-networking", "--disable-component-update", "--disable-sync"]
    command += [f"--user-data-dir={profile}", f"--screenshot={shot}", f"--window-size={size}", page]
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)
    finally:
        shutil.rmtree(profile, ignore_errors=True)
    assert shot.is_file(), f"Chromium wrote no screenshot: {done.stderr[-2000:]}"
    return png_pixels(shot)


@pytest.fixture(scope="module")
def page(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[dict]]:
    root = tmp_path_factory.mktemp("html-board")
    db = demo_board(root)
    html, shown = root / "board.html", root / "board.json"
    for fmt, out in (("html", html), ("json", shown)):
        with pytest.raises(SystemExit) as exit_info:
            main(["board", "--db", str(db), "--format", fmt, "--output", str(out)])
        assert exit_info.value.code == 0
    (board,) = json.loads(shown.read_text())
    return html, board["ranked"] + board["below_threshold"]


def _kind(row: dict) -> str:
    return row["role"] if row["reference"] else ("entry" if row["rank"] is not None else "below")


def test_mia_plot_is_drawn_with_each_run_in_its_place(page, tmp_path: Path) -> None:
    html, rows = page
    # a narrow window stacks the plots: forget/retain, forget/utility, then MIA score/utility (the page is
    # shorter than the window, so nothing scrolls)
    pixels = screenshot(html.as_uri(), tmp_path / "board.png", tmp_path / "profile", "600,4000")
    areas = plot_areas(pixels)
    assert len(areas) == 3, areas
    x0, y0, x1, y1 = areas[2]
    assert abs((x1 - x0) - PLOT_W) <= 3 and abs((y1 - y0) - PLOT_H) <= 3  # the whole plot area is painted
    centres = [
        (x0 + row["mia_score"] * PLOT_W, y0 + (1 - row["mmlu_average"]) * PLOT_H, _kind(row)) for row in rows
    ]
    for i, (x, y, kind) in enumerate(centres):
        # where two points overlap (closer than two radii) the one drawn last may cover the other's centre
        covering = {
            k for j, (u, v, k) in enumerate(centres) if j != i and abs(x - u) < 14 and abs(y - v) < 14
        }
        allowed = {kind} | covering
        radius = 7 if "below" in allowed or covering else 3
        assert any(near(pixels, x, y, POINT[k], radius) for k in allowed), (kind, x, y)
    # and nothing is drawn where no run is: the top-right corner of the area is empty
    assert not any(near(pixels, x1 - 10, y0 + 10, colour, 6) for colour in POINT.values())


def test_a_points_link_opens_the_runs_12_terms(page, tmp_path: Path) -> None:
    html, rows = page
    text = html.read_text()
    assert text.count('<details class="terms">') == len(rows) and "<details open" not in text  # all closed
    leader = next(row for row in rows if row["rank"] == 1)
    opened = screenshot(
        f"{html.as_uri()}#terms-tiny-{leader['run_id']}", tmp_path / "open.png", tmp_path / "p2", "1200,2600"
    )
    # the linked view opened: 6 forget and 6 retain bars, each about 14 px high and 0.3-0.9 x 330 px long
    for colour, terms in ((FORGET_BAR, leader["terms"][:6]), (RETAIN_BAR, leader["terms"][6:])):
        painted = int(np.all(opened == colour, axis=2).sum())
        expected = sum(terms) * 330 * 14
        assert 0.8 * expected <= painted <= 1.2 * expected, (painted, expected)
