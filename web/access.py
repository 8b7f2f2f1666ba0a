"""Who may read (SPEC S17.5): loopback by default, a token elsewhere, Host checked, GET only.

The token is accepted as ``Authorization: Bearer …``, as a ``wattpay_token`` cookie, or once
as ``?token=…`` on a page, which then sets the cookie so the page's own refreshes carry it.
"""

from __future__ import annotations

import hmac
import ipaddress
from collections.abc import Awaitable, Callable, Iterable
from http.cookies import SimpleCookie
from urllib.parse import parse_qs

Scope = dict
Receive = Callable[[], Awaitable[dict]]
Send = Callable[[dict], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

COOKIE = "wattpay_token"
READ_METHODS = ("GET", "HEAD")
LOOPBACK_NAMES = ("localhost", "127.0.0.1", "::1", "[::1]")


def is_loopback(host: str) -> bool:
    """True for an address (or ``localhost``) that only this machine can reach."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def allowed_host_names(bind: str, extra: Iterable[str] = ()) -> frozenset[str]:
    """Host header names accepted: the bind address, loopback names, and configured ones."""
    names = {bind.lower(), *(h.lower() for h in extra)}
    if is_loopback(bind):
        names.update(LOOPBACK_NAMES)
    return frozenset(names)


def _host_name(value: str) -> str:
    """The name part of a Host header (``[::1]:8080`` → ``[::1]``, ``a:80`` → ``a``)."""
    if value.startswith("["):
        return value[: value.find("]") + 1].lower()
    return value.rsplit(":", 1)[0].lower() if value.count(":") == 1 else value.lower()


class AccessControl:
    """ASGI middleware enforcing the read-only, host and token rules before any handler runs."""

    def __init__(self, app: ASGIApp, *, hosts: frozenset[str], token: str | None) -> None:
        self.app = app
        self.hosts = hosts
        self.token = token

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        if scope["method"] not in READ_METHODS:
            await _reply(send, 405, "read only: GET and HEAD only\n", [("allow", "GET, HEAD")])
            return
        if "*" not in self.hosts and _host_name(headers.get("host", "")) not in self.hosts:
            await _reply(
                send,
                400,
                "unknown Host header (allow it with wattpay web --allowed-host NAME "
                "or WATTPAY_WEB_ALLOWED_HOSTS)\n",
            )
            return
        if self.token is None:
            await self.app(scope, receive, send)
            return
        given, from_query = _presented(scope, headers)
        if given is None or not hmac.compare_digest(given.encode(), self.token.encode()):
            await _reply(
                send, 401, "an access token is required\n", [("www-authenticate", "Bearer")]
            )
            return
        if not from_query:
            await self.app(scope, receive, send)
            return
        cookie = f"{COOKIE}={self.token}; Path=/; HttpOnly; SameSite=Strict"

        async def with_cookie(message: dict) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message["headers"], (b"set-cookie", cookie.encode())]
            await send(message)

        await self.app(scope, receive, with_cookie)


def _presented(scope: Scope, headers: dict[str, str]) -> tuple[str | None, bool]:
    """The token the request carries, and whether it came in the query string."""
    auth = headers.get("authorization", "")
    if auth.lower().startswith("bearer "):
        return auth[7:].strip(), False
    if "cookie" in headers:
        jar = SimpleCookie()
        jar.load(headers["cookie"])
        if COOKIE in jar:
            return jar[COOKIE].value, False
    query = parse_qs(scope.get("query_string", b"").decode("latin-1"))
    if "token" in query:
        return query["token"][0], True
    return None, False


async def _reply(
    send: Send, status: int, text: str, headers: list[tuple[str, str]] | None = None
) -> None:
    body = text.encode()
    raw = [
        (b"content-type", b"text/plain; charset=utf-8"),
        (b"content-length", str(len(body)).encode()),
    ]
    raw += [(k.encode(), v.encode()) for k, v in headers or []]
    await send({"type": "http.response.start", "status": status, "headers": raw})
    await send({"type": "http.response.body", "body": body})
