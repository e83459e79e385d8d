"""Push through replication: a device's PouchDB queue replicated to `/couchdb/queue-<device_id>`.

Each queued document is one sync change: `_id` is its `client_temp_id`, `op` and `data` are those of a
push (sync-protocol.md), and the device is the one the database is named after (a `device` member, when
present, must name it too). `_bulk_docs` (with `new_edits: false`, as a replicator sends it) runs the
documents, in their order, through `reconcile.batch.apply_batch`, the reconciler of `POST /sync/push`, in
batches of at most `MAX_CHANGES`: temp-id references between them resolve as in a push, a refused change
goes to the rejection list and answers `{"id", "error": "forbidden", "reason"}` (PouchDB counts it in
`doc_write_failures`, emits `denied` and goes on), and a change sent again is a `duplicate`, applied once.

`_revs_diff` reports a document missing unless its change was applied: a refused change sent again is
tried again (its cause may have been fixed), an applied one is never sent twice by a replicator that asks.

The results come back by pull from `/couchdb/results-<device_id>`: one document per queued change, `_id`
its `client_temp_id`, holding what push answers for it (`status`, `entity`, `id`, `number`, `version`,
`server_ts`, or `error`). Its revision counts the change's attempts (each refusal, then the application),
so a result that moves from rejected to applied replaces the older one in the replica.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import orjson
from sqlalchemy import func, select

from domain.accounts.models import Device
from domain.accounts.policy import Actor
from domain.db import Database
from domain.errors import DomainError
from reconcile.batch import apply_batch
from reconcile.envelope import MAX_CHANGES, parse_envelope
from reconcile.models import AppliedChange, RejectedChange
from sync.couch.common import CouchError, DbName, rev_of

CHUNK = 500


def _check_doc(doc: Any, device_id: str) -> str | None:
    """Why this document is no queued change of this device (None: it is one)."""
    if not isinstance(doc, dict):
        return "a queued change must be a JSON object"
    doc_id = doc.get("_id")
    if not isinstance(doc_id, str) or not doc_id.strip() or len(doc_id) > 100:
        return "_id (the change's client_temp_id) must be a non-empty string of at most 100 characters"
    if doc_id.startswith("_"):
        return "only queued changes are accepted here (no design or local documents)"
    if doc.get("device", device_id) != device_id:
        return f"this queue belongs to device {device_id}"
    if not isinstance(doc.get("op"), str):
        return "a queued change needs 'op' (see the push operations)"
    if not isinstance(doc.get("data"), dict):
        return "a queued change needs 'data', an object"
    unknown = sorted(k for k in doc if not k.startswith("_") and k not in ("op", "data", "device"))
    if unknown:
        return f"unknown field '{unknown[0]}' in a queued change"
    return None


def bulk_docs(db: Database, actor: Actor, target: DbName, body: Any) -> list[dict[str, Any]]:
    """Apply the queued documents; the answer lists only the refused ones (as CouchDB does for
    `new_edits: false`), each `{"id", "rev", "error": "forbidden", "reason"}`."""
    if not isinstance(body, dict) or not isinstance(body.get("docs"), list):
        raise CouchError(400, "bad_request", 'the body must be {"docs": [...], "new_edits": false}')
    device_id = target.device_id
    assert device_id is not None
    errors: list[dict[str, Any]] = []
    changes: list[tuple[dict[str, Any], dict[str, Any]]] = []  # (document, change)
    for doc in body["docs"]:
        reason = _check_doc(doc, device_id)
        if isinstance(doc, dict) and doc.get("_deleted") is True and isinstance(doc.get("_id"), str):
            continue  # the device dropped a queued change from its queue: nothing to apply
        if reason is not None:
            doc_id = doc.get("_id") if isinstance(doc, dict) else None
            errors.append(_refusal(doc_id, doc.get("_rev") if isinstance(doc, dict) else None, reason))
            continue
        changes.append((doc, {"client_temp_id": doc["_id"], "op": doc["op"], "data": doc["data"]}))
    for start in range(0, len(changes), min(CHUNK, MAX_CHANGES)):
        part = changes[start : start + CHUNK]
        try:
            envelope = parse_envelope({"device_id": device_id, "changes": [c for _, c in part]})
        except DomainError as exc:
            errors += [_refusal(d["_id"], d.get("_rev"), exc.message) for d, _ in part]
            continue
        answer = apply_batch(db, actor, envelope, batch_id=None)
        for (doc, _), result in zip(part, answer["results"], strict=True):
            if result["status"] == "rejected":
                error = result["error"]
                errors.append(_refusal(doc["_id"], doc.get("_rev"), f"{error['code']}: {error['message']}"))
    return errors


def _refusal(doc_id: Any, rev: Any, reason: str) -> dict[str, Any]:
    return {"id": doc_id, "rev": rev, "error": "forbidden", "reason": reason}


def revs_diff(db: Database, actor: Actor, target: DbName, body: Any) -> dict[str, Any]:
    """`{id: [revs]}` -> `{id: {"missing": [revs]}}` for every change not yet applied."""
    if not isinstance(body, dict) or not all(isinstance(v, list) for v in body.values()):
        raise CouchError(400, "bad_request", 'the body must be {"<doc id>": ["<rev>", ...]}')
    ids = [k for k in body if isinstance(k, str)]
    applied: set[str] = set()
    for start in range(0, len(ids), CHUNK):
        part = ids[start : start + CHUNK]
        applied |= set(
            db.read(
                lambda s, part=part: s.scalars(
                    select(AppliedChange.client_temp_id).where(
                        AppliedChange.device_id == target.device_id, AppliedChange.client_temp_id.in_(part)
                    )
                ).all()
            )
        )
    return {k: {"missing": body[k]} for k in ids if k not in applied and body[k]}


# -- results ------------------------------------------------------------------------------------------------


def device_visible(db: Database, actor: Actor, device_id: str) -> None:
    """A device's results are its owner's (and an admin's); for anybody else the database does not exist."""
    owner = db.read(lambda s: s.execute(select(Device.user_id).where(Device.device_id == device_id)).scalar())
    if owner is not None and owner != actor.id and not actor.is_admin:
        raise CouchError(404, "not_found", "Database does not exist.")


def parse_results_since(value: str | None) -> tuple[int, int]:
    """A results seq is `<applied id>.<rejection id>`: how far each list was read."""
    if value in (None, "", "0", "now"):
        return 0, 0
    left, dot, right = str(value).partition(".")
    if not (dot and left.isascii() and left.isdigit() and right.isascii() and right.isdigit()):
        raise CouchError(400, "bad_request", "since must be a seq from an earlier _changes answer")
    return int(left), int(right)


@dataclass(frozen=True)
class ResultDoc:
    temp_id: str
    number: int
    deleted: bool
    body: dict[str, Any]

    def doc(self, with_revisions: bool) -> dict[str, Any]:
        from sync.couch.common import revisions

        key = f"result:{self.temp_id}"
        out: dict[str, Any] = {"_id": self.temp_id, "_rev": rev_of(key, self.number)}
        if with_revisions:
            out["_revisions"] = revisions(key, self.number)
        return {**out, **self.body}

    @property
    def rev(self) -> str:
        return rev_of(f"result:{self.temp_id}", self.number)


def result_docs(db: Database, device_id: str, temp_ids: list[str]) -> dict[str, ResultDoc]:
    """The current result of each of these changes (absent: never pushed)."""
    out: dict[str, ResultDoc] = {}
    for start in range(0, len(temp_ids), CHUNK):
        part = temp_ids[start : start + CHUNK]

        def read(s: Any, part: list[str] = part) -> tuple[list[Any], list[Any], list[Any]]:
            applied = s.execute(
                select(AppliedChange.client_temp_id, AppliedChange.result).where(
                    AppliedChange.device_id == device_id, AppliedChange.client_temp_id.in_(part)
                )
            ).all()
            counts = s.execute(
                select(RejectedChange.client_temp_id, func.count(), func.max(RejectedChange.id))
                .where(RejectedChange.device_id == device_id, RejectedChange.client_temp_id.in_(part))
                .group_by(RejectedChange.client_temp_id)
            ).all()
            last_ids = [row[2] for row in counts]
            latest = (
                s.execute(
                    select(RejectedChange.client_temp_id, RejectedChange.error).where(RejectedChange.id.in_(last_ids))
                ).all()
                if last_ids
                else []
            )
            return applied, counts, latest

        applied, counts, latest = db.read(read)
        refusals = {row[0]: int(row[1]) for row in counts}
        errors = {row[0]: orjson.loads(row[1]) for row in latest}
        done = {row[0]: orjson.loads(row[1]) for row in applied}
        for temp_id in part:
            n = refusals.get(temp_id, 0)
            if temp_id in done:
                body = {**done[temp_id], "client_temp_id": temp_id, "status": "applied"}
                out[temp_id] = ResultDoc(temp_id, n + 1, False, body)
            elif temp_id in errors:
                body = {"client_temp_id": temp_id, "status": "rejected", "error": errors[temp_id]}
                out[temp_id] = ResultDoc(temp_id, n, False, body)
    return out


@dataclass(frozen=True)
class ResultChange:
    seq: str
    doc: ResultDoc


def result_changes(db: Database, device_id: str, since: tuple[int, int], limit: int) -> tuple[list[ResultChange], str]:
    """The results that changed after `since`, oldest first: applied and refused attempts in the order they
    were recorded (both lists grow under the device's lock, so their ids commit in order)."""
    a0, r0 = since

    def read(s: Any) -> tuple[list[Any], list[Any], int, int]:
        applied = s.execute(
            select(AppliedChange.id, AppliedChange.client_temp_id, AppliedChange.created_at)
            .where(AppliedChange.device_id == device_id, AppliedChange.id > a0)
            .order_by(AppliedChange.id)
            .limit(limit)
        ).all()
        refused = s.execute(
            select(RejectedChange.id, RejectedChange.client_temp_id, RejectedChange.created_at)
            .where(RejectedChange.device_id == device_id, RejectedChange.id > r0)
            .order_by(RejectedChange.id)
            .limit(limit)
        ).all()
        return applied, refused, 0, 0

    applied, refused, _, _ = db.read(read)
    events: list[tuple[datetime, int, int, str]] = [(r[2], 0, r[0], r[1]) for r in refused]
    events += [(r[2], 1, r[0], r[1]) for r in applied]
    events.sort()
    events = events[:limit]
    # Both lists are read in id order; a list cut by `limit` must not be passed beyond what was kept.
    a, r = a0, r0
    marks: list[tuple[str, str]] = []
    for _, kind, row_id, temp_id in events:
        if kind == 1:
            a = max(a, row_id)
        else:
            r = max(r, row_id)
        marks.append((temp_id, f"{a}.{r}"))
    docs = result_docs(db, device_id, sorted({t for t, _ in marks}))
    last_for: dict[str, str] = {}
    for temp_id, seq in marks:
        last_for[temp_id] = seq
    out = [ResultChange(seq, docs[t]) for t, seq in marks if last_for[t] == seq and t in docs]
    return out, f"{a}.{r}"


def results_head(db: Database, device_id: str) -> str:
    """The seq of everything recorded for this device so far."""

    def read(s: Any) -> str:
        a = s.scalar(select(func.max(AppliedChange.id)).where(AppliedChange.device_id == device_id)) or 0
        r = s.scalar(select(func.max(RejectedChange.id)).where(RejectedChange.device_id == device_id)) or 0
        return f"{a}.{r}"

    return db.read(read)


def results_count(db: Database, device_id: str) -> int:
    def read(s: Any) -> int:
        applied = s.scalar(select(func.count()).where(AppliedChange.device_id == device_id)) or 0
        refused = (
            s.scalar(
                select(func.count(func.distinct(RejectedChange.client_temp_id))).where(
                    RejectedChange.device_id == device_id, RejectedChange.resolved_at.is_(None)
                )
            )
            or 0
        )
        return int(applied) + int(refused)

    return db.read(read)
