"""``wattpay notify``: the notification worker of SPEC S16 as a command."""

from __future__ import annotations

import argparse
import json
import logging
import signal
import sys
import threading
from pathlib import Path

from wattpay.cli.common import add_command, settings_from_args

EXAMPLES = """
  wattpay notify                                  # next to a running wattpay up
  wattpay notify --brokers 127.0.0.1:9092 --metrics-port 9466
  wattpay --config wattpay.toml notify --group notify-prod
  wattpay notify --log-file notifications.log    # the log channel also writes here
"""
DESCRIPTION = """\
Render notifications and deliver them by SMS, email and webhook.

Channels and routes come from the [notify] section of the settings (see
"wattpay config --check"); credentials may come from WATTPAY_NOTIFY_SMS_TOKEN,
WATTPAY_NOTIFY_SMTP_PASSWORD and WATTPAY_NOTIFY_WEBHOOK_SECRET and are never printed."""


def cmd_notify(args: argparse.Namespace) -> int:
    """Render notifications and deliver them by SMS, email and webhook."""
    from prometheus_client import start_http_server

    from bus.kafka import kafka_config
    from notify.metrics import create_notify_metrics
    from notify.worker import NotifyWorker, build_channels

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    settings = settings_from_args(args)
    try:
        config = kafka_config(settings)
    except ValueError as err:
        print(f"wattpay notify: {err}", file=sys.stderr)
        return 2
    routes = {kind: list(channels) for kind, channels in settings.notify.routes.items()}
    print(f"wattpay notify: routes {json.dumps(routes)}", flush=True)
    metrics = create_notify_metrics()
    if args.metrics_port:
        start_http_server(args.metrics_port, addr=args.metrics_host, registry=metrics.registry)
    log_file = Path(args.log_file) if args.log_file else None
    worker = NotifyWorker(
        settings,
        config,
        channels=build_channels(settings, log_file),
        metrics=metrics,
        group=args.group,
    )
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    worker.run(stop)
    print(f"wattpay notify stopped; {worker.events_done} notifications done", flush=True)
    return 0


def add_notify_commands(commands: argparse._SubParsersAction) -> None:
    """Register ``wattpay notify``."""
    notify = add_command(
        commands,
        "notify",
        "render notifications and deliver them by SMS, email and webhook",
        EXAMPLES,
        description=DESCRIPTION,
    )
    notify.add_argument(
        "--brokers", metavar="HOST:PORT,…", help="Kafka bootstrap servers (env WATTPAY_BROKERS)"
    )
    notify.add_argument(
        "--group",
        default="wattpay-notify",
        help="consumer group whose committed offsets record progress (default wattpay-notify)",
    )
    notify.add_argument(
        "--metrics-port", type=int, default=0, help="serve Prometheus metrics on this port (0: off)"
    )
    notify.add_argument(
        "--metrics-host", default="127.0.0.1", help="address of the metrics endpoint (loopback)"
    )
    notify.add_argument(
        "--log-file", help="file the `log` channel appends rendered texts to (default: log only)"
    )
    notify.set_defaults(handler=cmd_notify)
