"""Read-only HTTP query endpoint of a running ``wattpay up`` (for ``wattpay sql``).

``GET /query?sql=SELECT…&format=json|csv|table`` runs one analyst's statement on the
instance's ClickHouse (the embedded one can only be opened by the process that writes it),
through the same locked-down path as ``wattpay sql`` (`ClickHouseStore.query_readonly`).
Bound to 127.0.0.1 by default. Requests must name this server in ``Host`` (a loopback name or
the bound address: a web page cannot reach it through DNS rebinding), and carry
``Authorization: Bearer TOKEN`` when a token is configured, which it must be to bind beyond
loopback.
"""

from __future__ import annotations

import hmac
import ipaddress
import json
import socket
import threading
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlparse

from config.errors import OperatorError
from store.clickhouse import ClickHouseError, ClickHouseStore, QueryLimits
from wattpay.sqlformat import FORMATS, format_result

CONTENT_TYPES = {"json": "application/json", "csv": "text/csv", "table": "text/plain"}
LOOPBACK_NAMES = frozenset({"localhost", "127.0.0.1", "::1", "[::1]"})


def is_loopback(host: str) -> bool:
    """Whether ``host`` (a name or address) stays on this machine."""
    if host.strip("[]").lower() in {"localhost", "::1"}:
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def require_token_beyond_loopback(host: str, token: str) -> None:
    """Refuse to serve queries beyond loopback without a token (OperatorError)."""
    if not is_loopback(host) and not token:
        raise OperatorError(
            f"the query endpoint would listen on {host} without a token: set [query] token "
            "in the config file or WATTPAY_QUERY_TOKEN, or keep --host 127.0.0.1"
        )


def allowed_hosts(host: str, port: int) -> frozenset[str]:
    """The ``Host`` header values this server answers to (with and without the port)."""
    names = set(LOOPBACK_NAMES) | {host, f"[{host}]"}
    if host in {"0.0.0.0", "::", ""}:  # noqa: S104 - listing the wildcard, not binding it
        names |= {socket.gethostname(), socket.getfqdn()}
        try:
            names |= set(socket.gethostbyname_ex(socket.gethostname())[2])
        except OSError:
            pass
    return frozenset(names | {f"{name}:{port}" for name in names})


def serve_queries(
    store: ClickHouseStore,
    host: str = "127.0.0.1",
    port: int = 8124,
    *,
    token: str = "",
    limits: QueryLimits | None = None,
) -> ThreadingHTTPServer:
    """Start the endpoint in a daemon thread; ``shutdown()`` the returned server to stop it."""
    require_token_beyond_loopback(host, token)
    expected = f"Bearer {token}".encode()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - the http.server hook name
            if self.headers.get("Host", "").lower() not in hosts:
                self._reply(HTTPStatus.FORBIDDEN, "text/plain", "unexpected Host header\n")
                return
            given = self.headers.get("Authorization", "").encode()
            if token and not hmac.compare_digest(given, expected):
                self._reply(HTTPStatus.UNAUTHORIZED, "text/plain", "a bearer token is needed\n")
                return
            url = urlparse(self.path)
            if url.path == "/health":
                self._reply(HTTPStatus.OK, "text/plain", "ok\n")
                return
            if url.path != "/query":
                self._reply(HTTPStatus.NOT_FOUND, "text/plain", "try /query?sql=SELECT…\n")
                return
            params = parse_qs(url.query)
            sql = params.get("sql", [""])[0]
            fmt = params.get("format", ["json"])[0]
            if fmt not in FORMATS:
                self._reply(
                    HTTPStatus.BAD_REQUEST, "text/plain", f"format must be one of {FORMATS}\n"
                )
                return
            try:
                columns, rows = store.query_readonly(sql, limits)
            except (ValueError, ClickHouseError) as err:
                body = json.dumps({"error": " ".join(str(err).split())})
                self._reply(HTTPStatus.BAD_REQUEST, "application/json", body + "\n")
                return
            self._reply(HTTPStatus.OK, CONTENT_TYPES[fmt], format_result(columns, rows, fmt))

        def _reply(self, status: HTTPStatus, content_type: str, body: str) -> None:
            data = body.encode("utf-8")
            self.send_response(status)
            self.send_header("Content-Type", f"{content_type}; charset=utf-8")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, format: str, *args: object) -> None:  # noqa: A002
            return

    server = ThreadingHTTPServer((host, port), Handler)
    hosts = allowed_hosts(host, server.server_address[1])
    threading.Thread(target=server.serve_forever, name="query-endpoint", daemon=True).start()
    return server
