"""CouchDB's replication protocol under `/couchdb/` (docs/couchdb.md): a source for stock PouchDB and
CouchDB replicators, and a target for a device's queued changes."""

from sync.couch.endpoints import router

__all__ = ["router"]
