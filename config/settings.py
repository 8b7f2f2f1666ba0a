"""One typed settings object: TOML file, then ``WATTPAY_*`` environment overrides (SPEC S11)."""

from __future__ import annotations

import math
import os
import tomllib
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, replace
from datetime import date, time
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any
from urllib.parse import unquote_plus, urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from billing.numbers import decimal_places
from billing.rules import DEFAULT_CAMPAIGN, BillingRules, DisconnectWindow, RebateCampaign
from billing.tariffs import BUILTIN_PLANS, PlanError, plan_catalog, plan_from_config
from config.errors import OperatorError
from config.notify import NotifySettings, notify_env, notify_settings
from config.retention import RetentionSettings, retention_settings

DEFAULT_CONFIG = "wattpay.toml"
DEFAULT_DSN = "chdb://./.wattpay/clickhouse"
DEFAULT_TOPIC_PREFIX = "wattpay."
SECRET_WORDS = ("password", "secret", "token", "key", "sasl")


class SettingsError(OperatorError, ValueError):
    """Every problem found in the configuration, reported at once."""

    def __init__(self, problems: list[str]) -> None:
        if len(problems) == 1:
            super().__init__(f"invalid configuration: {problems[0]}")
        else:
            super().__init__("invalid configuration:\n  - " + "\n  - ".join(problems))
        self.problems = problems


@dataclass(frozen=True)
class Settings:
    """Validated configuration for every wattpay command."""

    clickhouse_dsn: str = DEFAULT_DSN
    brokers: str = ""
    topic_prefix: str = DEFAULT_TOPIC_PREFIX
    kafka: dict[str, str] = field(default_factory=dict)
    batch_rows: int = 400_000
    batch_seconds: float = 1.0
    live_duplicate_memory: int = 960
    """Accepted readings per meter kept in live mode (10 days at 15 minutes; see BENCHMARKS)."""
    rules: BillingRules = field(default_factory=BillingRules)
    query_token: str = ""
    """Bearer token the query endpoint requires (always when bound beyond loopback)."""
    query_max_seconds: int = 10
    query_max_rows: int = 100_000
    seller_name: str = "国网示例供电有限公司"
    """The utility named as seller on e-invoices (``[invoice] seller_name``)."""
    seller_tax_id: str = "91330000000000000X"
    """The utility's taxpayer id on e-invoices (``[invoice] seller_tax_id``)."""
    notify: NotifySettings = field(default_factory=NotifySettings)
    retention: RetentionSettings = field(default_factory=RetentionSettings)
    plan_names: dict[str, dict[str, str]] = field(default_factory=dict)
    """Display names of plans by locale (``[plans.ID] name_zh``, ``name_en``), for the pages."""
    source_file: str | None = None

    def topic(self, name: str) -> str:
        """Full topic name for a logical one (``notifications`` → ``wattpay.notifications``)."""
        return f"{self.topic_prefix}{name}"

    def child_environment(self) -> dict[str, str]:
        """``WATTPAY_*`` variables giving a wattpay child process this file and topic prefix."""
        env = {"WATTPAY_TOPIC_PREFIX": self.topic_prefix}
        if self.source_file is not None:
            env["WATTPAY_CONFIG"] = str(Path(self.source_file).resolve())
        return env

    def masked(self) -> dict[str, Any]:
        """The settings as plain data with secrets masked, for ``wattpay config --check``."""
        rules = self.rules
        return {
            "config_file": self.source_file,
            "clickhouse_dsn": mask_url(self.clickhouse_dsn),
            "brokers": self.brokers or "(embedded)",
            "topic_prefix": self.topic_prefix,
            "kafka": {k: ("***" if _is_secret(k) else v) for k, v in self.kafka.items()},
            "clickhouse_batch": {"rows": self.batch_rows, "seconds": self.batch_seconds},
            "retention": asdict(self.retention),
            "query": {
                "token": "***" if self.query_token else "(none)",
                "max_seconds": self.query_max_seconds,
                "max_result_rows": self.query_max_rows,
            },
            "billing": {
                "timezone": str(rules.zone),
                "plans": sorted(rules.plans),
                "default_threshold": str(rules.default_threshold),
                "max_topup": str(rules.max_topup),
                "max_power_kw": str(rules.max_power_kw),
                "register_max_kwh": str(rules.register_max_kwh),
                "disconnect_window": {
                    "weekdays": sorted(rules.window.weekdays),
                    "start": rules.window.start.isoformat("minutes"),
                    "end": rules.window.end.isoformat("minutes"),
                    "holidays": sorted(d.isoformat() for d in rules.window.holidays),
                },
                "campaigns": [c.campaign_id for c in rules.campaigns],
                "tamper_grace_minutes": rules.tamper_grace_minutes,
                "duplicate_memory": {
                    "replay": rules.duplicate_memory,
                    "live": self.live_duplicate_memory,
                },
            },
            "notify": self.notify.masked(),
        }


def _is_secret(name: str) -> bool:
    return any(word in name.lower() for word in SECRET_WORDS)


def mask_url(url: str) -> str:
    """The URL with its password and secret-looking query values (``access_token``…) as ``***``."""
    parts = urlsplit(url)
    netloc = parts.netloc
    if "@" in netloc:
        userinfo, _, host = netloc.rpartition("@")
        if ":" in userinfo:
            netloc = f"{userinfo.partition(':')[0]}:***@{host}"
    query = "&".join(
        f"{name}=***" if _is_secret(unquote_plus(name)) and sep else f"{name}{sep}{value}"
        for name, sep, value in (item.partition("=") for item in parts.query.split("&") if item)
    )
    if netloc == parts.netloc and query == parts.query:
        return url
    rebuilt = f"{parts.scheme}://{netloc}{parts.path}" + (f"?{query}" if query else "")
    return rebuilt + (f"#{parts.fragment}" if parts.fragment else "")


def url_secrets(url: str) -> list[str]:
    """The secret values a URL carries (password, secret-looking query values), raw and decoded."""
    parts = urlsplit(url)
    found = []
    userinfo = parts.netloc.rpartition("@")[0] if "@" in parts.netloc else ""
    if ":" in userinfo:
        found.append(userinfo.partition(":")[2])
    for name, sep, value in (item.partition("=") for item in parts.query.split("&") if item):
        if sep and value and _is_secret(unquote_plus(name)):
            found.append(value)
    return [v for raw in found for v in dict.fromkeys((raw, unquote_plus(raw))) if v]


def redact(text: str, url: str) -> str:
    """``text`` (an error message, say) with every secret of ``url`` replaced by ``***``."""
    for secret in sorted(url_secrets(url), key=len, reverse=True):
        text = text.replace(secret, "***")
    return text


ENV_KEYS = {
    "WATTPAY_CLICKHOUSE_DSN": ("clickhouse", "dsn"),
    "WATTPAY_BROKERS": ("kafka", "brokers"),
    "WATTPAY_TOPIC_PREFIX": ("kafka", "topic_prefix"),
    "WATTPAY_TIMEZONE": ("billing", "timezone"),
    "WATTPAY_MAX_TOPUP": ("billing", "max_topup"),
    "WATTPAY_DEFAULT_THRESHOLD": ("billing", "default_threshold"),
    "WATTPAY_MAX_POWER_KW": ("billing", "max_power_kw"),
    "WATTPAY_HOLIDAYS": ("billing", "holidays"),
    "WATTPAY_QUERY_TOKEN": ("query", "token"),
}


def load_settings(
    path: str | None = None, *, env: Mapping[str, str] | None = None, **overrides: str | None
) -> Settings:
    """Read the TOML file (``path`` or ``wattpay.toml`` if present), apply env, then overrides."""
    env = os.environ if env is None else env
    raw: dict[str, Any] = {}
    source = path or env.get("WATTPAY_CONFIG")
    if source is None and Path(DEFAULT_CONFIG).exists():
        source = DEFAULT_CONFIG
    problems: list[str] = []
    if source is not None:
        try:
            raw = tomllib.loads(Path(source).read_text(encoding="utf-8"))
        except (OSError, tomllib.TOMLDecodeError) as err:
            raise SettingsError([f"{source}: {err}"]) from err
    for variable, (section, key) in ENV_KEYS.items():
        if env.get(variable):
            raw.setdefault(section, {})[key] = env[variable]
    for variable, value in env.items():
        if variable.startswith("WATTPAY_KAFKA_") and value:
            raw.setdefault("kafka", {}).setdefault("client", {})[
                variable.removeprefix("WATTPAY_KAFKA_").lower().replace("_", ".")
            ] = value
    notify_env(env, raw)
    if overrides.get("clickhouse_dsn"):
        raw.setdefault("clickhouse", {})["dsn"] = overrides["clickhouse_dsn"]
    if overrides.get("brokers"):
        raw.setdefault("kafka", {})["brokers"] = overrides["brokers"]
    settings = _build(raw, problems)
    if problems:
        raise SettingsError(problems)
    return replace(settings, source_file=source)


def _build(raw: dict[str, Any], problems: list[str]) -> Settings:
    clickhouse = raw.get("clickhouse", {})
    kafka = raw.get("kafka", {})
    billing = raw.get("billing", {})
    query = raw.get("query", {})
    dsn = str(clickhouse.get("dsn", DEFAULT_DSN))
    if not dsn.startswith(("chdb://", "http://", "https://")):
        problems.append(
            f"clickhouse.dsn must start with chdb://, http:// or https://: {mask_url(dsn)!r}"
        )
    rules = _rules(billing, raw.get("plans", {}), raw.get("campaigns"), problems)
    return Settings(
        clickhouse_dsn=dsn,
        brokers=str(kafka.get("brokers", "")),
        topic_prefix=str(kafka.get("topic_prefix", DEFAULT_TOPIC_PREFIX)),
        kafka={str(k): str(v) for k, v in kafka.get("client", {}).items()},
        batch_rows=_int(clickhouse.get("batch_rows", 400_000), "clickhouse.batch_rows", problems),
        batch_seconds=_seconds(
            clickhouse.get("batch_seconds", 1.0), "clickhouse.batch_seconds", problems
        ),
        live_duplicate_memory=_int(
            billing.get("live_duplicate_memory", 960), "billing.live_duplicate_memory", problems
        ),
        rules=rules,
        query_token=str(query.get("token", "")),
        query_max_seconds=_int(query.get("max_seconds", 10), "query.max_seconds", problems),
        query_max_rows=_int(
            query.get("max_result_rows", 100_000), "query.max_result_rows", problems
        ),
        seller_name=str(raw.get("invoice", {}).get("seller_name", Settings.seller_name)),
        seller_tax_id=str(raw.get("invoice", {}).get("seller_tax_id", Settings.seller_tax_id)),
        notify=notify_settings(raw.get("notify", {}), problems),
        retention=retention_settings(raw.get("retention", {}), problems),
        plan_names=_plan_names(raw.get("plans", {}), problems),
    )


PLAN_NAME_KEYS = {"name_zh": "zh-CN", "name_en": "en"}
PLAN_NAME_LENGTH = 64


def _plan_names(plans: Mapping[str, Any], problems: list[str]) -> dict[str, dict[str, str]]:
    """``name_zh`` / ``name_en`` of each ``[plans.ID]`` table: plan id → locale → name."""
    names: dict[str, dict[str, str]] = {}
    for plan_id, spec in plans.items():
        if not isinstance(spec, Mapping):
            continue
        for key, locale in PLAN_NAME_KEYS.items():
            if key not in spec:
                continue
            value = spec[key]
            text = value.strip() if isinstance(value, str) else ""
            if not 0 < len(text) <= PLAN_NAME_LENGTH or not text.isprintable():
                problems.append(
                    f"plans.{plan_id}.{key} must be a name of 1 to {PLAN_NAME_LENGTH} "
                    f"printable characters: {value!r}"
                )
                continue
            names.setdefault(str(plan_id), {})[locale] = text
    return names


def _seconds(value: Any, name: str, problems: list[str]) -> float:
    """A finite, non-negative number of seconds (0 allowed: write at once)."""
    try:
        if isinstance(value, bool):
            raise TypeError(value)
        number = float(value)
    except (TypeError, ValueError):
        problems.append(f"{name} must be a number of seconds: {value!r}")
        return 1.0
    if not math.isfinite(number) or number < 0:
        problems.append(f"{name} must be zero or more seconds: {value!r}")
        return 1.0
    return number


def _int(value: Any, name: str, problems: list[str]) -> int:
    try:
        number = int(value)
    except (TypeError, ValueError):
        problems.append(f"{name} must be an integer: {value!r}")
        return 0
    if number <= 0:
        problems.append(f"{name} must be positive: {value!r}")
    return number


def _decimal(table: Mapping[str, Any], key: str, default: Decimal, problems: list[str]) -> Decimal:
    if key not in table:
        return default
    try:
        value = Decimal(str(table[key]))
    except InvalidOperation:
        problems.append(f"billing.{key} must be a decimal: {table[key]!r}")
        return default
    if not value.is_finite() or value <= 0:
        problems.append(f"billing.{key} must be a positive decimal: {table[key]!r}")
        return default
    return value


def _rules(
    billing: Mapping[str, Any], plans: Mapping[str, Any], campaigns: Any, problems: list[str]
) -> BillingRules:
    base = BillingRules()
    zone = base.zone
    if "timezone" in billing:
        try:
            zone = ZoneInfo(str(billing["timezone"]))
        except (ZoneInfoNotFoundError, ValueError):
            problems.append(f"billing.timezone is not a known zone: {billing['timezone']!r}")
    custom = {}
    for plan_id, spec in plans.items():
        if (
            plan_id in BUILTIN_PLANS
            and isinstance(spec, Mapping)
            and set(spec) <= PLAN_NAME_KEYS.keys()
        ):
            continue  # only names for a built-in plan: the plan itself stays as built
        try:
            custom[plan_id] = plan_from_config(plan_id, spec)
        except PlanError as err:
            problems.append(str(err))
    window = base.window
    try:
        holidays = billing.get("holidays", [])
        if isinstance(holidays, str):
            holidays = [h for h in holidays.split(",") if h.strip()]
        window = DisconnectWindow(
            weekdays=frozenset(int(d) for d in billing.get("disconnect_weekdays", [0, 1, 2, 3, 4])),
            start=time.fromisoformat(str(billing.get("disconnect_from", "08:00"))),
            end=time.fromisoformat(str(billing.get("disconnect_until", "17:00"))),
            holidays=frozenset(
                h if isinstance(h, date) else date.fromisoformat(str(h).strip()) for h in holidays
            ),
        )
    except (TypeError, ValueError) as err:
        problems.append(f"billing disconnection window: {err}")
    return BillingRules(
        plans=plan_catalog(custom),
        zone=zone,
        default_threshold=_decimal(billing, "default_threshold", base.default_threshold, problems),
        max_topup=_decimal(billing, "max_topup", base.max_topup, problems),
        max_power_kw=_decimal(billing, "max_power_kw", base.max_power_kw, problems),
        register_max_kwh=_decimal(billing, "register_max_kwh", base.register_max_kwh, problems),
        window=window,
        campaigns=_campaigns(campaigns, problems),
        tamper_grace_minutes=_int(
            billing.get("tamper_grace_minutes", base.tamper_grace_minutes),
            "billing.tamper_grace_minutes",
            problems,
        ),
        duplicate_memory=_int(
            billing.get("duplicate_memory", base.duplicate_memory),
            "billing.duplicate_memory",
            problems,
        ),
    )


def _campaigns(raw: Any, problems: list[str]) -> tuple[RebateCampaign, ...]:
    """``[[campaigns]]`` tables replace the built-in default campaign when present."""
    if raw is None:
        return (DEFAULT_CAMPAIGN,)
    campaigns = []
    for index, spec in enumerate(raw):
        try:
            rebate = Decimal(str(spec["rebate"]))
            if not rebate.is_finite() or rebate <= 0 or decimal_places(rebate) > 2:
                # It is posted to the ledger: money, to the fen, like every amount there.
                problems.append(
                    f"campaigns[{index}]: rebate must be a positive amount with at most"
                    f" 2 decimals: {spec['rebate']!r}"
                )
                continue
            campaigns.append(
                RebateCampaign(
                    campaign_id=str(spec["id"]),
                    channels=frozenset(str(c) for c in spec["channels"]),
                    min_amount=Decimal(str(spec["min_amount"])),
                    rebate=rebate,
                    per_account_per_month=int(spec.get("per_account_per_month", 1)),
                    from_day=_opt_day(spec.get("from")),
                    to_day=_opt_day(spec.get("to")),
                )
            )
        except (KeyError, TypeError, ValueError, InvalidOperation) as err:
            problems.append(f"campaigns[{index}]: {err!r}")
    return tuple(campaigns)


def _opt_day(value: Any) -> date | None:
    if value is None or isinstance(value, date):
        return value
    return date.fromisoformat(str(value))
