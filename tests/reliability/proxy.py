"""A TCP proxy between the server and MariaDB that cuts a connection when it sees a given statement.

Real faults, not mocks: the server's driver sees exactly what a network cut or a killed server thread gives
it (a lost connection while the statement is in flight). A rule matches the bytes of one client packet
(MySQL's COM_QUERY carries the statement text as is) and either cuts before the packet reaches the server
(`before`: the statement never runs) or right after forwarding it (`after`: the statement runs, its answer
is lost; for COMMIT that is the outcome-unknown case).
"""

from __future__ import annotations

import re
import select
import socket
import threading
from dataclasses import dataclass, field


@dataclass
class Rule:
    pattern: re.Pattern[bytes]
    when: str = "before"  # "before": the statement never reaches the server; "after": its answer is lost
    times: int = 1  # how many cuts this rule may still make
    armed_by: re.Pattern[bytes] | None = None  # only after a packet matching this passed
    same_connection: bool = True  # armed only on the connection that sent the arming packet
    armed: bool = False
    hits: int = 0


@dataclass
class FaultProxy:
    target_port: int
    port: int
    target_host: str = "127.0.0.1"
    rules: list[Rule] = field(default_factory=list)
    log: list[bytes] = field(default_factory=list)
    record: bool = False
    cuts: int = 0

    def __post_init__(self) -> None:
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._server = socket.create_server(("127.0.0.1", self.port), reuse_port=False)
        self._server.settimeout(0.2)
        self._threads: list[threading.Thread] = []
        self._sockets: set[socket.socket] = set()
        thread = threading.Thread(target=self._accept, daemon=True)
        thread.start()
        self._threads.append(thread)

    def add(
        self,
        pattern: str,
        when: str = "before",
        times: int = 1,
        armed_by: str | None = None,
        same_connection: bool = True,
    ) -> Rule:
        """Cut on a packet matching `pattern`, at most `times` times; with `armed_by`, only once a packet
        matching that passed (on the same connection, or on any with `same_connection=False`).

        Connection setup sends statements too (PyMySQL commits after setting the isolation level), so a
        bare COMMIT rule would hit every new connection: arm it with a statement of the unit under test."""
        rule = Rule(
            re.compile(pattern.encode(), re.I | re.S),
            when,
            times,
            re.compile(armed_by.encode(), re.I | re.S) if armed_by else None,
            same_connection,
        )
        with self._lock:
            self.rules.append(rule)
        return rule

    def clear(self) -> None:
        with self._lock:
            self.rules.clear()

    def cut_all(self) -> None:
        """Cut every open connection at once (a network partition, a crashed database host)."""
        with self._lock:
            sockets = list(self._sockets)
        for sock in sockets:
            _close(sock)

    def close(self) -> None:
        self._stop.set()
        self.cut_all()
        self._server.close()
        for thread in self._threads:
            thread.join(timeout=2)

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                client, _ = self._server.accept()
            except (TimeoutError, OSError):
                continue
            try:
                upstream = socket.create_connection((self.target_host, self.target_port), timeout=5)
            except OSError:
                _close(client)
                continue
            upstream.settimeout(None)
            with self._lock:
                self._sockets.update((client, upstream))
            thread = threading.Thread(target=self._relay, args=(client, upstream), daemon=True)
            thread.start()
            self._threads.append(thread)

    def _decide(self, packet: bytes, armed_here: set[int]) -> str | None:
        with self._lock:
            if self.record:
                self.log.append(packet[4:200])
            decision = None
            for rule in self.rules:
                if rule.times <= 0:
                    continue
                if rule.armed_by is not None:
                    if rule.same_connection and id(rule) not in armed_here:
                        continue
                    if not rule.same_connection and not rule.armed:
                        continue
                if rule.pattern.search(packet):
                    rule.times -= 1
                    rule.hits += 1
                    self.cuts += 1
                    decision = rule.when
                    break
            for rule in self.rules:  # arming happens after matching: a packet does not arm its own rule
                if rule.armed_by is not None and rule.armed_by.search(packet):
                    rule.armed = True
                    armed_here.add(id(rule))
            return decision

    def _relay(self, client: socket.socket, upstream: socket.socket) -> None:
        pair = {client: upstream, upstream: client}
        armed_here: set[int] = set()
        try:
            while not self._stop.is_set():
                readable, _, _ = select.select([client, upstream], [], [], 0.5)
                for sock in readable:
                    data = sock.recv(65536)
                    if not data:
                        return
                    if sock is client:
                        decision = self._decide(data, armed_here)
                        if decision == "before":
                            return
                        pair[sock].sendall(data)
                        if decision == "after":
                            return
                    else:
                        pair[sock].sendall(data)
        except (OSError, ValueError):
            return
        finally:
            _close(client)
            _close(upstream)
            with self._lock:
                self._sockets.discard(client)
                self._sockets.discard(upstream)


def _close(sock: socket.socket) -> None:
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass
    try:
        sock.close()
    except OSError:
        pass
