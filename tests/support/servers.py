"""Real servers on 127.0.0.1 for notification tests: SMTP (aiosmtpd) and HTTP."""

from __future__ import annotations

import email
import email.policy
import json
import socket
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from email.message import EmailMessage
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

#: The secret part of the webhook URLs the HTTP server answers on.
TOKEN = "XyZ987tokenSECRET"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Inbox:
    """aiosmtpd handler that keeps every message it receives."""

    def __init__(self) -> None:
        self.messages: list[EmailMessage] = []
        self.raw: list[bytes] = []  # as sent: the parsed headers are normalised
        self.recipients: list[list[str]] = []
        self.logins: list[bytes] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        message = email.message_from_bytes(envelope.content, policy=email.policy.default)
        assert isinstance(message, EmailMessage)
        self.messages.append(message)
        self.raw.append(envelope.content)
        self.recipients.append(list(envelope.rcpt_tos))
        return "250 OK"

    def subjects(self) -> list[str]:
        return [str(m["Subject"]) for m in self.messages]


@dataclass
class SmtpServer:
    port: int
    inbox: Inbox
    controller: Any

    @property
    def connections(self) -> int:
        return int(self.controller.connections)


@pytest.fixture
def smtp_server() -> Iterator[Callable[..., SmtpServer]]:
    from aiosmtpd.controller import Controller

    class CountingController(Controller):
        connections = 0

        def factory(self) -> Any:
            self.connections += 1  # one SMTP protocol object per connection
            return super().factory()  # type: ignore[no-untyped-call]

    controllers: list[Any] = []

    def start(**smtp_kwargs: Any) -> SmtpServer:
        inbox = Inbox()
        port = free_port()
        controller = CountingController(inbox, hostname="127.0.0.1", port=port, **smtp_kwargs)
        controller.start()
        controllers.append(controller)
        return SmtpServer(port, inbox, controller)

    yield start
    for controller in controllers:
        controller.stop()


@dataclass
class HttpServer:
    url: str
    bodies: list[dict[str, Any]]
    paths: list[str]


@pytest.fixture
def http_server() -> Iterator[Callable[[int], HttpServer]]:
    servers: list[ThreadingHTTPServer] = []

    def start(status: int) -> HttpServer:
        bodies: list[dict[str, Any]] = []
        paths: list[str] = []

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", 0))
                bodies.append(json.loads(self.rfile.read(length)))
                paths.append(self.path)
                self.send_response(status)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, format: str, *args: Any) -> None:
                pass

        server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True).start()
        servers.append(server)
        port = server.server_address[1]
        return HttpServer(f"http://127.0.0.1:{port}/services/T0001/B0002/{TOKEN}", bodies, paths)

    yield start
    for server in servers:
        server.shutdown()
        server.server_close()
