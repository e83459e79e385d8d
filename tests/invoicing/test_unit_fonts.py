"""The start-up font check: which invoice fonts are missing, and the one line that says so."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from domain.invoicing.outputs import fonts
from domain.invoicing.outputs.fonts import REQUIRED, font_warning, installed_files, missing_fonts


def test_every_family_the_stylesheet_names_is_checked() -> None:
    css = (Path(fonts.__file__).parent / "assets" / "invoice.css").read_text()
    declared = css.split("font-family:", 1)[1].split(";", 1)[0]
    named = [part.strip().strip('"') for part in declared.split(",")]
    assert [n for n in named if n != "sans-serif"] == list(REQUIRED)


def test_missing_families_are_named_in_order() -> None:
    assert missing_fonts(lambda: {"Noto Sans", "DejaVu Sans"}) == ["Noto Sans CJK SC", "Noto Sans Tamil"]
    assert missing_fonts(lambda: set(REQUIRED) | {"Other"}) == []


def test_without_fc_list_font_files_are_looked_for(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "truetype" / "noto").mkdir(parents=True)
    (tmp_path / "truetype" / "noto" / "NotoSans-Regular.ttf").write_bytes(b"")
    assert installed_files([tmp_path]) == ["NotoSans-Regular.ttf"]
    monkeypatch.setattr(fonts, "FONT_DIRS", (tmp_path,))
    assert missing_fonts(lambda: None) == ["Noto Sans CJK SC", "Noto Sans Tamil"]


def test_the_warning_is_one_line_naming_fonts_and_packages() -> None:
    assert font_warning([]) is None
    line = font_warning(["Noto Sans CJK SC", "Noto Sans Tamil"])
    assert line is not None and "\n" not in line
    assert "Noto Sans CJK SC" in line and "Noto Sans Tamil" in line
    assert "fonts-noto-cjk" in line and "fonts-noto-core" in line


def test_this_machine_has_the_invoice_fonts() -> None:
    # The test machine is set up by scripts/setup: the real fontconfig must find every family.
    assert missing_fonts() == []


def test_server_logs_one_line_when_a_font_is_missing(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    import server

    monkeypatch.setattr(fonts, "installed_families", lambda: {"Noto Sans"})
    with caplog.at_level(logging.WARNING, logger="lpg.server"):
        server.warn_missing_fonts()
    lines = [r.getMessage() for r in caplog.records if r.name == "lpg.server"]
    assert len(lines) == 1 and "Noto Sans CJK SC, Noto Sans Tamil" in lines[0]
