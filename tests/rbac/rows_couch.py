"""The CouchDB surface: every user reads `lpg` (scoped); writes to it are refused for everybody (a device's
queue, `queue-<device>`, is the only writable database: tests/couch)."""

from tests.rbac.matrix import RbacRow, Request, World, expect


def _db(world: World) -> Request:
    return Request(path={"db": "lpg"})


def _doc(world: World) -> Request:
    return Request(path={"db": "lpg", "docid": "customer:1"}, json={"x": 1})


def _local(world: World) -> Request:
    return Request(path={"db": "lpg", "id": "rep-1"}, json={"last_seq": 3})


def _bulk_get(world: World) -> Request:
    return Request(path={"db": "lpg"}, json={"docs": [{"id": "customer:1"}]})


ROWS = [
    RbacRow("GET", "/couchdb/", expect(401, 200, 200, 200)),
    RbacRow("GET", "/couchdb/{db}/", expect(401, 200, 200, 200), setup=_db),
    RbacRow(
        "POST",
        "/couchdb/{db}/",
        expect(401, 403, 403, 403),
        setup=lambda w: Request(path={"db": "lpg"}, json={"_id": "a"}),
    ),
    RbacRow("GET", "/couchdb/{db}/_changes", expect(401, 200, 200, 200), setup=_db),
    RbacRow("POST", "/couchdb/{db}/_bulk_get", expect(401, 200, 200, 200), setup=_bulk_get),
    RbacRow(
        "GET",
        "/couchdb/{db}/_local/{id}",
        expect(401, 404, 404, 404),
        setup=lambda w: Request(path={"db": "lpg", "id": "never"}),
    ),
    RbacRow(
        "POST",
        "/couchdb/{db}/_all_docs",
        expect(401, 200, 200, 200),
        setup=lambda w: Request(path={"db": "lpg"}, json={"keys": ["customer:1"]}),
    ),
    RbacRow(
        "GET",
        "/couchdb/{db}/_all_docs",
        expect(401, 200, 200, 200),
        setup=lambda w: Request(path={"db": "lpg"}, query={"keys": '["customer:1"]'}),
    ),
    RbacRow("PUT", "/couchdb/{db}/_local/{id}", expect(401, 201, 201, 201), setup=_local),
    RbacRow("GET", "/couchdb/{db}/{docid}", expect(401, 200, 200, 200), setup=_doc),
    RbacRow("PUT", "/couchdb/{db}/{docid}", expect(401, 403, 403, 403), setup=_doc),
    RbacRow(
        "DELETE",
        "/couchdb/{db}/{docid}",
        expect(401, 403, 403, 403),
        setup=lambda w: Request(path={"db": "lpg", "docid": "customer:1"}),
    ),
    RbacRow(
        "POST",
        "/couchdb/{db}/_bulk_docs",
        expect(401, 403, 403, 403),
        setup=lambda w: Request(path={"db": "lpg"}, json={"docs": []}),
    ),
    RbacRow(
        "POST",
        "/couchdb/{db}/_revs_diff",
        expect(401, 403, 403, 403),
        setup=lambda w: Request(path={"db": "lpg"}, json={}),
    ),
    RbacRow("GET", "/couchdb/_session", expect(401, 200, 200, 200)),
    RbacRow(
        "POST",
        "/couchdb/{db}/_changes",
        expect(401, 200, 200, 200),
        setup=lambda w: Request(path={"db": "lpg"}, query={"filter": "_doc_ids"}, json={"doc_ids": ["customer:1"]}),
    ),
    RbacRow("PUT", "/couchdb/{db}/", expect(401, 412, 412, 412), setup=_db),
    RbacRow(
        "POST",
        "/couchdb/{db}/_ensure_full_commit",
        expect(401, 201, 201, 201),
        setup=lambda w: Request(path={"db": "lpg"}, json={}),
    ),
    RbacRow(
        "DELETE",
        "/couchdb/{db}/_local/{id}",
        expect(401, 404, 404, 404),
        setup=lambda w: Request(path={"db": "lpg", "id": "never"}),
    ),
]
