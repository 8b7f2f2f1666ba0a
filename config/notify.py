"""The ``[notify]`` section of the settings: channels, routing, retries, quiet hours (SPEC S16).

Example::

    [notify]
    signature = "国网示例供电"          # inside 【】 in Chinese texts
    signature_en = "State Grid Example"
    [notify.routes]                       # type -> channels; "default" for the rest
    default = ["sms", "webhook"]
    monthly_bill = ["email", "webhook"]
    [notify.sms]
    url = "https://sms.example.com/v1/messages"
    token = "…"                            # or WATTPAY_NOTIFY_SMS_TOKEN
    [notify.email]
    host = "smtp.example.com"
    port = 587
    sender = "billing@example.com"
    [notify.webhook]
    url = "https://app.example.com/hooks/wattpay"
    secret = "whsec_…"                     # or WATTPAY_NOTIFY_WEBHOOK_SECRET
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import time
from typing import Any

CHANNELS = ("sms", "email", "webhook", "log")
TYPES = (  # the notification types of SPEC S7
    "low_balance",
    "arrears",
    "disconnect_scheduled",
    "disconnected",
    "reconnected",
    "topup_received",
    "points_expiring",
    "account_closed",
    "consumption_while_disconnected",
    "meter_anomaly",
    "monthly_bill",
)
REMINDERS = ("low_balance", "arrears", "points_expiring", "monthly_bill")
ENV_KEYS = {
    "WATTPAY_NOTIFY_SMS_URL": ("sms", "url"),
    "WATTPAY_NOTIFY_SMS_TOKEN": ("sms", "token"),
    "WATTPAY_NOTIFY_SMTP_HOST": ("email", "host"),
    "WATTPAY_NOTIFY_SMTP_PORT": ("email", "port"),
    "WATTPAY_NOTIFY_SMTP_PASSWORD": ("email", "password"),
    "WATTPAY_NOTIFY_WEBHOOK_URL": ("webhook", "url"),
    "WATTPAY_NOTIFY_WEBHOOK_SECRET": ("webhook", "secret"),
}


@dataclass(frozen=True)
class SmsGateway:
    """An HTTP SMS gateway: POST JSON to ``url`` with a bearer ``token``."""

    url: str = ""
    token: str = field(default="", repr=False)
    timeout: float = 5.0


@dataclass(frozen=True)
class SmtpServer:
    """An SMTP server to send email through (STARTTLS when ``starttls``)."""

    host: str = ""
    port: int = 25
    sender: str = "wattpay@localhost"
    username: str = ""
    password: str = field(default="", repr=False)
    starttls: bool = False
    timeout: float = 10.0


@dataclass(frozen=True)
class WebhookTarget:
    """A Standard Webhooks receiver and its ``whsec_`` signing secret."""

    url: str = ""
    secret: str = field(default="", repr=False)
    timeout: float = 5.0


@dataclass(frozen=True)
class NotifySettings:
    """How ``wattpay notify`` renders and delivers notifications."""

    signature: str = "国网示例供电"
    signature_en: str = "State Grid Example"
    routes: dict[str, tuple[str, ...]] = field(default_factory=lambda: {"default": ("log",)})
    sms: SmsGateway = field(default_factory=SmsGateway)
    email: SmtpServer = field(default_factory=SmtpServer)
    webhook: WebhookTarget = field(default_factory=WebhookTarget)
    max_attempts: int = 6
    backoff_seconds: float = 0.5
    backoff_max_seconds: float = 60.0
    concurrency: int = 8
    rate_per_second: float = 50.0
    quiet_hours: bool = True
    quiet_from: time = time(21, 0)
    quiet_until: time = time(8, 0)
    quiet_types: tuple[str, ...] = REMINDERS
    log_file: str = ""

    def channels_for(self, kind: str) -> tuple[str, ...]:
        """The channels a notification type goes to."""
        return self.routes.get(kind, self.routes.get("default", ()))

    def masked(self) -> dict[str, Any]:
        """The section as plain data with credentials masked."""
        return {
            "signature": self.signature,
            "signature_en": self.signature_en,
            "routes": {k: list(v) for k, v in self.routes.items()},
            "sms": {"url": self.sms.url, "token": _mask(self.sms.token)},
            "email": {
                "host": self.email.host,
                "port": self.email.port,
                "sender": self.email.sender,
                "username": self.email.username,
                "password": _mask(self.email.password),
                "starttls": self.email.starttls,
            },
            "webhook": {"url": self.webhook.url, "secret": _mask(self.webhook.secret)},
            "retry": {
                "max_attempts": self.max_attempts,
                "backoff_seconds": self.backoff_seconds,
                "backoff_max_seconds": self.backoff_max_seconds,
            },
            "concurrency": self.concurrency,
            "rate_per_second": self.rate_per_second,
            "quiet_hours": {
                "enabled": self.quiet_hours,
                "from": self.quiet_from.isoformat("minutes"),
                "until": self.quiet_until.isoformat("minutes"),
                "types": list(self.quiet_types),
            },
            "log_file": self.log_file,
        }


def _mask(secret: str) -> str:
    return "***" if secret else ""


def notify_env(env: Mapping[str, str], raw: dict[str, Any]) -> None:
    """Apply ``WATTPAY_NOTIFY_*`` variables onto the raw ``[notify]`` table."""
    for variable, (section, key) in ENV_KEYS.items():
        if env.get(variable):
            raw.setdefault("notify", {}).setdefault(section, {})[key] = env[variable]


def notify_settings(raw: Mapping[str, Any], problems: list[str]) -> NotifySettings:
    """Validate the ``[notify]`` table, appending every problem found to ``problems``."""
    base = NotifySettings()
    routes = dict(base.routes)
    for kind, channels in raw.get("routes", {}).items():
        names = [channels] if isinstance(channels, str) else list(channels)
        if kind != "default" and kind not in TYPES:
            problems.append(f"notify.routes.{kind}: not a notification type (known: {TYPES})")
        unknown = [c for c in names if c not in CHANNELS]
        if unknown:
            problems.append(f"notify.routes.{kind}: unknown channels {unknown} (known: {CHANNELS})")
        routes[str(kind)] = tuple(str(c) for c in names)
    sms = raw.get("sms", {})
    email = raw.get("email", {})
    webhook = raw.get("webhook", {})
    used = {c for channels in routes.values() for c in channels}
    if "sms" in used and not sms.get("url"):
        problems.append("notify.sms.url is required when a route uses sms")
    if "email" in used and not email.get("host"):
        problems.append("notify.email.host is required when a route uses email")
    if "webhook" in used and not (webhook.get("url") and webhook.get("secret")):
        problems.append("notify.webhook.url and .secret are required when a route uses webhook")
    if webhook.get("secret"):
        _check_secret(str(webhook["secret"]), problems)
    quiet = raw.get("quiet_hours", {})
    if isinstance(quiet, bool):
        quiet = {"enabled": quiet}
    strange = [t for t in quiet.get("types", ()) if t not in TYPES]
    if strange:
        problems.append(f"notify.quiet_hours.types: not notification types: {strange}")
    return NotifySettings(
        signature=str(raw.get("signature", base.signature)),
        signature_en=str(raw.get("signature_en", base.signature_en)),
        routes=routes,
        sms=SmsGateway(
            url=str(sms.get("url", "")),
            token=str(sms.get("token", "")),
            timeout=_positive(sms.get("timeout", 5.0), "notify.sms.timeout", problems),
        ),
        email=SmtpServer(
            host=str(email.get("host", "")),
            port=int(_positive(email.get("port", 25), "notify.email.port", problems)),
            sender=str(email.get("sender", base.email.sender)),
            username=str(email.get("username", "")),
            password=str(email.get("password", "")),
            starttls=bool(email.get("starttls", False)),
            timeout=_positive(email.get("timeout", 10.0), "notify.email.timeout", problems),
        ),
        webhook=WebhookTarget(
            url=str(webhook.get("url", "")),
            secret=str(webhook.get("secret", "")),
            timeout=_positive(webhook.get("timeout", 5.0), "notify.webhook.timeout", problems),
        ),
        max_attempts=int(_positive(raw.get("max_attempts", 6), "notify.max_attempts", problems)),
        backoff_seconds=_positive(
            raw.get("backoff_seconds", 0.5), "notify.backoff_seconds", problems
        ),
        backoff_max_seconds=_positive(
            raw.get("backoff_max_seconds", 60.0), "notify.backoff_max_seconds", problems
        ),
        concurrency=int(_positive(raw.get("concurrency", 8), "notify.concurrency", problems)),
        rate_per_second=_positive(
            raw.get("rate_per_second", 50.0), "notify.rate_per_second", problems
        ),
        quiet_hours=bool(quiet.get("enabled", True)),
        quiet_from=_time(quiet.get("from", "21:00"), "notify.quiet_hours.from", problems),
        quiet_until=_time(quiet.get("until", "08:00"), "notify.quiet_hours.until", problems),
        quiet_types=tuple(str(t) for t in quiet.get("types", REMINDERS)),
        log_file=str(raw.get("log_file", "")),
    )


def _positive(value: Any, name: str, problems: list[str]) -> float:
    try:
        number = float(value)
    except (TypeError, ValueError):
        problems.append(f"{name} must be a number: {value!r}")
        return 1.0
    if not number > 0:
        problems.append(f"{name} must be positive: {value!r}")
        return 1.0
    return number


def _time(value: Any, name: str, problems: list[str]) -> time:
    try:
        return value if isinstance(value, time) else time.fromisoformat(str(value))
    except ValueError:
        problems.append(f"{name} must be HH:MM: {value!r}")
        return time(0, 0)


def _check_secret(secret: str, problems: list[str]) -> None:
    try:
        key = base64.b64decode(secret.removeprefix("whsec_"), validate=True)
    except (binascii.Error, ValueError):
        key = b""
    if len(key) < 16:
        problems.append("notify.webhook.secret must be whsec_ + base64 of at least 16 bytes")
