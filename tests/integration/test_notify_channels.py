"""Each channel against a real receiver on 127.0.0.1, through the retrying delivery loop."""

from __future__ import annotations

import base64
import threading

from standardwebhooks.webhooks import Webhook

from config.notify import SmsGateway, SmtpServer, WebhookTarget
from notify.channels import EmailChannel, Outgoing, SmsChannel, WebhookChannel
from notify.delivery import Attempt, RetryPolicy, deliver
from tests.notify_servers import FlakyHttp, SmtpReceiver

SECRET = "whsec_" + base64.b64encode(b"0123456789abcdef0123456789abcdef").decode()
FAST = RetryPolicy(max_attempts=4, base_seconds=0.01, max_seconds=0.05)


def message(event_id: str = "low_balance:A1:c1", phone: str | None = "13800001111") -> Outgoing:
    notification = {
        "event_id": event_id,
        "type": "low_balance",
        "account_id": "A1",
        "ts": "2026-03-01T08:15:00+08:00",
        "locale": "zh-CN",
        "phone": phone,
        "data": {"available": "12.34", "threshold": "20.00"},
    }
    return Outgoing(
        event_id=event_id,
        kind="low_balance",
        account_id="A1",
        locale="zh-CN",
        subject="电费余额不足提醒",
        text="【国网示例供电】您户号A1电费余额12.34元，已低于提醒值20.00元，请及时充值。",
        segments=1,
        phone=phone,
        email="a1@example.test",
        notification=notification,
    )


def run(channel, outgoing: Outgoing, policy: RetryPolicy = FAST):
    rows: list[Attempt] = []
    outcome = deliver(channel, outgoing, policy, record=rows.append, stop=threading.Event())
    return outcome, [(r.attempt, r.status, r.error) for r in rows]


def test_sms_posts_phone_text_and_the_event_id_as_idempotency_key() -> None:
    with FlakyHttp() as gateway:
        channel = SmsChannel(SmsGateway(url=gateway.url, token="tok-secret-1", timeout=2))
        outcome, rows = run(channel, message())
        assert outcome.status == "delivered" and rows == [(1, "delivered", "")]
        (received,) = gateway.log.accepted
        body = received.json()
        assert body["phone"] == "13800001111" and body["text"] == message().text
        assert body["idempotency_key"] == received.key == "low_balance:A1:c1"
        assert received.headers["Authorization"] == "Bearer tok-secret-1"


def test_no_phone_no_sms() -> None:
    with FlakyHttp() as gateway:
        channel = SmsChannel(SmsGateway(url=gateway.url))
        outcome, rows = run(channel, message(phone=None))
        assert outcome.status == "skipped" and rows == [(0, "skipped", "no phone")]
        assert not gateway.log.hits


def test_retries_5xx_and_timeouts_then_gives_up_without_leaking_the_token() -> None:
    with FlakyHttp(status=503) as gateway:
        channel = SmsChannel(SmsGateway(url=gateway.url, token="tok-secret-2", timeout=2))
        outcome, rows = run(channel, message())
        assert outcome.status == "failed" and outcome.attempts == 4
        assert rows == [
            (1, "retrying", "HTTP 503"),
            (2, "retrying", "HTTP 503"),
            (3, "retrying", "HTTP 503"),
            (4, "failed", "HTTP 503"),
        ]
        assert gateway.log.hits["low_balance:A1:c1"] == 4
        assert "tok-secret-2" not in repr(rows)
    with FlakyHttp(failure_rate=1.0, failures=("slow",), slow_seconds=0.5) as slow:
        channel = SmsChannel(SmsGateway(url=slow.url, timeout=0.2))
        outcome, rows = run(channel, message(), RetryPolicy(2, 0.01, 0.01))
        assert outcome.status == "failed" and [r[2] for r in rows] == ["timeout", "timeout"]
    with FlakyHttp(failure_rate=1.0, failures=("drop",)) as dropping:
        channel = SmsChannel(SmsGateway(url=dropping.url, timeout=2))
        outcome, rows = run(channel, message(), RetryPolicy(2, 0.01, 0.01))
        assert [r[1] for r in rows] == ["retrying", "failed"]
        assert all(r[2].startswith("connection error") for r in rows)


def test_no_retry_on_other_4xx() -> None:
    with FlakyHttp(status=400) as gateway:
        outcome, rows = run(SmsChannel(SmsGateway(url=gateway.url)), message())
        assert outcome.status == "failed" and rows == [(1, "failed", "HTTP 400")]
        assert sum(gateway.log.hits.values()) == 1


def test_429_retry_after_is_honoured() -> None:
    with FlakyHttp(status=429, retry_after="1") as gateway:
        waits: list[float] = []
        stop = threading.Event()
        original = stop.wait

        def wait(seconds: float) -> bool:
            waits.append(seconds)
            return original(0)

        stop.wait = wait  # observe the waits the delivery loop asks for
        rows: list[Attempt] = []
        policy = RetryPolicy(3, 0.01, 0.02)
        deliver(
            SmsChannel(SmsGateway(url=gateway.url)),
            message(),
            policy,
            record=rows.append,
            stop=stop,
        )
        assert waits == [1.0, 1.0]  # Retry-After, not the 10–20 ms backoff
        assert [r.status for r in rows] == ["retrying", "retrying", "failed"]


def test_webhook_is_signed_the_standard_webhooks_way() -> None:
    with FlakyHttp(key_header="webhook-id") as receiver:
        channel = WebhookChannel(WebhookTarget(url=receiver.url, secret=SECRET, timeout=2))
        outcome, _ = run(channel, message())
        assert outcome.status == "delivered"
        (received,) = receiver.log.accepted
        headers = {k.lower(): v for k, v in received.headers.items()}
        payload = Webhook(SECRET).verify(received.body, headers)  # raises if the signature is bad
        assert headers["webhook-id"] == "low_balance:A1:c1"
        assert payload["type"] == "notification.low_balance"
        assert payload["data"]["text"] == message().text
        tampered = received.body.replace(b"12.34", b"99.99")
        try:
            Webhook(SECRET).verify(tampered, headers)
        except Exception as err:  # noqa: BLE001 - the library's verification error
            assert "signature" in str(err).lower()
        else:
            raise AssertionError("a tampered body verified")


def test_email_over_smtp_with_a_retry_on_451() -> None:
    with SmtpReceiver(failure_rate=0.0) as smtp:
        channel = EmailChannel(SmtpServer(host="127.0.0.1", port=smtp.port, sender="bill@ex.test"))
        outcome, rows = run(channel, message())
        assert outcome.status == "delivered"
        (received,) = smtp.log.accepted
        assert received.key == "low_balance:A1:c1"
        assert received.headers["To"] == "a1@example.test"
        assert received.body.decode("utf-8").strip() == message().text
    with SmtpReceiver(failure_rate=1.0) as refusing:
        channel = EmailChannel(SmtpServer(host="127.0.0.1", port=refusing.port))
        outcome, rows = run(channel, message(), RetryPolicy(2, 0.01, 0.01))
        assert rows == [(1, "retrying", "SMTP 451"), (2, "failed", "SMTP 451")]
