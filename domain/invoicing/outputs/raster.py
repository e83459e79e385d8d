"""Receipt lines a printer's code pages cannot carry (Tamil, Chinese), drawn as a bitmap instead.

Thermal printers print bitmaps whatever their character sets, so a Tamil or Chinese customer name is printed
as the customer wrote it: each run of text is drawn with the Noto font of its script (Pillow's text layout,
which shapes Tamil when Pillow has libraqm), at the paper's dot width. Without the fonts nothing is drawn
and the caller falls back to text.
"""

from __future__ import annotations

import unicodedata
from functools import lru_cache
from pathlib import Path

from PIL import Image, ImageDraw, ImageFont

DOTS = {58: 384, 80: 576}  # printable dots a line at 203 dpi
FONT_SIZE = 22  # about 12 dots a Latin character: 32 columns on 384 dots, 48 on 576
LINE_HEIGHT = 30
FONT_DIRS = (Path("/usr/share/fonts"), Path("/usr/local/share/fonts"))
# script -> (file name, collection index): Debian's fonts-noto-core and fonts-noto-cjk.
FONT_FILES = {
    "latin": ("NotoSans-Regular.ttf", 0),
    "tamil": ("NotoSansTamil-Regular.ttf", 0),
    "cjk": ("NotoSansCJK-Regular.ttc", 2),  # index 2: Simplified Chinese, as Singapore writes it
}
FontType = ImageFont.FreeTypeFont


@lru_cache(maxsize=8)
def font(script: str) -> FontType | None:
    name, index = FONT_FILES[script]
    for folder in FONT_DIRS:
        for path in sorted(folder.rglob(name)) if folder.is_dir() else ():
            return ImageFont.truetype(str(path), FONT_SIZE, index=index)
    return None


def script_of(ch: str) -> str:
    if "\u0b80" <= ch <= "\u0bff":
        return "tamil"
    if unicodedata.east_asian_width(ch) in ("W", "F"):
        return "cjk"
    return "latin"


def runs(text: str) -> list[tuple[str, str]]:
    """`text` cut into (script, run) pieces; combining marks stay with the letter before them."""
    out: list[tuple[str, str]] = []
    for ch in text:
        script = script_of(ch)
        if out and (script == out[-1][0] or unicodedata.category(ch).startswith("M")):
            out[-1] = (out[-1][0], out[-1][1] + ch)
        else:
            out.append((script, ch))
    return out


def _draw(text: str) -> Image.Image | None:
    pieces = [(font(script), run) for script, run in runs(text)]
    if not pieces or any(f is None for f, _ in pieces):
        return None
    widths = [int(f.getlength(run)) + 1 for f, run in pieces if f is not None]
    image = Image.new("1", (max(sum(widths), 1), LINE_HEIGHT), 1)
    draw = ImageDraw.Draw(image)
    x = 0
    for (f, run), w in zip(pieces, widths, strict=True):
        draw.text((x, LINE_HEIGHT - 7), run, font=f, fill=0, anchor="ls")
        x += w
    return image


def line_bitmap(text: str, width_mm: int) -> Image.Image | None:
    """A 1-bit image of one receipt line, never wider than the paper: words that do not fit go on a second
    row (a single word too long is squeezed). None when a font is missing."""
    dots = DOTS[width_mm]
    rows: list[Image.Image] = []
    current = ""
    for word in text.split():
        candidate = f"{current} {word}" if current else word
        drawn = _draw(candidate)
        if drawn is None:
            return None
        if drawn.width <= dots or not current:
            current = candidate
            continue
        rows.append(_draw(current))  # type: ignore[arg-type]
        current = word
    if current:
        rows.append(_draw(current))  # type: ignore[arg-type]
    if not rows:
        return None
    rows = [row if row.width <= dots else row.resize((dots, LINE_HEIGHT)) for row in rows]
    image = Image.new("1", (max(row.width for row in rows), LINE_HEIGHT * len(rows)), 1)
    for index, row in enumerate(rows):
        image.paste(row, (0, index * LINE_HEIGHT))
    return image
