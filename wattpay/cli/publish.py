"""``wattpay topup``, ``account …`` and ``publish``: validate, then publish (SPEC S2, S11)."""

from __future__ import annotations

import argparse
import json
import sys
import uuid
from collections.abc import Callable
from datetime import datetime
from typing import TYPE_CHECKING

from billing.messages import ACCOUNTS, PAYMENTS, READINGS
from config.settings import Settings
from wattpay.cli.common import add_command
from wattpay.cli.common import settings_from_args as _settings

if TYPE_CHECKING:
    from bus.kafka import JsonProducer

PUBLISH_TIMEOUT = 15.0
PUBLISHABLE = (READINGS, PAYMENTS, ACCOUNTS)
NO_BROKERS = (
    "no Kafka brokers configured: pass --brokers HOST:PORT or set WATTPAY_BROKERS "
    "(the embedded broker runs only inside `wattpay up`)"
)


def _now_text(settings: Settings) -> str:
    """Now in the billing time zone, to the second, with its offset."""
    return datetime.now(settings.rules.zone).replace(microsecond=0).isoformat()


def _put_optional(
    message: dict[str, object], args: argparse.Namespace, names: dict[str, str]
) -> None:
    """Copy the options that were given (argparse name → message field)."""
    for option, field_name in names.items():
        value = getattr(args, option, None)
        if value is not None:
            message[field_name] = value


def _negative_amounts(args: argparse.Namespace) -> str | None:
    """Why a threshold or auto top-up amount given on the command line is unusable, or None."""
    from decimal import Decimal, InvalidOperation

    for option, name in (("threshold", "--threshold"), ("auto_topup", "--auto-topup")):
        text = getattr(args, option, None)
        if text is None or (option == "auto_topup" and text == "off"):
            continue
        try:
            amount = Decimal(text)
        except InvalidOperation:
            return f"{name} must be an amount in yuan such as 20.00, not {text!r}"
        if not amount.is_finite() or amount < 0:
            return f"{name} must be zero or more yuan, not {text}"
    return None


def _input_problem(settings: Settings, topic: str, message: dict[str, object]) -> str | None:
    """Why the billing engine would reject ``message`` on its face (S14.2), or None."""
    from billing.messages import Envelope, Malformed, TopUp, parse_message
    from billing.outputs import json_default
    from billing.payments import valid_topup_amount

    # ASCII escapes: an argument that is not UTF-8 (a lone surrogate) is refused, not raised on.
    raw = json.dumps(message, ensure_ascii=True, default=json_default)
    envelope = Envelope.decode(topic, "cli", raw, datetime.now(settings.rules.zone))
    try:
        parsed = parse_message(envelope, settings.rules)
    except Malformed as err:
        return f"malformed: {err}"
    if isinstance(parsed, TopUp) and not valid_topup_amount(parsed.amount, settings.rules):
        limit = settings.rules.max_topup
        return f"invalid_amount: {parsed.amount} must be > 0, ≤ {limit}, at most 2 decimals"
    return None


def _publish(args: argparse.Namespace, topic: str, message: dict[str, object]) -> int:
    """Validate one input message, publish it keyed by account and wait for delivery."""
    from bus.kafka import encode_json

    settings = _settings(args)
    command = " ".join(["wattpay", args.command, *([args.event] if "event" in args else [])])
    if message.get("ts") is None:
        message["ts"] = _now_text(settings)
    problem = _input_problem(settings, topic, message)
    if problem is not None:
        print(f"{command}: refused, nothing published: {problem}", file=sys.stderr)
        return 2
    full_topic, key = settings.topic(topic), str(message["account_id"])
    code = _deliver(settings, args, command, full_topic, lambda p: p.send(full_topic, key, message))
    if code:
        return code
    print(encode_json(message).decode("utf-8"))
    print(f"{command}: delivered to {full_topic} (key {key})", file=sys.stderr)
    return 0


def cmd_topup(args: argparse.Namespace) -> int:
    """Publish a top-up to the payments topic."""
    message: dict[str, object] = {
        "type": "topup",
        "payment_id": args.payment_id or f"cli-{uuid.uuid4().hex}",
        "account_id": args.account,
        "amount": args.amount,
        "channel": args.channel,
        "ts": args.ts,
    }
    _put_optional(message, args, {"request_id": "request_id"})
    return _publish(args, PAYMENTS, message)


def cmd_account(args: argparse.Namespace) -> int:
    """Publish an account event (open, close or update) to the accounts topic."""
    if args.event == "update" and all(
        getattr(args, name) is None
        for name in ("threshold", "auto_topup", "phone", "email", "locale")
    ):
        print("wattpay account update: nothing to update, nothing published", file=sys.stderr)
        return 2
    problem = _negative_amounts(args)
    if problem is not None:
        command = f"wattpay account {args.event}"
        print(f"{command}: refused, nothing published: {problem}", file=sys.stderr)
        return 2
    message: dict[str, object] = {"type": args.event, "account_id": args.account}
    if args.event == "open":
        message.update(meter_id=args.meter, plan=args.plan)
    message["ts"] = args.ts
    _put_optional(
        message,
        args,
        {
            "opening_balance": "opening_balance",
            "ytd_kwh": "ytd_kwh",
            "threshold": "low_balance_threshold",
            "phone": "phone",
            "email": "email",
            "locale": "locale",
            "district": "district",
            "landlord": "landlord_id",
            "final_kwh": "final_kwh",
        },
    )
    if getattr(args, "auto_topup", None) is not None:
        message["auto_topup_amount"] = None if args.auto_topup == "off" else args.auto_topup
    return _publish(args, ACCOUNTS, message)


MAX_INPUT_BYTES = 64 * 1024 * 1024
MAX_PROBLEMS_SHOWN = 10


def read_input(source: str) -> bytes:
    """The bytes of FILE, or of standard input for ``-``; OSError when it cannot be read."""
    if source == "-":
        return sys.stdin.buffer.read(MAX_INPUT_BYTES + 1)
    with open(source, "rb") as handle:
        return handle.read(MAX_INPUT_BYTES + 1)


def with_ts(line: str, ts: str) -> str:
    """A JSON object's text with ``"ts"`` put first; the rest of the text is kept as written."""
    body = line.lstrip()[1:].lstrip()
    stamp = '{"ts": ' + json.dumps(ts)
    return stamp + "}" if body.startswith("}") else stamp + ", " + body


def input_lines(
    settings: Settings, topic: str, data: bytes, ts: str
) -> tuple[list[tuple[str, bytes]], list[str]]:
    """(key, payload) of the lines billing would accept on their face, and why the others not.

    Blank lines are skipped; a reason reads ``line N: reason``. A line without ``ts`` gets
    ``ts``; the rest of a line is sent as written.
    """
    from billing.messages import Envelope, Malformed, TopUp, parse_message
    from billing.payments import valid_topup_amount
    from bus.topics import topic as catalogue_topic

    key_field = catalogue_topic(topic).key
    good: list[tuple[str, bytes]] = []
    problems: list[str] = []
    now = datetime.now(settings.rules.zone)
    for number, raw in enumerate(data.split(b"\n"), 1):
        if not raw.strip():
            continue
        envelope = Envelope.decode(topic, f"line {number}", raw.strip(), now)
        payload = envelope.payload
        if isinstance(payload, dict) and "ts" not in payload and not envelope.raw_base64:
            envelope = Envelope.decode(topic, envelope.position, with_ts(envelope.raw, ts), now)
        try:
            parsed = parse_message(envelope, settings.rules)
        except Malformed as err:
            problems.append(f"line {number}: malformed: {err}")
            continue
        if isinstance(parsed, TopUp) and not valid_topup_amount(parsed.amount, settings.rules):
            problems.append(f"line {number}: invalid_amount: {parsed.amount}")
            continue
        key = envelope.payload.get(key_field)
        if not isinstance(key, str) or not key:
            problems.append(f"line {number}: malformed: {key_field} must be a non-empty string")
            continue
        good.append((key, envelope.raw.encode("utf-8")))
    return good, problems


def cmd_publish(args: argparse.Namespace) -> int:
    """Publish JSON lines to an input topic, keyed as the topic is (meter or account id)."""
    command = f"wattpay publish {args.topic}"
    settings = _settings(args)
    try:
        data = read_input(args.file)
    except OSError as err:
        print(f"{command}: cannot read {args.file}: {err.strerror or err}", file=sys.stderr)
        return 2
    if len(data) > MAX_INPUT_BYTES:
        limit = MAX_INPUT_BYTES // (1024 * 1024)
        print(f"{command}: refused, nothing published: more than {limit} MiB", file=sys.stderr)
        return 2
    messages, problems = input_lines(settings, args.topic, data, args.ts or _now_text(settings))
    if problems or not messages:
        for problem in problems[:MAX_PROBLEMS_SHOWN]:
            print(f"{command}: {problem}", file=sys.stderr)
        if len(problems) > MAX_PROBLEMS_SHOWN:
            print(f"{command}: … {len(problems) - MAX_PROBLEMS_SHOWN} more", file=sys.stderr)
        why = f"{len(problems)} of {len(problems) + len(messages)} lines would be rejected"
        reason = why if problems else "no JSON lines in the input"
        print(f"{command}: refused, nothing published: {reason}", file=sys.stderr)
        return 2
    full_topic = settings.topic(args.topic)

    def send_all(producer: JsonProducer) -> None:
        for key, payload in messages:
            producer.send_encoded(full_topic, key, payload)

    code = _deliver(settings, args, command, full_topic, send_all)
    if code:
        return code
    print(f"{command}: {len(messages)} delivered to {full_topic}", file=sys.stderr)
    return 0


def _deliver(
    settings: Settings,
    args: argparse.Namespace,
    command: str,
    full_topic: str,
    send: Callable[[JsonProducer], None],
) -> int:
    """Open a producer, ``send`` through it and wait for delivery.

    Returns 0 when everything was delivered, 1 when not (said on stderr), 2 with no broker.
    """
    from bus.kafka import DeliveryError, JsonProducer, KafkaException, kafka_config

    try:
        config = kafka_config(settings)
    except ValueError:
        print(f"{command}: {NO_BROKERS}", file=sys.stderr)
        return 2
    producer = JsonProducer(
        {"message.timeout.ms": str(int(args.timeout * 1000)), **config},
        flush_timeout=args.timeout + 5,
    )
    try:
        send(producer)
        producer.flush()
    except (DeliveryError, KafkaException) as err:
        print(f"{command}: not every message was delivered to {full_topic}: {err}", file=sys.stderr)
        return 1
    finally:
        producer.close()
    return 0


def add_publish_commands(commands: argparse._SubParsersAction) -> None:
    """``wattpay topup`` and ``wattpay account open|close|update``."""

    def with_brokers(sub: argparse.ArgumentParser) -> argparse.ArgumentParser:
        sub.add_argument(
            "--brokers",
            metavar="HOST:PORT,…",
            help="Kafka bootstrap servers (env WATTPAY_BROKERS; default: a running wattpay up)",
        )
        sub.add_argument(
            "--ts",
            metavar="TIME",
            help="ISO-8601 time with offset (default: now in the billing time zone)",
        )
        sub.add_argument(
            "--timeout",
            type=float,
            default=PUBLISH_TIMEOUT,
            metavar="SECONDS",
            help="seconds to wait for delivery (default: %(default)s)",
        )
        return sub

    topup = with_brokers(
        add_command(
            commands,
            "topup",
            "publish a top-up to the payments topic",
            """
            wattpay topup H0001 100.00
            wattpay topup H0001 500.00 --channel alipay --payment-id PAY-20260302-0001
            wattpay topup H0001 100.00 --ts 2026-03-02T09:30:00+08:00
            """,
            description="Check a top-up the way the billing would, then publish it to the "
            "payments topic keyed by account and wait until Kafka confirms it. A refused "
            "top-up is reported and nothing is published.",
        )
    )
    topup.add_argument("account", help="account id")
    topup.add_argument("amount", help="yuan, a decimal such as 100.00")
    topup.add_argument(
        "--channel",
        default="app",
        help="app, alipay, wechat, bank or counter (default: %(default)s)",
    )
    topup.add_argument("--payment-id", help="idempotency id (default: a new unique id)")
    topup.add_argument("--request-id", help="the auto top-up request this payment answers")
    topup.set_defaults(handler=cmd_topup)

    account = add_command(
        commands,
        "account",
        "publish an account event (open, update or close) to the accounts topic",
        """
        wattpay account open H0001 --meter SM00001 --plan zhejiang-tiered --opening-balance 50.00
        wattpay account update H0001 --threshold 30.00 --auto-topup 100.00
        wattpay account close H0001 --final-kwh 1234.567
        """,
    )
    events = account.add_subparsers(
        dest="event", required=True, metavar="EVENT", help="what happens to the account"
    )
    opening = with_brokers(
        add_command(
            events,
            "open",
            "open an account for a meter",
            """
            wattpay account open H0001 --meter SM00001 --plan zhejiang-tiered
            wattpay account open H0002 --meter SM00002 --plan zhejiang-tou --opening-balance 100.00
            """,
        )
    )
    opening.add_argument("account", help="account id")
    opening.add_argument("--meter", required=True, help="meter id")
    opening.add_argument(
        "--plan", required=True, help="tariff plan, e.g. zhejiang-tiered, zhejiang-tou"
    )
    opening.add_argument("--opening-balance", metavar="YUAN", help="yuan (default 0.00)")
    opening.add_argument(
        "--ytd-kwh", metavar="KWH", help="kWh already used this tier year (default 0)"
    )
    update = with_brokers(
        add_command(
            events,
            "update",
            "change an account's alert threshold, auto top-up, phone, e-mail or locale",
            """
            wattpay account update H0001 --threshold 30.00
            wattpay account update H0001 --auto-topup off
            """,
        )
    )
    update.add_argument("account", help="account id")
    for event in (opening, update):
        event.add_argument("--threshold", metavar="YUAN", help="low-balance alert threshold")
        event.add_argument(
            "--auto-topup", metavar="YUAN|off", help="auto top-up amount in yuan, or 'off'"
        )
        event.add_argument("--phone", help="mobile number for notifications")
        event.add_argument("--email", help="e-mail address for notifications (the email channel)")
        event.add_argument("--locale", help="notification language, e.g. zh-CN")
    opening.add_argument("--district", help="district, for reports")
    opening.add_argument("--landlord", help="landlord id, for landlord reports")
    close = with_brokers(
        add_command(
            events,
            "close",
            "close an account: move-out settlement",
            """
            wattpay account close H0001
            wattpay account close H0001 --final-kwh 1234.567 --ts 2026-03-31T18:00:00+08:00
            """,
        )
    )
    close.add_argument("account", help="account id")
    close.add_argument("--final-kwh", metavar="KWH", help="a last register reading, kWh")
    account.set_defaults(handler=cmd_account)

    publish = with_brokers(
        add_command(
            commands,
            "publish",
            "publish JSON lines (readings, payments, account events) to an input topic",
            """
            echo '{"meter_id": "M1", "energy_kwh": "1234.560"}' | wattpay publish readings -
            wattpay publish readings readings.jsonl
            wattpay publish payments payments.jsonl --brokers 127.0.0.1:9092
            """,
            description="Read one JSON message a line from FILE (or standard input for -), "
            "check every line the way the billing would, then publish them to the topic keyed "
            "as it is keyed (readings by meter_id, the others by account_id) and wait until "
            "Kafka confirms them. A line without ts gets the time of --ts (default: now). If "
            "any line would be rejected, each is reported with its line number and nothing is "
            "published.",
        )
    )
    publish.add_argument(
        "topic", choices=PUBLISHABLE, metavar="TOPIC", help=f"one of {', '.join(PUBLISHABLE)}"
    )
    publish.add_argument("file", metavar="FILE|-", help="JSON lines; - reads standard input")
    publish.set_defaults(handler=cmd_publish)
