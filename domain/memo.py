"""A bounded, thread-safe memo of answers that cannot go stale (their key holds everything they depend on).

Used for what a process may remember between requests without outliving a revocation: a token text it has
verified (domain.accounts.tokens) and a Basic check tied to the password hash it was checked against
(sync.couch.common). Whatever decides access (an active user, a live session) is still read from the
database by the callers on every request.
"""

from __future__ import annotations

import threading
from typing import Generic, TypeVar

K = TypeVar("K")
V = TypeVar("V")


class BoundedMemo(Generic[K, V]):
    """At most `limit` entries, the oldest dropped first. Reads take no lock (a dict read is atomic)."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._entries: dict[K, V] = {}
        self._lock = threading.Lock()

    def get(self, key: K) -> V | None:
        return self._entries.get(key)

    def put(self, key: K, value: V) -> None:
        with self._lock:
            self._entries.pop(key, None)
            while self._entries and len(self._entries) >= self.limit:
                del self._entries[next(iter(self._entries))]
            self._entries[key] = value

    def forget(self, key: K) -> None:
        with self._lock:
            self._entries.pop(key, None)

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()

    def oldest_first(self) -> list[K]:
        """The keys held, the oldest first."""
        return list(self._entries)
