"""Read-only HTTP query endpoint of a running ``wattpay up`` (for ``wattpay sql``).

``GET /query?sql=SELECT…&format=json|csv|table`` runs one read-only statement on the
instance's ClickHouse (the embedded one can only be opened by the process that writes it).
Bound to 127.0.0.1 by default.
"""

from __future__ import annotations

import json
import threading
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlparse

from sinks.clickhouse import ClickHouseError, ClickHouseStore
from wattpay.sqlformat import FORMATS, format_result

CONTENT_TYPES = {"json": "application/json", "csv": "text/csv", "table": "text/plain"}


def serve_queries(
    store: ClickHouseStore, host: str = "127.0.0.1", port: int = 8124
) -> ThreadingHTTPServer:
    """Start the endpoint in a daemon thread; ``shutdown()`` the returned server to stop it."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - the http.server hook name
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
                columns, rows = store.query_readonly(sql)
            except (ValueError, ClickHouseError) as err:
                body = json.dumps({"error": str(err)})
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
    threading.Thread(target=server.serve_forever, name="query-endpoint", daemon=True).start()
    return server
