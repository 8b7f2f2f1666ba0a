"""The delivery channels of SPEC S16.2: SMS gateway (HTTP), email (SMTP), webhook, local log.

A channel's ``send`` returns on success and raises ``SendFailed`` otherwise, saying whether a
retry may help (timeouts, connection errors, 429, 5xx) and what ``Retry-After`` asked for.
Credentials go into headers or the SMTP login only; they never appear in an error text.
"""

from __future__ import annotations

import email.utils
import hashlib
import http.client
import json
import logging
import smtplib
import socket
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from datetime import datetime
from email.message import EmailMessage
from pathlib import Path
from typing import Any, Protocol

from config.notify import SmsGateway, SmtpServer, WebhookTarget
from notify.webhooks import webhook_headers

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Outgoing:
    """One notification rendered for one channel, with its idempotency key (the event_id)."""

    event_id: str
    kind: str
    account_id: str
    locale: str
    subject: str
    text: str
    segments: int
    phone: str | None
    email: str | None
    notification: dict[str, Any]


class SendFailed(Exception):
    """A failed attempt: ``retryable`` says whether trying again may help."""

    def __init__(self, error: str, *, retryable: bool, retry_after: float | None = None) -> None:
        super().__init__(error)
        self.error = error
        self.retryable = retryable
        self.retry_after = retry_after


class Channel(Protocol):
    """Something that delivers an ``Outgoing`` or raises ``SendFailed``."""

    name: str

    def missing_address(self, message: Outgoing) -> str | None:
        """Why this message cannot go to this channel at all (no phone, ...), else None."""

    def send(self, message: Outgoing) -> None:
        """Deliver one message once."""


def retry_after_seconds(value: str | None, now: float | None = None) -> float | None:
    """A ``Retry-After`` header (seconds or an HTTP date) as seconds from now."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(when.timestamp() - (time.time() if now is None else now), 0.0)


def post_json(url: str, body: bytes, headers: dict[str, str], timeout: float) -> int:
    """POST a JSON body; the status on 2xx, else ``SendFailed`` classified for retry."""
    request = urllib.request.Request(  # noqa: S310 - the configured gateway or receiver
        url, data=body, method="POST", headers={"Content-Type": "application/json", **headers}
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310
            response.read()
            return int(response.status)
    except urllib.error.HTTPError as err:
        status = err.code
        retryable = status == 429 or status >= 500
        raise SendFailed(
            f"HTTP {status}",
            retryable=retryable,
            retry_after=retry_after_seconds(err.headers.get("Retry-After")) if retryable else None,
        ) from None
    except (TimeoutError, socket.timeout):
        raise SendFailed("timeout", retryable=True) from None
    except urllib.error.URLError as err:
        reason = err.reason
        kind = "timeout" if isinstance(reason, TimeoutError) else "connection error"
        raise SendFailed(f"{kind}: {type(reason).__name__}", retryable=True) from None
    except (ConnectionError, http.client.HTTPException) as err:
        raise SendFailed(f"connection error: {type(err).__name__}", retryable=True) from None


class SmsChannel:
    """POSTs ``{phone, text, idempotency_key, segments}`` to the HTTP SMS gateway."""

    name = "sms"

    def __init__(self, gateway: SmsGateway) -> None:
        self.gateway = gateway

    def missing_address(self, message: Outgoing) -> str | None:
        return None if message.phone else "no phone"

    def send(self, message: Outgoing) -> None:
        body = json.dumps(
            {
                "phone": message.phone,
                "text": message.text,
                "idempotency_key": message.event_id,
                "segments": message.segments,
            },
            ensure_ascii=False,
        ).encode("utf-8")
        headers = {"Idempotency-Key": message.event_id}
        if self.gateway.token:
            headers["Authorization"] = f"Bearer {self.gateway.token}"
        post_json(self.gateway.url, body, headers, self.gateway.timeout)


class WebhookChannel:
    """POSTs the notification and its text, signed with the Standard Webhooks headers."""

    name = "webhook"

    def __init__(self, target: WebhookTarget) -> None:
        self.target = target

    def missing_address(self, message: Outgoing) -> str | None:
        return None

    def send(self, message: Outgoing) -> None:
        payload = {
            "type": f"notification.{message.kind}",
            "timestamp": message.notification.get("ts"),
            "data": {**message.notification, "text": message.text, "subject": message.subject},
        }
        body = json.dumps(payload, ensure_ascii=False).encode("utf-8")
        headers = webhook_headers(self.target.secret, message.event_id, int(time.time()), body)
        post_json(self.target.url, body, headers, self.target.timeout)


class EmailChannel:
    """Sends the text by SMTP; the Message-ID derives from the event_id (one per event)."""

    name = "email"

    def __init__(self, server: SmtpServer) -> None:
        self.server = server

    def missing_address(self, message: Outgoing) -> str | None:
        return None if message.email else "no email address"

    def send(self, message: Outgoing) -> None:
        server = self.server
        mail = EmailMessage()
        mail["From"] = server.sender
        mail["To"] = message.email
        mail["Subject"] = message.subject
        mail["Message-ID"] = f"<{hashlib.sha256(message.event_id.encode()).hexdigest()}@wattpay>"
        mail["X-Wattpay-Event-Id"] = message.event_id
        mail.set_content(message.text)
        try:
            with smtplib.SMTP(server.host, server.port, timeout=server.timeout) as smtp:
                if server.starttls:
                    smtp.starttls()
                if server.username:
                    smtp.login(server.username, server.password)
                smtp.send_message(mail)
        except smtplib.SMTPResponseException as err:
            code = int(err.smtp_code)
            raise SendFailed(f"SMTP {code}", retryable=400 <= code < 500) from None
        except smtplib.SMTPRecipientsRefused as err:
            codes = sorted({int(code) for code, _ in err.recipients.values()})
            raise SendFailed(f"SMTP recipients refused {codes}", retryable=False) from None
        except (TimeoutError, socket.timeout):
            raise SendFailed("timeout", retryable=True) from None
        except (OSError, smtplib.SMTPException) as err:
            raise SendFailed(f"connection error: {type(err).__name__}", retryable=True) from None


class LogChannel:
    """Writes each text to the log (and a file when given): the local demo's channel."""

    name = "log"

    def __init__(self, path: Path | None = None) -> None:
        self.path = path
        self._lock = threading.Lock()

    def missing_address(self, message: Outgoing) -> str | None:
        return None

    def send(self, message: Outgoing) -> None:
        line = f"{message.event_id} [{message.locale}, {message.segments} SMS] {message.text}"
        log.info("notification %s", line)
        if self.path is not None:
            stamp = datetime.now().astimezone().isoformat(timespec="seconds")
            with self._lock, self.path.open("a", encoding="utf-8") as out:
                out.write(f"{stamp} {line}\n")
