"""Real receivers on 127.0.0.1 for notification tests: a flaky HTTP endpoint and an SMTP server.

The HTTP receiver stands in for an SMS gateway or a webhook receiver. With a failure rate it
fails at random: 500, 429 with Retry-After, a response slower than the client's timeout, or
a connection dropped without an answer. It records every request (``hits``) and, separately,
what it accepted with a 2xx (``accepted``), keyed by the idempotency key.
"""

from __future__ import annotations

import json
import random
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, Envelope, Session

from bus.ports import free_port

FAILURES = ("500", "429", "slow", "drop")


@dataclass
class Received:
    """One accepted request: its idempotency key, headers and body."""

    key: str
    headers: dict[str, str]
    body: bytes

    def json(self) -> dict:
        return json.loads(self.body)


@dataclass
class Log:
    """What a receiver saw; thread-safe."""

    hits: Counter = field(default_factory=Counter)
    accepted: list[Received] = field(default_factory=list)
    outcomes: Counter = field(default_factory=Counter)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def accepted_keys(self) -> Counter:
        with self.lock:
            return Counter(r.key for r in self.accepted)


class FlakyHttp:
    """An HTTP receiver on 127.0.0.1 that fails ``failure_rate`` of requests at random."""

    def __init__(
        self,
        *,
        failure_rate: float = 0.0,
        failures: tuple[str, ...] = FAILURES,
        key_header: str = "Idempotency-Key",
        slow_seconds: float = 1.0,
        status: int | None = None,
        retry_after: str = "1",
        seed: int = 1,
    ) -> None:
        self.log = Log()
        self.failure_rate = failure_rate
        self.failures = failures
        self.key_header = key_header
        self.slow_seconds = slow_seconds
        self.status = status
        self.retry_after = retry_after
        self.rng = random.Random(seed)
        self.port = free_port()
        self.server = ThreadingHTTPServer(("127.0.0.1", self.port), self._handler())
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/messages"

    def __enter__(self) -> FlakyHttp:
        self.thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.server.shutdown()
        self.server.server_close()

    def _choose(self) -> str:
        with self.log.lock:
            if self.status is not None:
                return str(self.status)
            if self.rng.random() < self.failure_rate:
                return self.rng.choice(self.failures)
            return "ok"

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *_: object) -> None:
                pass

            def do_POST(self) -> None:  # noqa: N802 - the http.server hook
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                key = self.headers.get(receiver.key_header, "")
                outcome = receiver._choose()
                with receiver.log.lock:
                    receiver.log.hits[key] += 1
                    receiver.log.outcomes[outcome] += 1
                if outcome == "drop":
                    self.close_connection = True
                    self.connection.close()
                    return
                if outcome == "slow":
                    time.sleep(receiver.slow_seconds)
                    self.close_connection = True
                    return
                if outcome == "ok":
                    with receiver.log.lock:
                        receiver.log.accepted.append(Received(key, dict(self.headers), body))
                    self._answer(200)
                elif outcome == "429":
                    self._answer(429, {"Retry-After": receiver.retry_after})
                else:
                    self._answer(int(outcome))

            def _answer(self, status: int, headers: dict[str, str] | None = None) -> None:
                payload = b'{"ok": true}' if status == 200 else b'{"error": "try later"}'
                self.send_response(status)
                for name, value in (headers or {}).items():
                    self.send_header(name, value)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

        return Handler


class SmtpReceiver:
    """An aiosmtpd server on 127.0.0.1 that answers 451 to ``failure_rate`` of messages."""

    def __init__(self, *, failure_rate: float = 0.0, seed: int = 2) -> None:
        self.log = Log()
        self.failure_rate = failure_rate
        self.rng = random.Random(seed)
        self.port = free_port()
        self.controller = Controller(self, hostname="127.0.0.1", port=self.port)

    def __enter__(self) -> SmtpReceiver:
        self.controller.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.controller.stop()

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:  # noqa: N802
        from email import message_from_bytes

        mail = message_from_bytes(envelope.original_content or envelope.content)
        key = str(mail["X-Wattpay-Event-Id"])
        with self.log.lock:
            self.log.hits[key] += 1
            fail = self.rng.random() < self.failure_rate
            self.log.outcomes["451" if fail else "ok"] += 1
            if fail:
                return "451 4.3.0 try again later"
            headers = {k: str(v) for k, v in mail.items()}
            headers["To"] = ",".join(envelope.rcpt_tos)
            self.log.accepted.append(Received(key, headers, mail.get_payload(decode=True)))
        return "250 OK"
