"""The repository's documents stay true where a test can check them: the README is short, every relative
link in README.md and docs/*.md resolves to a file inside the repository (and a #fragment to a heading of
it), nothing in the repository points to a file outside it, and operations.md's configuration table names
every LPG_* variable the settings read."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]

# Documents other branches add (reliability, Galera, CouchDB, security, outbox and metrics, the console,
# the benchmark command's output). Linked already; a link to one of them may dangle ONLY while it is
# listed here. The integrator empties this list once those branches are merged.
NOT_YET_MERGED: set[str] = set()  # documents linked before they were merged: none now

LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")
SKIP_DIRS = {".git", ".venv", "node_modules", "__pycache__", ".hypothesis", ".mypy_cache", ".ruff_cache", "artifacts"}
OUTSIDE = re.compile(r"(\.\./shared|/work/shared|shared/spec|perf-anchors|conventions\.md|\bdomain\.md\b)")


def anchors(markdown: str) -> set[str]:
    """GitHub's heading anchors: lower case, punctuation dropped, spaces to hyphens."""
    out = set()
    for line in markdown.splitlines():
        if line.startswith("#"):
            title = line.lstrip("#").strip().lower()
            out.add(re.sub(r"\s", "-", re.sub(r"[^\w\s-]", "", title)))
    return out


def relative_links(path: Path) -> list[str]:
    text = re.sub(r"```.*?```", "", path.read_text(), flags=re.S)  # code blocks hold no links
    return [t for t in LINK.findall(text) if not re.match(r"^[a-z]+:", t) and not t.startswith("#")]


def test_readme_is_short() -> None:
    assert len((ROOT / "README.md").read_text().splitlines()) < 150


def test_every_relative_link_resolves_inside_the_repository() -> None:
    broken = []
    for doc in DOCS:
        for target in relative_links(doc):
            file_part, _, fragment = target.partition("#")
            resolved = (doc.parent / file_part).resolve()
            name = f"{doc.relative_to(ROOT)} -> {target}"
            if ROOT not in resolved.parents:
                broken.append(f"{name}: outside the repository")
                continue
            relative = resolved.relative_to(ROOT).as_posix()
            if not resolved.exists():
                if relative not in NOT_YET_MERGED:
                    broken.append(f"{name}: no such file")
                continue
            if fragment and resolved.suffix == ".md" and fragment not in anchors(resolved.read_text()):
                broken.append(f"{name}: no heading #{fragment}")
    assert not broken, "\n".join(broken)


def test_the_allow_list_only_names_missing_documents() -> None:
    # Once a listed document exists, its links are checked like any other: take it off the list.
    assert not [name for name in NOT_YET_MERGED if (ROOT / name).exists()]


def test_nothing_points_outside_the_repository() -> None:
    found = []
    for path in ROOT.rglob("*"):
        if any(part in SKIP_DIRS for part in path.relative_to(ROOT).parts) or not path.is_file():
            continue
        if path.suffix not in {
            ".py",
            ".md",
            ".txt",
            ".toml",
            ".ini",
            ".cfg",
            ".sql",
            ".html",
            ".css",
            ".yml",
            ".yaml",
            ".json",
            "",
        }:
            continue
        if path == Path(__file__):
            continue
        try:
            text = path.read_text()
        except (UnicodeDecodeError, OSError):
            continue
        for number, line in enumerate(text.splitlines(), 1):
            if OUTSIDE.search(line):
                found.append(f"{path.relative_to(ROOT)}:{number}: {line.strip()[:100]}")
    assert not found, "\n".join(found)


def test_operations_names_every_setting() -> None:
    settings = (ROOT / "domain" / "settings.py").read_text()
    variables = set(re.findall(r"\"(LPG_[A-Z_]+)\"", settings))
    assert len(variables) > 20
    operations = (ROOT / "docs" / "operations.md").read_text()
    missing = sorted(v for v in variables if f"`{v}`" not in operations)
    assert not missing, f"docs/operations.md does not document {missing}"
