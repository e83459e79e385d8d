"""A real SMTP server for the outputs tests: aiosmtpd on 127.0.0.1 at a free port, started by the test."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from contextlib import contextmanager
from email import message_from_bytes, policy
from email.message import EmailMessage
from typing import Any

from aiosmtpd.controller import Controller


class Inbox:
    """An aiosmtpd handler that keeps what it receives, or refuses every message with `refuse`."""

    def __init__(self, refuse: str | None = None) -> None:
        self.refuse = refuse
        self.messages: list[tuple[str, list[str], EmailMessage]] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        if self.refuse:
            return self.refuse
        message = message_from_bytes(envelope.content, policy=policy.default)
        self.messages.append((envelope.mail_from, list(envelope.rcpt_tos), message))  # type: ignore[arg-type]
        return "250 Message accepted for delivery"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start(inbox: Inbox) -> tuple[Controller, int]:
    port = free_port()
    controller = Controller(inbox, hostname="127.0.0.1", port=port)
    controller.start()
    return controller, port


@contextmanager
def running(box: Inbox) -> Iterator[int]:
    """Serve `box` on 127.0.0.1 at a free port for the duration of the block; yields the port."""
    controller, port = start(box)
    try:
        yield port
    finally:
        controller.stop()


def attachment(message: EmailMessage) -> tuple[str, bytes]:
    parts = list(message.iter_attachments())
    assert len(parts) == 1
    part = parts[0]
    assert part.get_content_type() == "application/pdf"
    return part.get_filename() or "", part.get_content()
