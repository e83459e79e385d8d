"""The examples of docs/sync-protocol.md, parsed and run: the document cannot drift from the server.

A request is an HTML comment, optionally followed by a fenced ```json block (its body):

    <!-- example: NAME request METHOD PATH as=USER [encoding=msgpack] -->

and its answer a comment followed by a ```json block:

    <!-- example: NAME response STATUS -->

Comparison of a documented value with the server's: objects have exactly the same keys (an entry
`"...": "..."` allows more), arrays the same length, strings are equal except RFC 3339 times (any time)
and document numbers (`TRX-2026-000001`: any year), integers are integers (ids and seqs depend on the
engine's id allocation), and the string "..." matches anything. Request bodies get `occurred_at` set to
the current time, so the examples stay inside the server's window."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

ROOT = Path(__file__).resolve().parents[2]
MARKER = re.compile(r"<!--\s*example:\s*(\S+)\s+(request|response)\s+(.*?)\s*-->")
TIME = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})$")
NUMBER = re.compile(r"^([A-Z]+)-\d{4}-(\d{6})$")
ANY = "..."


@dataclass
class Example:
    name: str
    method: str = ""
    path: str = ""
    user: str = ""
    encoding: str = "json"
    body: Any = None
    status: int = 0
    response: Any = None
    line: int = 0


def _block_after(lines: list[str], index: int) -> tuple[Any, bool]:
    """The ```json block right after line `index` (blank lines allowed), decoded; (None, False) if none."""
    i = index + 1
    while i < len(lines) and not lines[i].strip():
        i += 1
    if i >= len(lines) or lines[i].strip() != "```json":
        return None, False
    end = lines.index("```", i + 1)
    return orjson.loads("\n".join(lines[i + 1 : end])), True


def parse(path: Path) -> list[Example]:
    lines = path.read_text().splitlines()
    examples: dict[str, Example] = {}
    for index, line in enumerate(lines):
        match = MARKER.search(line)
        if not match:
            continue
        name, kind, rest = match.groups()
        words = rest.split()
        if kind == "request":
            assert name not in examples, f"example {name} is documented twice"
            options = dict(w.split("=", 1) for w in words[2:])
            body, _ = _block_after(lines, index)
            examples[name] = Example(
                name,
                words[0],
                words[1],
                options["as"],
                options.get("encoding", "json"),
                body,
                line=index + 1,
            )
        else:
            assert name in examples, f"response {name} (line {index + 1}) has no request before it"
            body, found = _block_after(lines, index)
            assert found, f"response {name} (line {index + 1}) needs a ```json block"
            examples[name].status = int(words[0])
            examples[name].response = body
    return list(examples.values())


def mismatches(documented: Any, actual: Any, where: str = "$") -> list[str]:
    """Where the server's answer differs from the documented one, as readable paths."""
    if documented == ANY:
        return []
    if isinstance(documented, dict):
        if not isinstance(actual, dict):
            return [f"{where}: documented an object, got {type(actual).__name__}"]
        out = []
        open_ended = documented.get(ANY) == ANY
        keys = [k for k in documented if k != ANY]
        missing = [k for k in keys if k not in actual]
        extra = [k for k in actual if k not in documented] if not open_ended else []
        if missing:
            out.append(f"{where}: documented keys the server does not send: {missing}")
        if extra:
            out.append(f"{where}: the server sends undocumented keys: {extra}")
        for key in keys:
            if key in actual:
                out.extend(mismatches(documented[key], actual[key], f"{where}.{key}"))
        return out
    if isinstance(documented, list):
        if not isinstance(actual, list):
            return [f"{where}: documented an array, got {type(actual).__name__}"]
        if len(documented) != len(actual):
            return [f"{where}: documented {len(documented)} items, got {len(actual)}"]
        return [
            m
            for i, (d, a) in enumerate(zip(documented, actual, strict=True))
            for m in mismatches(d, a, f"{where}[{i}]")
        ]
    if isinstance(documented, bool) or documented is None:
        return [] if documented == actual else [f"{where}: documented {documented!r}, got {actual!r}"]
    if isinstance(documented, int):
        ok = isinstance(actual, int) and not isinstance(actual, bool)
        return [] if ok else [f"{where}: documented an integer, got {actual!r}"]
    if isinstance(documented, str):
        if not isinstance(actual, str):
            return [f"{where}: documented a string, got {actual!r}"]
        if TIME.match(documented):
            return [] if TIME.match(actual) else [f"{where}: documented a time, got {actual!r}"]
        number = NUMBER.match(documented)
        if number:
            got = NUMBER.match(actual)
            return (
                []
                if got and got.group(1) == number.group(1)
                else [f"{where}: documented {documented!r}, got {actual!r}"]
            )
        return [] if documented == actual else [f"{where}: documented {documented!r}, got {actual!r}"]
    return [] if documented == actual else [f"{where}: documented {documented!r}, got {actual!r}"]


def with_current_times(body: Any, now: str) -> Any:
    if isinstance(body, dict):
        return {k: (now if k == "occurred_at" else with_current_times(v, now)) for k, v in body.items()}
    if isinstance(body, list):
        return [with_current_times(v, now) for v in body]
    return body
