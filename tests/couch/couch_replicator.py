"""CouchDB 3.3's replicator (couch_replicator), as the HTTP requests it sends and the checks it makes on
the answers, for tests that cannot run a CouchDB server here.

Each function names the Erlang function it follows (couch_replicator_api_wrap, _scheduler_job, _worker,
_changes_reader, _auth_session, couch_doc, couch_httpd) and answers as strictly as that code does: an answer
the Erlang code would crash on (a pattern that does not match, a status it has no clause for) raises
`Crash` here, one it turns into an error raises `Failed`. The database on the other end of a replication is
`MemoryDb`, a CouchDB database of its own kept in memory.

The sequence of one replication job, as the replicator sends it to an HTTP endpoint (`url` = the database
URL with a trailing slash):

1. `POST <server root>/_session` (form `name`, `password`; no Authorization) when the endpoint has Basic
   credentials: 404 makes the session plugin step aside and every request carries Basic credentials.
2. `GET url` twice (db_open, then get_db_info): 200 with `update_seq` and `instance_start_time`.
3. `GET url/_local/<replication id>` (and the ids of older replication id versions while 404).
4. Source: `GET url/_changes?feed=normal|continuous&style=all_docs&since=<seq>&timeout=<ms>`; a normal feed
   is read with one request to its end.
5. Target: `POST url/_revs_diff` (skipped while nearly everything is missing), then
   `POST url/_bulk_docs {"new_edits": false, "docs": [...]}` (201 and a list of errors).
   Source: `POST url/_bulk_get?latest=true&revs=true&attachments=false`, and for each document it did not
   return, `GET url/<docid>?revs=true&open_revs=[...]&latest=true` with `Accept: multipart/mixed`.
6. Checkpoint: `POST url/_ensure_full_commit` on both ends (201, `instance_start_time` equal to the db
   info's or "0"), then `PUT url/_local/<replication id>` on the source, then on the target, with `_rev`
   and `_revisions` of the revision it holds (200/201/202 and `rev`; on 409 it reads the document back and
   counts the write as done when the body is the one it sent).
"""

from __future__ import annotations

import hashlib
import json
import uuid
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

VERSION = "3.3.3"
BASE_HEADERS = {"Accept": "application/json", "User-Agent": f"CouchDB-Replicator/{VERSION}"}
REP_ID_VERSION = 4
LOWEST_SEQ = 0
REVS_DIFF_RATIO_THRESHOLD = 0.95  # couch_replicator_worker: above it, _revs_diff is skipped
REVS_DIFF_RATIO_DECAY = 0.4
IGNORED_SPECIALS = ("_revs_info", "_local_seq", "_conflicts", "_deleted_conflicts")


class Crash(AssertionError):
    """The Erlang code would crash here (badmatch, case_clause, function_clause)."""


class Failed(Exception):
    """The Erlang code returns or throws an error here (the job fails and is restarted)."""


# -- couch_doc ---------------------------------------------------------------------------------------------


@dataclass
class Doc:
    id: str
    revs: tuple[int, list[str]] = (0, [])  # start, ids newest first
    deleted: bool = False
    body: dict[str, Any] = field(default_factory=dict)

    @property
    def rev(self) -> str:
        return f"{self.revs[0]}-{self.revs[1][0]}"


def parse_rev(rev: Any) -> tuple[int, str]:
    """couch_doc:parse_rev."""
    if not isinstance(rev, str) or "-" not in rev:
        raise Failed(("bad_request", "Invalid rev format"))
    pos, _, rev_id = rev.partition("-")
    if not pos.isdigit():
        raise Failed(("bad_request", "Invalid rev format"))
    return int(pos), rev_id


def from_json_obj(props: Any) -> Doc:
    """couch_doc:from_json_obj (transfer_fields): specials in order, `_revisions` wins over `_rev`."""
    if not isinstance(props, dict):
        raise Failed(("bad_request", "Document must be a JSON object"))
    doc = Doc(id="")
    for name, value in props.items():
        if name == "_id":
            doc.id = value
        elif name == "_rev":
            if doc.revs == (0, []):
                pos, rev_id = parse_rev(value)
                doc.revs = (pos, [rev_id])
        elif name == "_revisions":
            start, ids = value.get("start"), value.get("ids")
            if not isinstance(start, int) or not isinstance(ids, list):
                raise Failed(("doc_validation", "_revisions"))
            doc.revs = (start, list(ids))
        elif name == "_deleted":
            doc.deleted = value is True
        elif name in IGNORED_SPECIALS:
            continue
        elif name.startswith("_"):
            raise Failed(("doc_validation", f"Bad special document member: {name}"))
        else:
            doc.body[name] = value
    return doc


def to_json_obj(doc: Doc, revs: bool) -> dict[str, Any]:
    """couch_doc:to_json_obj: `_id`, `_rev`, the body, `_deleted`, then `_revisions` (with `revs`)."""
    out: dict[str, Any] = {"_id": doc.id}
    if doc.revs[1]:
        out["_rev"] = doc.rev
    out.update(doc.body)
    if doc.deleted:
        out["_deleted"] = True
    if revs and doc.revs[1]:
        out["_revisions"] = {"start": doc.revs[0], "ids": doc.revs[1]}
    return out


def encode_doc_id(doc_id: str) -> str:
    """couch_util:encode_doc_id: `_local/` and `_design/` keep their slash, the rest is URL-encoded."""
    for prefix in ("_local/", "_design/"):
        if doc_id.startswith(prefix):
            return prefix + quote(doc_id[len(prefix) :], safe="")
    return quote(doc_id, safe="")


# -- mochiweb_util:parse_header and couch_httpd:parse_multipart_request --------------------------------------


def parse_header(value: str) -> tuple[str, dict[str, str]]:
    kind, *params = value.split(";")
    out: dict[str, str] = {}
    for param in params:
        name, _, v = param.strip().partition("=")
        v = v.strip()
        if len(v) >= 2 and v[0] == v[-1] == '"':
            v = v[1:-1]
        out[name.strip().lower()] = v
    return kind.strip().lower(), out


def parse_multipart(content_type: str, body: bytes) -> list[tuple[dict[str, tuple[str, dict[str, str]]], bytes]]:
    kind, params = parse_header(content_type)
    if not kind.startswith("multipart/") or "boundary" not in params:
        raise Crash(f"get_boundary: {content_type!r} is no multipart type with a boundary")
    boundary = params["boundary"].encode()
    start = body.find(b"--" + boundary)
    if start < 0:
        raise Crash("no opening boundary")
    buf = body[start + len(boundary) + 2 :]
    delimiter = b"\r\n--" + boundary
    parts = []
    while True:
        end = buf.find(b"\r\n\r\n")
        if end < 0:
            raise Crash("a part's headers do not end")
        headers: dict[str, tuple[str, dict[str, str]]] = {}
        for line in buf[:end].split(b"\r\n"):
            if not line:
                continue
            name, colon, value = line.decode().partition(":")
            if not colon:
                raise Failed(("bad_request", "bad part header"))
            headers[name.strip().lower()] = parse_header(value)
        buf = buf[end + 4 :]
        end = buf.find(delimiter)
        if end < 0:
            raise Crash("a part's body does not end")
        parts.append((headers, buf[:end]))
        buf = buf[end + len(delimiter) :]
        if buf.startswith(b"--"):
            break
    if buf != b"--":  # open_doc_revs: {<<"--">>, _, _} = couch_httpd:parse_multipart_request(...)
        raise Crash(f"bytes after the closing boundary: {buf!r}")
    return parts


# -- an HTTP endpoint: #httpdb{} ------------------------------------------------------------------------------


class HttpDb:
    """A remote database, requests as couch_replicator_httpc sends them (Basic credentials when the session
    plugin stepped aside); `log` records `METHOD path` of every request, for tests to read the sequence."""

    def __init__(self, client: Any, path: str, user: str, password: str, log: list[str]) -> None:
        self.client, self.path, self.log = client, path.rstrip("/") + "/", log
        self.user, self.password = user, password
        self.basic = False

    def send(
        self,
        method: str,
        path: str = "",
        params: list[tuple[str, str]] | None = None,
        headers: dict[str, str] | None = None,
        body: bytes | None = None,
    ) -> Any:
        merged = {**BASE_HEADERS, **(headers or {})}  # merge_headers: the request's own win
        auth = (self.user, self.password) if self.basic else None
        url = self.path + path
        self.log.append(f"{method} {url}")
        r = self.client.request(method, url, params=params, headers=merged, content=body, auth=auth)
        if r.status_code in (408,) or r.status_code >= 500:
            raise Failed(("http", r.status_code, r.text))
        return r

    @staticmethod
    def json(r: Any) -> Any:
        return None if not r.content else json.loads(r.content)

    # couch_replicator_auth_session:init_state / refresh / http_response
    def start_session(self) -> str:
        url = "/_session"  # get_session_url: the server's root, whatever the database's path
        self.log.append(f"POST {url}")
        form = {"Content-Type": "application/x-www-form-urlencoded"}
        r = self.client.post(url, content=f"name={quote(self.user)}&password={quote(self.password)}", headers=form)
        if r.status_code == 401 and "www-authenticate" in r.headers:
            r = self.client.post(url, content=b"", headers=form, auth=(self.user, self.password))
        if r.status_code == 404:
            self.basic = True  # `ignore`: couch_replicator_auth_noop, Basic credentials on every request
            return "ignore"
        if r.status_code == 200 and "AuthSession" in r.headers.get("set-cookie", ""):
            raise Crash("a cookie session was not expected from this server")
        raise Failed(("session", r.status_code, r.text))

    # couch_replicator_api_wrap:db_open
    def db_open(self, create: bool = False) -> None:
        if create:
            r = self.send("PUT")
            if r.status_code in (401, 403):
                raise Failed(("db_open", r.status_code))
        r = self.send("GET")
        props = self.json(r) if r.status_code == 200 else None
        if r.status_code in (401, 403):
            raise Failed(("unauthorized" if r.status_code == 401 else "forbidden", self.path))
        if not isinstance(props, dict) or props.get("update_seq") is None or props.get("instance_start_time") is None:
            raise Failed(("db_not_found", self.path))

    def get_db_info(self) -> dict[str, Any]:
        r = self.send("GET")
        if r.status_code != 200:
            raise Crash(f"get_db_info: no clause for {r.status_code}")
        info = self.json(r)
        assert isinstance(info, dict)
        return info

    def open_doc(self, doc_id: str) -> Doc | str:
        r = self.send("GET", encode_doc_id(doc_id))
        body = self.json(r)
        if r.status_code == 200:
            return from_json_obj(body)
        if not isinstance(body, dict):
            raise Crash(f"open_doc: {r.status_code} with a body that is no object")
        return str(body.get("error"))

    # update_doc (INTERACTIVE_EDIT, [delay_commit]): a _local checkpoint
    def update_doc(self, doc: Doc) -> tuple[int, str]:
        headers = {"X-Couch-Full-Commit": "false", "Content-Type": "application/json"}
        body = json.dumps(to_json_obj(doc, revs=True)).encode()
        r = self.send("PUT", encode_doc_id(doc.id), headers=headers, body=body)
        props = self.json(r)
        if r.status_code in (200, 201, 202):
            return parse_rev(props["rev"])
        if r.status_code == 409:
            raise Conflict()
        if not isinstance(props, dict):
            raise Crash(f"update_doc: {r.status_code} with a body that is no object")
        raise Failed((r.status_code, props.get("error"), props.get("reason")))

    def ensure_full_commit(self) -> Any:
        r = self.send("POST", "_ensure_full_commit", headers={"Content-Type": "application/json"})
        props = self.json(r)
        if not isinstance(props, dict):
            raise Crash("ensure_full_commit: the body is no object")
        if r.status_code == 201:
            return props.get("instance_start_time")
        raise Failed(("ensure_full_commit", props.get("error")))

    def get_missing_revs(self, id_revs: dict[str, list[str]]) -> dict[str, list[str]]:
        headers = {"Content-Type": "application/json"}
        r = self.send("POST", "_revs_diff", headers=headers, body=json.dumps(id_revs).encode())
        if r.status_code != 200:
            raise Failed(("revs_diff_failed", r.status_code, r.text))
        props = self.json(r)
        return {doc_id: [f"{p}-{i}" for p, i in map(parse_rev, v["missing"])] for doc_id, v in props.items()}

    def update_docs(self, docs: list[Doc]) -> list[dict[str, Any]]:
        """`_bulk_docs` with new_edits false; the errors (bulk_results_to_errors)."""
        payload = b'{"new_edits":false,"docs":[' + b",".join(json.dumps(to_json_obj(d, True)).encode() for d in docs)
        headers = {"Content-Type": "application/json", "X-Couch-Full-Commit": "false"}
        r = self.send("POST", "_bulk_docs", headers=headers, body=payload + b"]}")
        results = self.json(r)
        if r.status_code in (201, 417) and isinstance(results, list):
            return [x for x in results if x.get("error") is not None]
        raise Failed(("bulk_docs_failed", r.status_code, r.text))

    def changes_since(self, since: Any, continuous: bool = False, timeout_ms: int = 10_000) -> list[Any]:
        """The changes reader's one request: doc infos `(id, seq, [revs])`, and `("last_seq", seq)` lines."""
        encoded = since if isinstance(since, str) else json.dumps(since)  # seq_encode
        params = [("feed", "continuous" if continuous else "normal"), ("style", "all_docs")]
        params += [("since", encoded), ("timeout", str(timeout_ms))]
        r = self.send("GET", "_changes", params=params)
        if r.status_code != 200:
            raise Failed(("changes_req_failed", r.status_code, r.text))
        if not continuous:
            return [_doc_info(row) for row in self.json(r)["results"]]
        return [_doc_info(json.loads(line)) for line in r.content.split(b"\n") if line.strip()]

    def bulk_get(self, id_revs: list[tuple[str, str]]) -> dict[tuple[str, str], Doc]:
        """couch_replicator_api_wrap:bulk_get with [latest, revs, {attachments, false}]; the worker keeps
        the documents that came back (errors are fetched one by one)."""
        wanted = sorted(id_revs)
        body = {"docs": [{"id": i, "rev": rev, "atts_since": []} for i, rev in wanted]}
        body |= {"latest": True, "revs": True, "attachments": False}
        params = [("latest", "true"), ("revs", "true"), ("attachments", "false")]
        headers = {"Content-Type": "application/json", "Accept": "application/json"}
        r = self.send("POST", "_bulk_get", params=params, headers=headers, body=json.dumps(body).encode())
        answer = self.json(r)
        if r.status_code != 200:
            return {}  # {bulk_get_failed, Code}: every document is fetched one by one
        if not (isinstance(answer, dict) and list(answer) == ["results"] and isinstance(answer["results"], list)):
            return {}  # {bulk_get_failed, invalid_results}
        if len(answer["results"]) != len(wanted):
            raise Crash("lists:zipwith: results and requests differ in length")
        docs: dict[tuple[str, str], Doc] = {}
        for (doc_id, rev), result in zip(wanted, answer["results"], strict=True):
            items = result.get("docs") if isinstance(result, dict) and result else None
            if (
                isinstance(items, list)
                and len(items) == 1
                and list(items[0]) == ["ok"]
                and items[0]["ok"]
                and result.get("id") == doc_id
            ):
                doc = from_json_obj(items[0]["ok"])
                docs[(doc_id, rev)] = doc
        return docs

    def open_doc_revs(self, doc_id: str, revs: list[str]) -> list[Doc]:
        """GET with `Accept: multipart/mixed`, read part by part as receive_docs does."""
        params = [("revs", "true"), ("open_revs", json.dumps(revs)), ("latest", "true")]
        r = self.send("GET", encode_doc_id(doc_id), params=params, headers={"Accept": "multipart/mixed"})
        if r.status_code == 414:
            raise Failed("request_uri_too_long")
        if r.status_code != 200:
            raise Crash(f"open_doc_revs: the callback has no clause for {r.status_code}")
        docs = []
        for headers, part in parse_multipart(r.headers.get("content-type", ""), r.content):
            ctype = headers.get("content-type")
            if ctype == ("application/json", {}):
                docs.append(from_json_obj(json.loads(part)))
            elif ctype == ("application/json", {"error": "true"}):
                raise MissingDoc(json.loads(part)["missing"])
            else:
                raise Crash(f"receive_docs: case_clause {ctype!r}")
        return docs


class Conflict(Exception):
    pass


class MissingDoc(Exception):
    pass


def _doc_info(row: dict[str, Any]) -> Any:
    """couch_replicator_api_wrap:json_to_doc_info."""
    if "changes" not in row:
        return ("last_seq", row.get("last_seq"))
    return (row["id"], row["seq"], [c["rev"] for c in row["changes"]])


# -- a CouchDB database of its own, in memory -------------------------------------------------------------


class MemoryDb:
    """The CouchDB on the other end: documents with their revision path, a compacted changes feed, _local
    documents "0-N". Its API mirrors HttpDb's (the replicator treats a local database the same way)."""

    def __init__(self) -> None:
        self.docs: dict[str, Doc] = {}
        self.seqs: dict[str, int] = {}
        self.seq = 0
        self.local: dict[str, Doc] = {}
        self.start_time = "1764000000000000"

    def db_open(self, create: bool = False) -> None:
        return None

    def get_db_info(self) -> dict[str, Any]:
        return {"update_seq": self.seq, "instance_start_time": self.start_time}

    def open_doc(self, doc_id: str) -> Doc | str:
        doc = self.local.get(doc_id)
        return Doc(doc.id, doc.revs, False, dict(doc.body)) if doc else "not_found"

    def update_doc(self, doc: Doc) -> tuple[int, str]:
        held = self.local.get(doc.id)
        if (held.rev if held else None) != (doc.rev if doc.revs[1] else None):
            raise Conflict()
        n = int(held.revs[1][0]) + 1 if held else 1
        self.local[doc.id] = Doc(doc.id, (0, [str(n)]), False, dict(doc.body))
        return 0, str(n)

    def ensure_full_commit(self) -> Any:
        return self.start_time

    def get_missing_revs(self, id_revs: dict[str, list[str]]) -> dict[str, list[str]]:
        out = {}
        for doc_id, revs in id_revs.items():
            held = self.docs.get(doc_id)
            known = {f"{held.revs[0] - k}-{i}" for k, i in enumerate(held.revs[1])} if held else set()
            missing = [r for r in revs if r not in known]
            if missing:
                out[doc_id] = missing
        return out

    def update_docs(self, docs: list[Doc]) -> list[dict[str, Any]]:
        for doc in docs:
            held = self.docs.get(doc.id)
            if held is None or doc.revs[0] > held.revs[0]:
                self.write(doc)
        return []

    def write(self, doc: Doc) -> None:
        self.docs[doc.id] = doc
        self.seq += 1
        self.seqs[doc.id] = self.seq

    def put(self, doc_id: str, body: dict[str, Any], deleted: bool = False) -> Doc:
        """An edit by the app: a new revision on top of the current one."""
        held = self.docs.get(doc_id)
        n = held.revs[0] + 1 if held else 1
        rev_id = hashlib.md5(json.dumps([doc_id, n, body]).encode()).hexdigest()
        doc = Doc(doc_id, (n, [rev_id, *(held.revs[1] if held else [])]), deleted, dict(body))
        self.write(doc)
        return doc

    def changes_since(self, since: Any, continuous: bool = False, timeout_ms: int = 0) -> list[Any]:
        rows = sorted((seq, doc_id) for doc_id, seq in self.seqs.items() if seq > int(since or 0))
        return [(doc_id, seq, [self.docs[doc_id].rev]) for seq, doc_id in rows]

    def bulk_get(self, id_revs: list[tuple[str, str]]) -> dict[tuple[str, str], Doc]:
        return {(i, rev): self.docs[i] for i, rev in id_revs if i in self.docs}

    def open_doc_revs(self, doc_id: str, revs: list[str]) -> list[Doc]:
        return [self.docs[doc_id]]


# -- couch_replicator_scheduler_job + couch_replicator_worker ----------------------------------------------------


def replication_ids(source: str, target: str, options: str = "") -> list[str]:
    """The ids of the replication's checkpoint, newest version first (couch_replicator_ids: md5 hex)."""
    return [hashlib.md5(f"v{v}|{source}|{target}|{options}".encode()).hexdigest() for v in range(REP_ID_VERSION, 0, -1)]


@dataclass
class Stats:
    missing_checked: int = 0
    missing_found: int = 0
    docs_read: int = 0
    docs_written: int = 0
    doc_write_failures: int = 0
    bulk_get_docs: int = 0
    bulk_get_attempts: int = 0
    revs_diff_skipped: int = 0


class Job:
    """One run of a replication: starts, copies, checkpoints (after each batch and at the end)."""

    def __init__(
        self,
        source: HttpDb | MemoryDb,
        target: HttpDb | MemoryDb,
        rep_ids: list[str],
        *,
        use_bulk_get: bool = True,
        batch_size: int = 500,
        revs_diff_ratio: float = 0.0,
        create_target: bool = False,
        since_seq: Any = None,
    ) -> None:
        self.source, self.target, self.rep_ids = source, target, rep_ids
        self.use_bulk_get, self.batch_size, self.create_target = use_bulk_get, batch_size, create_target
        self.revs_diff_ratio = revs_diff_ratio
        self.since_seq = since_seq  # the `since_seq` option: start there whatever the checkpoints say
        self.session_id = uuid.uuid4().hex
        self.stats = Stats()
        self.errors: list[dict[str, Any]] = []

    # init_state
    def start(self) -> Any:
        for db in (self.source, self.target):
            if isinstance(db, HttpDb):
                db.start_session()
        self.source.db_open()
        self.target.db_open(self.create_target)
        self.source_info = self.source.get_db_info()
        self.target_info = self.target.get_db_info()
        self.src_start = self.source_info["instance_start_time"]
        self.tgt_start = self.target_info["instance_start_time"]
        self.source_log = self.find_log(self.source)
        self.target_log = self.find_log(self.target)
        self.start_seq, self.history = compare_replication_logs(self.source_log, self.target_log)
        if self.since_seq is not None:
            self.start_seq = self.since_seq
        self.committed = self.through = self.start_seq
        return self.start_seq

    def find_log(self, db: HttpDb | MemoryDb) -> Doc:
        """find_and_migrate_logs: the newest id, then each older version's while not found."""
        new_id = "_local/" + self.rep_ids[0]
        for rep_id in self.rep_ids:
            found = db.open_doc("_local/" + rep_id)
            if isinstance(found, Doc):
                if rep_id == self.rep_ids[0]:
                    return found
                migrated = Doc(new_id, (0, []), False, found.body)
                migrated.revs = (0, [update_checkpoint(db, migrated)[1]])
                return migrated
            if found != "not_found":
                break
        return Doc(new_id)

    def run(self, continuous: bool = False, timeout_ms: int = 10_000) -> None:
        """A one-shot run (the normal feed, to its end), or one continuous feed request until it ends."""
        changes = self.source.changes_since(self.start_seq, continuous, timeout_ms)
        infos = [c for c in changes if c[0] != "last_seq"]
        for start in range(0, len(infos), self.batch_size):
            batch = infos[start : start + self.batch_size]
            self.copy(batch)
            self.through = batch[-1][1]
            self.checkpoint()
        self.checkpoint()

    def copy(self, batch: list[tuple[str, Any, list[str]]]) -> None:
        """queue_fetch_loop: find missing, _bulk_get, fetch the rest one by one, flush to the target."""
        id_revs = {doc_id: revs for doc_id, _, revs in batch}
        count = sum(len(r) for r in id_revs.values())
        if self.revs_diff_ratio <= REVS_DIFF_RATIO_THRESHOLD:
            missing = self.target.get_missing_revs(id_revs)
            ratio = sum(len(r) for r in missing.values()) / count if count else 0
            self.revs_diff_ratio += REVS_DIFF_RATIO_DECAY * (ratio - self.revs_diff_ratio)
        else:
            missing = id_revs
            self.stats.revs_diff_skipped += count
        wanted = [(doc_id, rev) for doc_id, revs in missing.items() for rev in revs]
        self.stats.missing_checked += count
        self.stats.missing_found += len(wanted)
        docs: dict[tuple[str, str], Doc] = {}
        if self.use_bulk_get and wanted:
            docs = self.source.bulk_get(wanted)
            self.stats.bulk_get_attempts += len(wanted)
            self.stats.bulk_get_docs += len(docs)
        fetched = [docs[k] for k in sorted(docs)]
        for doc_id, rev in wanted:
            if (doc_id, rev) not in docs:
                fetched += fetch_doc(self.source, doc_id, [rev])
        self.stats.docs_read += len(fetched)
        errors = self.target.update_docs(fetched) if fetched else []
        self.errors += errors
        self.stats.docs_written += len(fetched) - len(errors)
        self.stats.doc_write_failures += len(errors)

    # do_checkpoint
    def checkpoint(self) -> None:
        if self.through == self.committed:
            return
        times = (self.source.ensure_full_commit(), self.target.ensure_full_commit())
        ok = (times[0] in (self.src_start, "0") or self.src_start == "0") and (
            times[1] in (self.tgt_start, "0") or self.tgt_start == "0"
        )
        if not ok:
            raise Failed(("checkpoint_commit_failure", "instance_start_time changed", times))
        entry = {
            "session_id": self.session_id,
            "start_time": "Mon, 24 Nov 2026 03:15:30 GMT",
            "end_time": "Mon, 24 Nov 2026 03:15:31 GMT",
            "start_last_seq": self.start_seq,
            "end_last_seq": self.through,
            "recorded_seq": self.through,
            **{k: v for k, v in vars(self.stats).items() if k != "revs_diff_skipped"},
        }
        body = {
            "session_id": self.session_id,
            "source_last_seq": self.through,
            "replication_id_version": REP_ID_VERSION,
            "history": [entry, *self.history][:50],
        }
        for name, log in (("source", self.source_log), ("target", self.target_log)):
            db = self.source if name == "source" else self.target
            log.body = body
            pos, rev_id = update_checkpoint(db, log)
            log.revs = (pos, [rev_id])
        self.committed = self.through


def update_checkpoint(db: HttpDb | MemoryDb, doc: Doc) -> tuple[int, str]:
    """update_doc; on 409, the write counts as done when the stored body is the one sent."""
    try:
        return db.update_doc(doc)
    except Conflict:
        held = db.open_doc(doc.id)
        if isinstance(held, Doc) and json.dumps(held.body) == json.dumps(doc.body):  # EJSON: order counts
            return held.revs[0], held.revs[1][0]
        raise Failed(("checkpoint_commit_failure", "conflict")) from None


def fetch_doc(source: HttpDb | MemoryDb, doc_id: str, revs: list[str]) -> list[Doc]:
    """couch_replicator_worker:fetch_doc: a missing document is asked for once more, then the job fails."""
    try:
        return source.open_doc_revs(doc_id, revs)
    except MissingDoc:
        try:
            return source.open_doc_revs(doc_id, revs)
        except MissingDoc as exc:
            raise Failed(("missing_doc", doc_id, str(exc))) from None


def compare_replication_logs(source: Doc, target: Doc) -> tuple[Any, list[Any]]:
    s, t = source.body, target.body
    if s.get("session_id") == t.get("session_id"):
        return s.get("source_last_seq", LOWEST_SEQ), s.get("history", [])
    return compare_rep_history(s.get("history", []), t.get("history", []))


def compare_rep_history(source: list[Any], target: list[Any]) -> tuple[Any, list[Any]]:
    while source and target:
        s, *source_rest = source
        t, *target_rest = target
        if any(e.get("session_id") == s.get("session_id") for e in target):
            return s.get("recorded_seq", LOWEST_SEQ), source_rest
        if any(e.get("session_id") == t.get("session_id") for e in source_rest):
            return t.get("recorded_seq", LOWEST_SEQ), target_rest
        source, target = source_rest, target_rest
    return LOWEST_SEQ, []
