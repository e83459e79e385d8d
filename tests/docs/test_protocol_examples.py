"""docs/sync-protocol.md's examples, run in order against a server on the demo data (both engines): every
documented request gets the documented status and an answer of the documented shape (tests/docs/examples.py
says how values are compared). Also: the documents name every sync endpoint the server has, and the push
example answers the same structure in MessagePack."""

from __future__ import annotations

from typing import Any

import msgpack
import orjson
import pytest
from starlette.testclient import TestClient

from domain.clock import rfc3339, utcnow
from domain.db import Database
from domain.settings import Settings
from tests.conftest import bearer, user_id
from tests.docs.examples import ROOT, Example, mismatches, parse, with_current_times

DOC = ROOT / "docs" / "sync-protocol.md"


def send(client: TestClient, headers: dict[str, str], example: Example) -> tuple[int, Any]:
    body = with_current_times(example.body, rfc3339(utcnow())) if example.body is not None else None
    if example.encoding == "msgpack":
        kind = "application/msgpack"
        raw = msgpack.packb(body) if body is not None else None
    else:
        kind = "application/json"
        raw = orjson.dumps(body) if body is not None else None
    response = client.request(
        example.method, example.path, content=raw, headers={**headers, "Content-Type": kind, "Accept": kind}
    )
    if response.headers.get("content-type", "").startswith("application/msgpack"):
        return response.status_code, msgpack.unpackb(response.content)
    return response.status_code, (response.json() if response.content else None)


def test_the_document_has_examples_for_every_sync_endpoint() -> None:
    examples = parse(DOC)
    assert len(examples) >= 10
    documented = {(e.method, e.path.split("?")[0].rstrip("/")) for e in examples}
    for endpoint in [
        ("POST", "/api/v1/sync/push"),
        ("GET", "/api/v1/sync/changes"),
        ("PUT", "/api/v1/sync/checkpoints/tablet-main"),
        ("GET", "/api/v1/sync/checkpoints/tablet-main"),
        ("GET", "/api/v1/sync/devices"),
        ("GET", "/api/v1/sync/rejections"),
        ("POST", "/api/v1/sync/rejections/replay"),
        ("POST", "/api/v1/sync/replay"),
    ]:
        assert endpoint in documented, endpoint
    for e in examples:
        assert e.status, f"example {e.name} (line {e.line}) has no documented response"


def test_every_sync_route_is_documented() -> None:
    from server import all_endpoints

    text = DOC.read_text()
    for endpoint in all_endpoints():
        if endpoint.path.startswith("/api/v1/sync/"):
            assert f"`{endpoint.method} {endpoint.path}`" in text, (
                f"{endpoint.method} {endpoint.path} is not documented"
            )


def test_the_examples_answer_as_documented(client: TestClient, demo: Database, settings: Settings) -> None:
    headers = {name: bearer(settings, user_id(demo, name)) for name in ("admin", "driver1", "driver2")}
    for example in parse(DOC):
        status, answer = send(client, headers[example.user], example)
        where = f"example {example.name} (docs/sync-protocol.md line {example.line})"
        assert status == example.status, f"{where}: status {status}, documented {example.status}: {answer}"
        problems = mismatches(example.response, answer)
        assert not problems, f"{where}:\n" + "\n".join(problems) + f"\nserver: {orjson.dumps(answer).decode()}"


@pytest.mark.parametrize("name", ["push"])
def test_msgpack_answers_the_same_structure(client: TestClient, demo: Database, settings: Settings, name: str) -> None:
    example = next(e for e in parse(DOC) if e.name == name)
    headers = bearer(settings, user_id(demo, example.user))
    as_json = send(client, headers, example)
    packed = Example(**{**example.__dict__, "encoding": "msgpack"})
    packed.body = {**example.body, "device_id": example.body["device_id"] + "-packed"}
    status, answer = send(client, headers, packed)
    assert status == as_json[0] == example.status
    assert not mismatches(example.response, answer)
