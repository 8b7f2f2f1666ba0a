"""The Starlette app: pages, fragments for the live refresh, the JSON API and documents."""

from __future__ import annotations

import json
import re
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import date, timedelta
from importlib.resources import files
from pathlib import Path
from typing import Any

from jinja2 import Environment, PackageLoader, select_autoescape
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import FileResponse, HTMLResponse, JSONResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from billing.outputs import json_default
from billing.tariffs import Plan
from store.clickhouse import ClickHouseError
from web import household as households
from web.access import AccessControl, allowed_host_names, is_loopback
from web.analysis import usage_analysis
from web.charts import bar_chart, line_chart
from web.documents import (
    DOCUMENT_TYPES,
    bill_document_inputs,
    bill_pdf_path,
    document_path,
    invoice,
    link_bill_pdfs,
)
from web.i18n import Translator, pick_locale
from web.landlord import landlord
from web.lists import LISTS, MAX_PAGE, account_list, search
from web.operations import operations
from web.reads import Reader, valid_id
from web.sources import CommandOutcomes, scrape

MAX_DAILY_SPAN = 366


def duration(seconds: float) -> str:
    """A lag as people read it: ``4.2 s``, ``12 min``, ``3 h 5 min``, ``28 d 4 h``."""
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes = int(seconds // 60)
    if minutes < 60:
        return f"{minutes} min"
    hours, minutes = divmod(minutes, 60)
    if hours < 24:
        return f"{hours} h {minutes} min"
    days, hours = divmod(hours, 24)
    return f"{days} d {hours} h"


@dataclass
class WebOptions:
    """Where the web app listens and who may read it (S17.5)."""

    host: str = "127.0.0.1"
    port: int = 8080
    token: str | None = None
    require_token: bool = False
    allowed_hosts: tuple[str, ...] = ()
    documents: Path | None = None
    render_invoice: Callable[[dict[str, Any], Path], Path] | None = None
    """Renders an invoice's PDF from its row under ``documents`` (on demand, then kept)."""
    render_bill: Callable[[dict[str, Any], list[int], dict[str, str], Path], Path] | None = None
    """Renders a bill's PDF from its row, daily kWh and contact under ``documents`` (likewise)."""
    notification_text: Callable[[dict[str, Any], str], str | None] | None = None
    """A recorded notification's text in a locale, as the household was sent it."""
    plans: Mapping[str, Plan] | None = None
    """The configured plan catalogue (built-in and ``[plans.ID]``); the built-in one if None."""
    plan_names: Mapping[str, Mapping[str, str]] = field(default_factory=dict)
    """Configured display names of plans: plan id → locale → name (``[plans.ID] name_zh``)."""
    metrics_urls: tuple[str, ...] = ()
    refresh_seconds: int = 3
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def token_required(self) -> bool:
        """A token guards every request on a non-loopback bind, or when configured so."""
        return self.require_token or not is_loopback(self.host)


class ApiError(Exception):
    """A request the API answers with a status and a reason."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


def _json(data: Any, status: int = 200) -> Response:
    body = json.dumps(data, default=json_default, ensure_ascii=False, indent=1)
    return Response(body, status, media_type="application/json")


def _id(request: Request, name: str) -> str:
    value = request.path_params[name]
    if not valid_id(value):
        raise ApiError(400, f"invalid {name.replace('_', ' ')}: letters, digits and _.:- only")
    return value


DAY_TEXT = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")
FIRST_DAY, LAST_DAY = date(1970, 1, 1), date(2149, 6, 6)  # what a ClickHouse Date holds


def _day(request: Request, name: str, default: date) -> date:
    """A ``YYYY-MM-DD`` query parameter within the days the tables can hold, else a 400."""
    text = request.query_params.get(name)
    if text is None:
        return default
    reason = f"{name} must be a date YYYY-MM-DD from {FIRST_DAY} to {LAST_DAY}"
    if DAY_TEXT.fullmatch(text) is None:
        raise ApiError(400, reason)
    try:
        day = date.fromisoformat(text)
    except ValueError:
        raise ApiError(400, reason) from None
    if not FIRST_DAY <= day <= LAST_DAY:
        raise ApiError(400, reason)
    return day


SEARCH_TEXT = re.compile(r"[^\x00-\x1f\x7f\ufffd]{1,64}")  # no control or undecodable byte
PAGE_TEXT = re.compile(r"[1-9][0-9]{0,4}")


def _query(request: Request) -> str:
    """The ``q`` of a search: 1 to 64 characters, no control character, valid UTF-8."""
    text = request.query_params.get("q", "").strip()
    if SEARCH_TEXT.fullmatch(text) is None:
        raise ApiError(
            400,
            "q must be 1 to 64 characters: an account, meter or landlord id, "
            "or the last digits of a phone number",
        )
    return text


def _page(request: Request) -> int:
    """The ``page`` of a list: 1 (the default) to `MAX_PAGE`."""
    text = request.query_params.get("page")
    if text is None:
        return 1
    if PAGE_TEXT.fullmatch(text) is None or int(text) > MAX_PAGE:
        raise ApiError(400, f"page must be a whole number from 1 to {MAX_PAGE}")
    return int(text)


def create_app(
    reader: Reader, options: WebOptions, outcomes: CommandOutcomes | None = None
) -> AccessControl:
    """The web app over a reader, wrapped in its access rules."""
    if options.token_required and not options.token:
        raise ValueError(
            f"an access token is required to serve on {options.host} "
            "(set WATTPAY_WEB_TOKEN or --token-file)"
        )
    env = Environment(
        loader=PackageLoader("web", "templates"), autoescape=select_autoescape(["html"])
    )
    env.filters["money"] = lambda v: "—" if v is None else f"¥{v}"
    env.filters["duration"] = duration
    env.filters["signed"] = lambda v: f"+{v}" if v > 0 else str(v)
    env.globals.update(bar_chart=bar_chart, line_chart=line_chart)

    names: dict[str, dict[str, str]] = {}
    for plan_id, by_locale in options.plan_names.items():
        for locale, name in by_locale.items():
            names.setdefault(locale, {})[f"plan_name.{plan_id}"] = name

    def translator(locale: str) -> Translator:
        return Translator(locale, names)

    def page(request: Request, name: str, locale: str, status: int = 200, **ctx: Any) -> Response:
        t = translator(locale)
        html = env.get_template(name).render(
            t=t, lang=t.locale, path=request.url.path, refresh=options.refresh_seconds, **ctx
        )
        return HTMLResponse(html, status)

    cache = OpsCache(max(options.refresh_seconds / 2, 0.5))

    def relay_results() -> dict[str, dict[str, Any]] | None:
        """The relay results read so far; None when no broker is followed (not in ClickHouse)."""
        return outcomes.snapshot() if outcomes is not None and outcomes.following else None

    rendering = threading.Lock()
    renders_bills = options.render_bill is not None and options.documents is not None

    def ops_data() -> dict[str, Any]:
        def compute() -> dict[str, Any]:
            return operations(reader, scrape(options.metrics_urls), relay_results())

        return cache.get(compute)

    def lang(request: Request, default: str = "zh-CN") -> str:
        return pick_locale(request.query_params.get("lang"), default)

    def operations_page(request: Request) -> Response:
        return page(request, "operations.html", lang(request), ops=ops_data(), lists=LISTS)

    def found_list(request: Request) -> dict[str, Any]:
        name = request.path_params["name"]
        if name not in LISTS:
            raise ApiError(404, f"no list {name[:64]!r}; lists: {', '.join(LISTS)}")
        return account_list(reader, name, _page(request), relay_results())

    def list_page(request: Request) -> Response:
        return page(request, "list.html", lang(request), found=found_list(request))

    def api_list(request: Request) -> Response:
        return _json(found_list(request))

    def search_page(request: Request) -> Response:
        return page(request, "search.html", lang(request), found=search(reader, _query(request)))

    def api_search(request: Request) -> Response:
        return _json(search(reader, _query(request)))

    def operations_fragment(request: Request) -> Response:
        return page(request, "_panels.html", lang(request), ops=ops_data())

    def household_page(request: Request) -> Response:
        account_id = _id(request, "account_id")
        data = households.household(reader, account_id, options.plans)
        if data is None:
            return page(
                request, "missing.html", lang(request), 404, what=account_id, title="not_found"
            )
        locale = lang(request, pick_locale(data["account"]["locale"], "zh-CN"))
        link_bill_pdfs(data["bills"], options.documents, account_id, renders=renders_bills)
        for entry in data["history"]:
            entry["text"] = history_text(entry, account_id, locale)
        return page(request, "household.html", locale, h=data)

    def history_text(entry: dict[str, Any], account_id: str, locale: str) -> str:
        """An account history entry in the household's words (the notification's text)."""
        t = translator(locale)
        if entry["type"] == "points_expired":
            return t("points_expired_text", points=entry["data"].get("points", 0))
        notification = {**entry, "account_id": account_id, "locale": locale}
        text = (
            options.notification_text(notification, locale) if options.notification_text else None
        )
        return text or t.label("event", entry["type"])

    def household_fragment(request: Request) -> Response:
        account_id = _id(request, "account_id")
        summary = households.account(reader, account_id, options.plans)
        if summary is None:
            raise ApiError(404, f"no account {account_id}")
        return page(request, "_hero.html", lang(request), a=summary)

    def landlord_page(request: Request) -> Response:
        data = landlord(reader, _id(request, "landlord_id"))
        return page(request, "landlord.html", lang(request), l=data)

    def api_account(request: Request) -> Response:
        account_id = _id(request, "account_id")
        data = households.account(reader, account_id, options.plans)
        if data is None:
            raise ApiError(404, f"no account {account_id}")
        today = data["today"]
        locale = lang(request, pick_locale(data["locale"], "zh-CN"))
        data["plan_name"] = translator(locale).label("plan_name", data["plan"])
        data["month"] = households.month(reader, account_id, today)
        data["points_detail"] = households.points(reader, account_id)
        data["credits"] = households.credits(reader, account_id)
        data["history"] = households.history(reader, account_id, today)
        for entry in data["history"]:
            entry["text"] = history_text(entry, account_id, locale)
        data["analysis"] = usage_analysis(reader, account_id)
        return _json(data)

    def api_daily(request: Request) -> Response:
        account_id = _id(request, "account_id")
        data = households.account(reader, account_id, options.plans)
        if data is None:
            raise ApiError(404, f"no account {account_id}")
        window_first, window_last = households.chart_window(data)
        last = _day(request, "to", window_last)
        span = timedelta(days=households.CHART_DAYS - 1)
        first = _day(
            request,
            "from",
            max(last - span, FIRST_DAY) if "to" in request.query_params else window_first,
        )
        if first > last or (last - first).days >= MAX_DAILY_SPAN:
            raise ApiError(400, f"from must be on or before to, at most {MAX_DAILY_SPAN} days")
        rows = households.daily(reader, account_id, first, last)
        return _json({"account_id": account_id, "from": first, "to": last, "days": rows})

    def api_bills(request: Request) -> Response:
        from web.documents import bills

        account_id = _id(request, "account_id")
        if households.account(reader, account_id, options.plans) is None:
            raise ApiError(404, f"no account {account_id}")
        rows = bills(reader, account_id)
        link_bill_pdfs(rows, options.documents, account_id, renders=renders_bills)
        return _json({"account_id": account_id, "bills": rows})

    def api_analysis(request: Request) -> Response:
        account_id = _id(request, "account_id")
        if households.account(reader, account_id, options.plans) is None:
            raise ApiError(404, f"no account {account_id}")
        return _json({"account_id": account_id, "analysis": usage_analysis(reader, account_id)})

    def bill_pdf(request: Request) -> Response:
        account_id = _id(request, "account_id")
        month = request.path_params["month"]
        path = bill_pdf_path(options.documents, account_id, month)
        if path is None and renders_bills:
            with rendering:  # one rendering of a document at a time; the next finds the file
                path = bill_pdf_path(options.documents, account_id, month) or _rendered_bill(
                    account_id, month
                )
        if path is None:
            raise ApiError(404, "no such bill")
        return FileResponse(path, media_type=DOCUMENT_TYPES["pdf"])

    def _rendered_bill(account_id: str, month: str) -> Path | None:
        """A bill's PDF rendered now from its row (``wattpay bills --no-documents``)."""
        assert options.render_bill is not None and options.documents is not None
        inputs = bill_document_inputs(reader, account_id, month)
        return None if inputs is None else options.render_bill(*inputs, options.documents)

    def api_landlord(request: Request) -> Response:
        return _json(landlord(reader, _id(request, "landlord_id")))

    def api_operations(request: Request) -> Response:
        return _json(ops_data())

    def openapi(request: Request) -> Response:
        text = files("web").joinpath("openapi.json").read_text(encoding="utf-8")
        return Response(text, media_type="application/json")

    def document(request: Request) -> Response:
        name = request.path_params["name"]
        stem, _, kind = name.rpartition(".")
        path = document_path(options.documents, stem, kind)
        if path is None and kind == "pdf" and options.render_invoice is not None:
            with rendering:  # one rendering of a document at a time; the next finds the file
                path = document_path(options.documents, stem, kind) or _rendered(stem)
        if path is None:
            raise ApiError(404, "no such document")
        return FileResponse(path, media_type=DOCUMENT_TYPES[kind])

    def _rendered(invoice_no: str) -> Path | None:
        """An invoice's PDF rendered now from its row (``wattpay bills --no-documents``)."""
        assert options.render_invoice is not None and options.documents is not None
        row = invoice(reader, invoice_no)
        return None if row is None else options.render_invoice(row, options.documents)

    def health(request: Request) -> Response:
        return Response("ok\n", media_type="text/plain")

    async def api_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, ApiError)
        if request.url.path.startswith("/api/"):
            return JSONResponse({"error": exc.reason}, exc.status)
        title = "not_found" if exc.status == 404 else "bad_request"
        return page(
            request, "missing.html", lang(request), exc.status, what=exc.reason, title=title
        )

    async def store_error(request: Request, exc: Exception) -> Response:
        reason = f"ClickHouse did not answer: {exc}"
        if request.url.path.startswith("/api/"):
            return JSONResponse({"error": reason}, 503)
        return Response(reason + "\n", 503, media_type="text/plain")

    static = str(files("web").joinpath("static"))
    app = Starlette(
        routes=[
            Route("/", operations_page),
            Route("/fragments/operations", operations_fragment),
            Route("/accounts/{account_id}", household_page),
            Route("/fragments/accounts/{account_id}", household_fragment),
            Route("/accounts/{account_id}/bills/{month}.pdf", bill_pdf),
            Route("/landlords/{landlord_id}", landlord_page),
            Route("/search", search_page),
            Route("/lists/{name}", list_page),
            Route("/api/search", api_search),
            Route("/api/lists/{name}", api_list),
            Route("/api/openapi.json", openapi),
            Route("/api/operations", api_operations),
            Route("/api/accounts/{account_id}", api_account),
            Route("/api/accounts/{account_id}/daily", api_daily),
            Route("/api/accounts/{account_id}/bills", api_bills),
            Route("/api/accounts/{account_id}/analysis", api_analysis),
            Route("/api/landlords/{landlord_id}", api_landlord),
            Route("/documents/{name}", document),
            Route("/health", health),
            Mount("/static", StaticFiles(directory=static), name="static"),
        ],
        exception_handlers={ApiError: api_error, ClickHouseError: store_error},
    )
    app.add_middleware(SecurityHeaders)
    hosts = allowed_host_names(options.host, options.allowed_hosts)
    return AccessControl(app, hosts=hosts, token=options.token if options.token_required else None)


class OpsCache:
    """The operations figures, computed at most once per ``seconds`` however many pages poll.

    Inside ``wattpay up`` the reads share the embedded engine with the loader's inserts, so
    many open dashboards must not multiply the queries.
    """

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.lock = threading.Lock()
        self.value: dict[str, Any] | None = None
        self.at = 0.0

    def get(self, compute: Callable[[], dict[str, Any]]) -> dict[str, Any]:
        """The cached figures, or fresh ones when they are older than the bound."""
        with self.lock:
            if self.value is None or time.monotonic() - self.at >= self.seconds:
                self.value = compute()
                self.at = time.monotonic()
            return self.value


class SecurityHeaders:
    """Scripts, styles and images only from this origin; no framing; no referrer."""

    HEADERS = (
        (
            b"content-security-policy",
            b"default-src 'self'; img-src 'self' data:; frame-ancestors 'none'",
        ),
        (b"x-content-type-options", b"nosniff"),
        (b"referrer-policy", b"no-referrer"),
        (b"cache-control", b"no-store"),
    )

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def add_headers(message: dict) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message["headers"], *self.HEADERS]
            await send(message)

        await self.app(scope, receive, add_headers)
