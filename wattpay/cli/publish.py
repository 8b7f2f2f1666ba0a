"""``wattpay topup`` and ``wattpay account …``: validate, then publish (SPEC S2, S11)."""

from __future__ import annotations

import argparse
import json
import sys
import uuid
from datetime import datetime

from config.settings import Settings
from wattpay.cli.common import settings_from_args as _settings

PUBLISH_TIMEOUT = 15.0
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


def _input_problem(settings: Settings, topic: str, message: dict[str, object]) -> str | None:
    """Why the billing engine would reject ``message`` on its face (S14.2), or None."""
    from billing.engine import valid_topup_amount
    from billing.messages import Envelope, Malformed, TopUp, parse_message
    from billing.outputs import json_default

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
    from sinks.kafka import DeliveryError, JsonProducer, KafkaException, encode_json, kafka_config

    settings = _settings(args)
    command = " ".join(["wattpay", args.command, *([args.event] if "event" in args else [])])
    if message.get("ts") is None:
        message["ts"] = _now_text(settings)
    problem = _input_problem(settings, topic, message)
    if problem is not None:
        print(f"{command}: refused, nothing published: {problem}", file=sys.stderr)
        return 2
    try:
        config = kafka_config(settings)
    except ValueError:
        print(f"{command}: {NO_BROKERS}", file=sys.stderr)
        return 2
    full_topic, key = settings.topic(topic), str(message["account_id"])
    producer = JsonProducer(
        {"message.timeout.ms": str(int(args.timeout * 1000)), **config},
        flush_timeout=args.timeout + 5,
    )
    try:
        producer.send(full_topic, key, message)
        producer.flush()
    except (DeliveryError, KafkaException) as err:
        print(f"{command}: not published to {full_topic}: {err}", file=sys.stderr)
        return 1
    finally:
        producer.close()
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
    return _publish(args, "payments", message)


def cmd_account(args: argparse.Namespace) -> int:
    """Publish an account event (open, close or update) to the accounts topic."""
    if args.event == "update" and all(
        getattr(args, name) is None for name in ("threshold", "auto_topup", "phone", "locale")
    ):
        print("wattpay account update: nothing to update, nothing published", file=sys.stderr)
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
            "locale": "locale",
            "district": "district",
            "landlord": "landlord_id",
            "final_kwh": "final_kwh",
        },
    )
    if getattr(args, "auto_topup", None) is not None:
        message["auto_topup_amount"] = None if args.auto_topup == "off" else args.auto_topup
    return _publish(args, "accounts", message)


def add_publish_commands(commands: argparse._SubParsersAction) -> None:
    """``wattpay topup`` and ``wattpay account open|close|update`` (S2 inputs, S11)."""

    def with_brokers(sub: argparse.ArgumentParser) -> argparse.ArgumentParser:
        sub.add_argument("--brokers", metavar="HOST:PORT,…", help="env WATTPAY_BROKERS")
        sub.add_argument("--ts", help="ISO-8601 with offset (default: now, billing time zone)")
        sub.add_argument(
            "--timeout", type=float, default=PUBLISH_TIMEOUT, help="seconds to wait for delivery"
        )
        return sub

    topup = with_brokers(commands.add_parser("topup", help=cmd_topup.__doc__))
    topup.add_argument("account")
    topup.add_argument("amount", help="yuan, a decimal such as 100.00")
    topup.add_argument("--channel", default="app", help="app, alipay, wechat, bank or counter")
    topup.add_argument("--payment-id", help="idempotency id (default: a new unique id)")
    topup.add_argument("--request-id", help="the auto top-up request this payment answers")
    topup.set_defaults(handler=cmd_topup)

    account = commands.add_parser("account", help=cmd_account.__doc__)
    events = account.add_subparsers(dest="event", required=True)
    opening = with_brokers(events.add_parser("open", help="open an account"))
    opening.add_argument("account")
    opening.add_argument("--meter", required=True)
    opening.add_argument("--plan", required=True, help="e.g. zhejiang-tiered, zhejiang-tou")
    opening.add_argument("--opening-balance", help="yuan (default 0.00)")
    opening.add_argument("--ytd-kwh", help="kWh already used this tier year (default 0)")
    update = with_brokers(events.add_parser("update", help="change an account's settings"))
    update.add_argument("account")
    for event in (opening, update):
        event.add_argument("--threshold", help="low-balance alert threshold, yuan")
        event.add_argument("--auto-topup", help="auto top-up amount in yuan, or 'off'")
        event.add_argument("--phone")
        event.add_argument("--locale", help="e.g. zh-CN")
    opening.add_argument("--district")
    opening.add_argument("--landlord")
    close = with_brokers(events.add_parser("close", help="move-out settlement"))
    close.add_argument("account")
    close.add_argument("--final-kwh", help="a last register reading, kWh")
    account.set_defaults(handler=cmd_account)
