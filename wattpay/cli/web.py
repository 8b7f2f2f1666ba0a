"""``wattpay web``: the operations dashboard, household and landlord pages and JSON API (S17)."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from wattpay.cli.common import settings_from_args as _settings
from wattpay.documents import (
    prepare_in_background,
    render_bill_on_demand,
    render_invoice_on_demand,
)
from wattpay.notices import notification_texts

EXAMPLES = """\
examples:
  wattpay web --clickhouse chdb://$PWD/.wattpay/demo/clickhouse   # a replay on http://127.0.0.1:8080/
  wattpay web --clickhouse http://reader@ch.example:8123/wattpay --port 8090   # a server
  WATTPAY_WEB_TOKEN=… wattpay web --host 0.0.0.0 --allowed-host billing.example   # token needed
  wattpay web --clickhouse chdb://… --brokers 127.0.0.1:9092   # with relay confirmations
  wattpay up   # serves the same pages itself, on WATTPAY_WEB_PORT (default 8080)
"""


def cmd_web(args: argparse.Namespace) -> int:
    """Serve the web pages and JSON API against a ClickHouse DSN until Ctrl-C."""
    from bus.topics import RESULTS
    from wattpay.instance import running_instance
    from web.app import WebOptions
    from web.server import serve_foreground, url_of

    if not args.clickhouse and not os.environ.get("WATTPAY_CLICKHOUSE_DSN"):
        instance = running_instance()  # its embedded ClickHouse is that process's alone
        if instance is not None and "web" in instance:
            print(f"wattpay up runs here and serves the web app: {instance['web']}/")
            return 0
    settings = _settings(args)
    token = os.environ.get("WATTPAY_WEB_TOKEN") or None
    if args.token_file:
        token = Path(args.token_file).read_text(encoding="utf-8").strip() or None
    options = WebOptions(
        host=args.host,
        port=args.port,
        token=token,
        require_token=args.require_token,
        allowed_hosts=tuple(args.allowed_host or ()),
        documents=Path(args.documents) if args.documents else None,
        render_invoice=render_invoice_on_demand,
        render_bill=render_bill_on_demand,
        notification_text=notification_texts(settings),
        plans=settings.rules.plans,
        plan_names=settings.plan_names,
        metrics_urls=tuple(args.metrics or ()),
        refresh_seconds=args.refresh,
    )
    if options.token_required and not options.token:
        print(
            f"wattpay web: serving on {args.host} needs an access token "
            "(WATTPAY_WEB_TOKEN or --token-file)",
            file=sys.stderr,
        )
        return 2
    brokers = None
    if args.brokers:
        from bus.kafka import kafka_config

        brokers = kafka_config(settings)
    if options.documents is not None:
        prepare_in_background(settings.seller_name)  # the first PDF is then as quick
    print(f"wattpay web on {url_of(options)}/  (Ctrl-C stops)", flush=True)
    serve_foreground(settings.clickhouse_dsn, options, brokers, settings.topic(RESULTS.name))
    return 0


def add_web_commands(commands: argparse._SubParsersAction) -> None:
    """Register ``web`` on the main parser."""
    web = commands.add_parser(
        "web",
        help="serve the web pages and JSON API against a ClickHouse DSN",
        description=cmd_web.__doc__,
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    web.add_argument(
        "--clickhouse",
        metavar="DSN",
        help="chdb:///dir or http(s)://user@host:8123/db (env WATTPAY_CLICKHOUSE_DSN)",
    )
    web.add_argument(
        "--brokers",
        metavar="HOST:PORT,…",
        help="Kafka brokers to read relay outcomes from (optional; env WATTPAY_BROKERS)",
    )
    web.add_argument(
        "--host", default="127.0.0.1", help="address to bind (default 127.0.0.1, loopback only)"
    )
    web.add_argument("--port", type=int, default=8080, help="port to bind (default 8080)")
    web.add_argument(
        "--token-file",
        metavar="FILE",
        help="file holding the access token (else env WATTPAY_WEB_TOKEN); never printed",
    )
    web.add_argument(
        "--require-token",
        action="store_true",
        help="require the token even on a loopback address",
    )
    web.add_argument(
        "--allowed-host",
        action="append",
        metavar="NAME",
        help="a Host header name to accept besides the bind address (repeatable; * for any)",
    )
    web.add_argument(
        "--documents",
        metavar="DIR",
        default=".wattpay/jobs",
        help="where the monthly jobs write invoice PDF/XML files, served by number "
        "(default: %(default)s, where wattpay bills writes them)",
    )
    web.add_argument(
        "--metrics",
        action="append",
        metavar="URL",
        help="a Prometheus endpoint to show lag and message counts from (repeatable)",
    )
    web.add_argument(
        "--refresh", type=int, default=3, help="seconds between live refreshes (default 3)"
    )
    web.set_defaults(handler=cmd_web)
