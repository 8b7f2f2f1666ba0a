"""Serving the web app with uvicorn, in the foreground or as a thread of ``wattpay up``.

Inside ``up`` the app must run in the process that owns the embedded ClickHouse (SPEC S1).
"""

from __future__ import annotations

import logging
import os
import threading
from pathlib import Path

import uvicorn

from store.clickhouse import ClickHouseStore
from web.app import WebOptions, create_app
from web.reads import Reader
from web.sources import CommandOutcomes

DEFAULT_PORT = 8080
log = logging.getLogger(__name__)


def url_of(options: WebOptions) -> str:
    """The address people open (IPv6 literals bracketed)."""
    host = f"[{options.host}]" if ":" in options.host else options.host
    return f"http://{host}:{options.port}"


class WebServer:
    """uvicorn serving the app on its own thread; `stop` ends it."""

    def __init__(self, app: object, options: WebOptions) -> None:
        config = uvicorn.Config(
            app,  # type: ignore[arg-type]
            host=options.host,
            port=options.port,
            log_level="warning",
            access_log=False,
            lifespan="off",
            server_header=False,
        )
        self.server = uvicorn.Server(config)
        self.url = url_of(options)
        self.thread = threading.Thread(target=self.server.run, name="web", daemon=True)

    def start(self) -> WebServer:
        """Start serving and wait until the socket listens (or the server gave up)."""
        self.thread.start()
        while not self.server.started and self.thread.is_alive():
            self.thread.join(0.05)
        if not self.server.started:
            raise OSError(f"the web app could not listen on {self.url}")
        return self

    def stop(self) -> None:
        """Finish open requests and stop."""
        self.server.should_exit = True
        self.thread.join(10)


def options_from_env(host: str) -> WebOptions:
    """Web options of ``wattpay up`` from ``WATTPAY_WEB_*``.

    ``PORT`` (8080), ``TOKEN``, ``REQUIRE_TOKEN`` (1/true), ``ALLOWED_HOSTS`` (Host header
    names besides the bind address, comma-separated; ``*`` for any) and ``DOCUMENTS``.
    """
    token = os.environ.get("WATTPAY_WEB_TOKEN") or None
    documents = os.environ.get("WATTPAY_WEB_DOCUMENTS")
    hosts = os.environ.get("WATTPAY_WEB_ALLOWED_HOSTS", "")
    return WebOptions(
        allowed_hosts=tuple(h.strip() for h in hosts.split(",") if h.strip()),
        host=os.environ.get("WATTPAY_WEB_HOST", host),
        port=int(os.environ.get("WATTPAY_WEB_PORT", DEFAULT_PORT)),
        token=token,
        require_token=os.environ.get("WATTPAY_WEB_REQUIRE_TOKEN", "") in ("1", "true"),
        documents=Path(documents) if documents else None,
    )


def serve_web(
    store: ClickHouseStore,
    options: WebOptions,
    outcomes: CommandOutcomes,
    stop: threading.Event,
) -> WebServer | None:
    """Serve the web app on a thread until ``stop`` is set (``wattpay up``'s web service).

    On a non-loopback address without a token the pages are not served (the caller runs
    on; the log says why).
    """
    if options.token_required and not options.token:
        log.error(
            "web pages not served: on %s they need an access token (set WATTPAY_WEB_TOKEN)",
            options.host,
        )
        return None
    outcomes.start(stop)
    return WebServer(create_app(Reader.of_store(store), options, outcomes), options).start()


def serve_foreground(
    dsn: str, options: WebOptions, brokers: dict[str, str] | None, topic: str
) -> None:
    """``wattpay web``: serve against a ClickHouse DSN until interrupted."""
    stop = threading.Event()
    outcomes = CommandOutcomes(brokers, topic)
    outcomes.start(stop)
    with ClickHouseStore(dsn) as store:
        app = create_app(Reader.of_store(store), options, outcomes)
        config = uvicorn.Config(
            app,  # type: ignore[arg-type]
            host=options.host,
            port=options.port,
            log_level="warning",
            lifespan="off",
            server_header=False,
        )
        try:
            uvicorn.Server(config).run()
        finally:
            stop.set()
