"""The fonts an invoice is drawn with (assets/invoice.css: Latin, Chinese, Tamil), and which of them the
system lacks. Without them WeasyPrint draws a Chinese or Tamil customer name as missing-glyph boxes, so
`python server.py` says so at start, in one log line."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Callable, Iterable
from pathlib import Path

# family -> the Debian package that brings it (fontconfig names the family exactly so)
REQUIRED = {
    "Noto Sans": "fonts-noto-core",
    "Noto Sans CJK SC": "fonts-noto-cjk",
    "Noto Sans Tamil": "fonts-noto-core",
}
FONT_DIRS = (Path("/usr/share/fonts"), Path("/usr/local/share/fonts"), Path.home() / ".local/share/fonts")
# file-name stems of each family, for a system without fontconfig's fc-list
FILE_STEMS = {"Noto Sans": "NotoSans-", "Noto Sans CJK SC": "NotoSansCJK", "Noto Sans Tamil": "NotoSansTamil-"}


def installed_families() -> set[str] | None:
    """Every family fontconfig knows (what WeasyPrint will find), or None without `fc-list`."""
    fc_list = shutil.which("fc-list")
    if fc_list is None:
        return None
    try:
        out = subprocess.run([fc_list, ":", "family"], capture_output=True, text=True, timeout=20, check=True).stdout  # noqa: S603
    except (OSError, subprocess.SubprocessError):
        return None
    return {name.strip() for line in out.splitlines() for name in line.split(",") if name.strip()}


def installed_files(dirs: Iterable[Path] | None = None) -> list[str]:
    """Font file names under the usual font folders."""
    names: list[str] = []
    for root in FONT_DIRS if dirs is None else dirs:
        if root.is_dir():
            names.extend(p.name for p in root.rglob("*") if p.suffix.lower() in (".ttf", ".otf", ".ttc"))
    return names


def missing_fonts(families: Callable[[], set[str] | None] | None = None) -> list[str]:
    """The required families that are not installed, in the order of REQUIRED."""
    known = (families or installed_families)()
    if known is not None:
        return [family for family in REQUIRED if family not in known]
    files = installed_files()
    return [family for family, stem in FILE_STEMS.items() if not any(name.startswith(stem) for name in files)]


def font_warning(missing: list[str]) -> str | None:
    """One line naming what is missing and how to install it, or None when nothing is."""
    if not missing:
        return None
    packages = sorted({REQUIRED[family] for family in missing})
    return (
        f"invoice fonts missing: {', '.join(missing)}; Chinese and Tamil names will print as boxes "
        f"(install: apt-get install {' '.join(packages)}, or run ./scripts/setup)"
    )
