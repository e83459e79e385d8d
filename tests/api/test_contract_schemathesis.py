"""Schemathesis against the app: every operation of the OpenAPI document, as an admin and as a driver.

No 5xx, and every status, content type, header and body is the one the document promises. The document is
the one `/api/schema/` serves (test_api_openapi.py checks they are equal); the number of examples per
operation is bounded so the whole file stays well under two minutes.
"""

from __future__ import annotations

from typing import Any

import msgpack
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error
from schemathesis.python import asgi
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from server import all_endpoints
from sync.openapi import openapi_document
from tests.conftest import bearer, user_id

CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
]
EXAMPLES = 10
BASE_URL = "http://127.0.0.1"


def _packable(value: Any) -> Any:
    """MessagePack integers are 64-bit: a generated integer beyond that cannot be sent by any msgpack client,
    so it goes as its decimal string (which the server must refuse like any other wrong type)."""
    if isinstance(value, bool):
        return value
    if isinstance(value, int) and not -(2**63) <= value < 2**64:
        return str(value)
    if isinstance(value, dict):
        return {k: _packable(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_packable(v) for v in value]
    return value


@schemathesis.serializer("application/msgpack")
def _msgpack(ctx: Any, value: Any) -> dict[str, Any]:
    return {"data": msgpack.packb(_packable(value), use_bin_type=True)}


schema = schemathesis.openapi.from_dict(openapi_document(all_endpoints()))


@schema.parametrize()
@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)
def test_every_operation_keeps_its_contract(case: Any, app: Any, demo: Any, settings: Any) -> None:
    roles = [bearer(settings, user_id(demo, name)) for name in ("admin", "driver1")]
    if case.path == "/api/v1/sync/changes":  # longpoll and continuous wait `timeout` ms (30 s by default)
        case.query = {**(case.query or {}), "timeout": 100}
    with asgi.get_client(app) as client:
        for headers in roles:
            case.call_and_validate(session=client, base_url=BASE_URL, headers=headers, checks=CHECKS)
