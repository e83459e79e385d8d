"""Waiting for the feed without holding a database connection, and streaming answers that notice a hang-up.

`FeedWatcher`: one per database and event loop. While anybody waits, one task reads the committed feed
counter every `POLL_SECONDS` (the correctness path: it sees commits of every process on the database) and
at once when a unit of work of this process commits (`Database.commit_listeners`, a hint for latency
only). Waiters share that one read, so a thousand idle longpolls cost one query a quarter second.

`WatchedResponse`: an ASGI response fed by an async iterator of byte chunks, which listens for the client's
disconnect at the same time and stops the iterator when it comes (uvicorn silently drops writes to a closed
connection, so a stream that only writes would run on until its timeout). A `deferred` response sends its
status line only with its first chunk (longpoll: nothing is sent while it waits).
"""

from __future__ import annotations

import asyncio
import logging
import time
import weakref
from collections.abc import AsyncIterator, Callable
from typing import Any

import anyio
from starlette.concurrency import run_in_threadpool
from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from domain.db import Database
from domain.feed.reader import fetch_current

log = logging.getLogger("lpg.sync.stream")

POLL_SECONDS = 0.25


class FeedWatcher:
    def __init__(self, db: Database, loop: asyncio.AbstractEventLoop) -> None:
        self.db = db
        self.loop = loop
        self.seq = -1  # the newest committed feed seq seen; -1 until the first read
        self.waiters = 0
        self.changed = asyncio.Event()  # replaced after every change: setting it wakes everybody waiting
        self.kick = asyncio.Event()
        self.task: asyncio.Task[None] | None = None

    def _on_commit(self) -> None:  # runs in the committing thread
        try:
            self.loop.call_soon_threadsafe(self.kick.set)
        except RuntimeError:  # the loop is closed
            pass

    async def _run(self) -> None:
        self.db.commit_listeners.append(self._on_commit)
        try:
            while self.waiters > 0:
                self.kick.clear()  # before the read: a commit during the read triggers another one
                try:
                    seq = await run_in_threadpool(fetch_current, self.db)
                except Exception:  # the database is away: waiters time out, polling goes on
                    log.exception("reading the feed counter failed")
                    seq = self.seq
                if seq != self.seq:
                    self.seq = seq
                    changed, self.changed = self.changed, asyncio.Event()
                    changed.set()
                with anyio.move_on_after(POLL_SECONDS):
                    await self.kick.wait()
        finally:
            self.db.commit_listeners.remove(self._on_commit)
            self.task = None

    async def wait_beyond(self, since: int, deadline: float) -> bool:
        """Wait until the committed feed seq exceeds `since` (True) or `deadline` (monotonic) passes."""
        self.waiters += 1
        if self.task is None:
            self.task = asyncio.ensure_future(self._run())
        try:
            while self.seq <= since:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                with anyio.move_on_after(remaining):
                    await self.changed.wait()
            return True
        finally:
            self.waiters -= 1


_watchers: weakref.WeakKeyDictionary[Database, FeedWatcher] = weakref.WeakKeyDictionary()


def watcher_for(db: Database) -> FeedWatcher:
    loop = asyncio.get_running_loop()
    watcher = _watchers.get(db)
    if watcher is None or watcher.loop is not loop:
        watcher = _watchers[db] = FeedWatcher(db, loop)
    return watcher


class WatchedResponse(Response):
    def __init__(
        self,
        chunks: Callable[[], AsyncIterator[bytes]],
        media_type: str,
        *,
        deferred: bool = False,
        status_code: int = 200,
        headers: dict[str, str] | None = None,
    ) -> None:
        self.chunks = chunks
        self.deferred = deferred
        self.status_code = status_code
        self.media_type = media_type
        self.background = None
        self.init_headers(headers)
        if deferred:
            # One body, sent whole: drop the chunked framing, the length is set when it is known.
            self.raw_headers = [(k, v) for k, v in self.raw_headers if k != b"content-length"]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        async with anyio.create_task_group() as group:

            async def hang_up() -> None:
                while (await receive())["type"] != "http.disconnect":
                    pass
                group.cancel_scope.cancel()

            group.start_soon(hang_up)
            try:
                await self._send(send)
            except OSError:  # the client went away mid-write
                pass
            finally:
                group.cancel_scope.cancel()

    async def _send(self, send: Send) -> None:
        start: dict[str, Any] = {"type": "http.response.start", "status": self.status_code}
        if not self.deferred:
            await send({**start, "headers": self.raw_headers})
        async for chunk in self.chunks():
            if self.deferred:
                headers = [*self.raw_headers, (b"content-length", str(len(chunk)).encode())]
                await send({**start, "headers": headers})
                await send({"type": "http.response.body", "body": chunk, "more_body": False})
                return
            await send({"type": "http.response.body", "body": chunk, "more_body": True})
        await send({"type": "http.response.body", "body": b"", "more_body": False})
