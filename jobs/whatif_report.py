"""The tariff what-if's self-contained HTML report, in zh-CN and en, with SVG charts.

One file: both languages are in it (``?lang=en`` or the switch shows English), the charts
are inline SVG, there is no script or style from elsewhere. Figures are exact: fen to yuan.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal
from html import escape

from jinja2 import Environment, PackageLoader, select_autoescape
from markupsafe import Markup

from billing.tariffs import Plan, plan_toml
from jobs.money import div_half_up, fen, kwh
from jobs.whatif import WhatIf

LOCALES = ("zh-CN", "en")
TEXTS: dict[str, dict[str, str]] = {
    "zh-CN": {
        "title": "电价方案测算",
        "other": "English",
        "period": "测算期间",
        "scenario": "方案编号",
        "households": "户数",
        "revenue_current": "现行电费收入",
        "revenue_proposed": "新方案电费收入",
        "revenue_change": "收入变化",
        "better": "电费减少",
        "worse": "电费增加",
        "unchanged": "电费不变",
        "by_month": "按月电费收入",
        "by_district": "按区域电费收入",
        "by_tier": "按阶梯电量与电费",
        "tier_note": "阶梯电费为各档电量×电价的精确和，整期四舍五入到分一次；"
        "总收入按日结算到分，二者可差几分。",
        "month": "月份",
        "district": "区域",
        "no_district": "（未登记）",
        "tier": "阶梯",
        "kwh": "电量 kWh",
        "kwh_current": "现行电量 kWh",
        "kwh_proposed": "新方案电量 kWh",
        "current": "现行 元",
        "proposed": "新方案 元",
        "change": "变化 元",
        "distribution": "各户电费变化分布",
        "deciles": "十分位数（元）",
        "decile": "分位",
        "histogram": "各户电费变化（元）的户数",
        "hardest": "受影响最大的 1% 住户",
        "none_worse": "没有住户电费增加。",
        "account": "户号",
        "plan": "方案",
        "days_used": "用电天数",
        "peak_share": "08–22 时用电占比",
        "above_tier1": "一档以上电量 kWh",
        "alternatives": "改选其他现有方案可更省的住户",
        "alternatives_none": "没有住户在其他现有方案上更省。",
        "best_plan": "更省的方案",
        "best": "该方案 元",
        "saving": "可省 元",
        "count": "户数",
        "proposal": "新方案定义",
        "series_current": "现行",
        "series_proposed": "新方案",
        "yuan": "元",
    },
    "en": {
        "title": "Tariff what-if",
        "other": "中文",
        "period": "Period",
        "scenario": "Scenario",
        "households": "Households",
        "revenue_current": "Revenue, current tariff",
        "revenue_proposed": "Revenue, proposed tariff",
        "revenue_change": "Change in revenue",
        "better": "Better off",
        "worse": "Worse off",
        "unchanged": "Unchanged",
        "by_month": "Revenue by month",
        "by_district": "Revenue by district",
        "by_tier": "Energy and revenue by tier",
        "tier_note": "Tier revenue is the exact sum of kWh × price in each tier, rounded to the "
        "fen once for the period; total revenue is rounded per day, so the two may differ by "
        "a few fen.",
        "month": "Month",
        "district": "District",
        "no_district": "(none given)",
        "tier": "Tier",
        "kwh": "kWh",
        "kwh_current": "kWh, current",
        "kwh_proposed": "kWh, proposed",
        "current": "Current ¥",
        "proposed": "Proposed ¥",
        "change": "Change ¥",
        "distribution": "How each household's bill changes",
        "deciles": "Deciles (yuan)",
        "decile": "Decile",
        "histogram": "Households by change in yuan",
        "hardest": "The hardest-hit 1 % of households",
        "none_worse": "No household pays more.",
        "account": "Account",
        "plan": "Plan",
        "days_used": "Days with use",
        "peak_share": "Share used 08–22 h",
        "above_tier1": "kWh above tier 1",
        "alternatives": "Households better off on another existing plan",
        "alternatives_none": "No household would pay less on another existing plan.",
        "best_plan": "Cheaper plan",
        "best": "On it ¥",
        "saving": "Saving ¥",
        "count": "Households",
        "proposal": "Proposed plans",
        "series_current": "current",
        "series_proposed": "proposed",
        "yuan": "yuan",
    },
}
BINS = 12
W, H, LEFT, BOTTOM, TOP = 900, 240, 70, 40, 16


@dataclass(frozen=True)
class Row:
    """A table row of a breakdown: label, current, proposed, change (yuan)."""

    label: str
    current: Decimal
    proposed: Decimal
    change: Decimal


def deciles(values: Sequence[int]) -> list[int]:
    """The 1st to 9th deciles of ``values`` by nearest rank (exact on integers)."""
    ordered = sorted(values)
    n = len(ordered)
    return [ordered[math.ceil(k * n / 10) - 1] for k in range(1, 10)] if n else []


def histogram(values: Sequence[int], bins: int = BINS) -> list[tuple[int, int, int]]:
    """(low, high, count): equal-width bins of integer ``values`` from min to max, ends inside."""
    if not values:
        return []
    low, high = min(values), max(values)
    if low == high:
        return [(low, high, len(values))]
    width = -(-(high - low + 1) // bins)
    counts = [0] * bins
    for value in values:
        counts[(value - low) // width] += 1
    edges = [(low + i * width, low + (i + 1) * width - 1, c) for i, c in enumerate(counts)]
    return [e for e in edges if e[0] <= high]


def _num(value: Decimal | int | float) -> str:
    return format(Decimal(value).quantize(Decimal("0.1")), "f")


def bars_svg(labels: Sequence[str], series: dict[str, Sequence[int]], title: str) -> Markup:
    """Grouped bars (one group per label, one bar per series) of non-negative integers."""
    top = max((v for values in series.values() for v in values), default=0) or 1
    plot_w, plot_h = W - LEFT - 10, H - TOP - BOTTOM
    slot = Decimal(plot_w) / max(len(labels), 1)
    bar = slot * Decimal("0.8") / max(len(series), 1)
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {W} {H}" class="chart" '
        f'role="img" aria-label="{escape(title)}"><title>{escape(title)}</title>',
        f'<line class="axis" x1="{LEFT}" x2="{W - 10}" y1="{TOP + plot_h}" y2="{TOP + plot_h}"/>',
        f'<text class="tick" x="{LEFT - 6}" y="{TOP + 8}" text-anchor="end">'
        f"{escape(str(fen(top)))}</text>",
    ]
    for s, (name, values) in enumerate(series.items()):
        for i, value in enumerate(values):
            h = Decimal(plot_h) * value / top
            x = LEFT + slot * i + slot * Decimal("0.1") + bar * s
            parts.append(
                f'<rect class="bar s{s}" x="{_num(x)}" y="{_num(TOP + plot_h - h)}" '
                f'width="{_num(bar)}" height="{_num(h)}"><title>{escape(labels[i])} · '
                f"{escape(name)}: {fen(value)}</title></rect>"
            )
        parts.append(
            f'<rect class="bar s{s}" x="{LEFT + 10 + 120 * s}" y="{H - 14}" width="10" '
            f'height="10"/><text class="legend" x="{LEFT + 24 + 120 * s}" y="{H - 5}">'
            f"{escape(name)}</text>"
        )
    every = max(1, len(labels) // 12)
    for i, label in enumerate(labels):
        if i % every == 0:
            x = LEFT + slot * i + slot / 2
            parts.append(
                f'<text class="tick" x="{_num(x)}" y="{TOP + plot_h + 14}" '
                f'text-anchor="middle">{escape(label)}</text>'
            )
    parts.append("</svg>")
    return Markup("".join(parts))  # noqa: S704 - every text above is escaped


def histogram_svg(bins: Sequence[tuple[int, int, int]], title: str) -> Markup:
    """Households per bin of change (bin labels in yuan)."""
    labels = [f"{fen(low)}…{fen(high)}" if low != high else str(fen(low)) for low, high, _ in bins]
    counts = [c for _, _, c in bins]
    top = max(counts, default=0) or 1
    plot_w, plot_h = W - LEFT - 10, H - TOP - BOTTOM
    slot = Decimal(plot_w) / max(len(bins), 1)
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {W} {H}" class="chart" '
        f'role="img" aria-label="{escape(title)}"><title>{escape(title)}</title>',
        f'<text class="tick" x="{LEFT - 6}" y="{TOP + 8}" text-anchor="end">{top}</text>',
    ]
    for i, (label, count) in enumerate(zip(labels, counts, strict=True)):
        h = Decimal(plot_h) * count / top
        x = LEFT + slot * i
        parts.append(
            f'<rect class="bar hist" x="{_num(x + slot / 20)}" y="{_num(TOP + plot_h - h)}" '
            f'width="{_num(slot * 9 / 10)}" height="{_num(h)}"><title>{escape(label)}: '
            f"{count}</title></rect>"
        )
        if i % 2 == 0 or len(bins) < 7 or i == len(bins) - 1:
            parts.append(
                f'<text class="tick" x="{_num(x + slot / 2)}" y="{TOP + plot_h + 14}" '
                f'text-anchor="middle">{escape(label)}</text>'
            )
    parts.append("</svg>")
    return Markup("".join(parts))  # noqa: S704 - every text above is escaped


def cost_fen(cost: int) -> int:
    """An exact cost (1/10^7 yuan) rounded half up to the fen, once."""
    return div_half_up(cost, 100_000)


def _percent(part: int, whole: int) -> Decimal | None:
    return fen(div_half_up(part * 10_000, whole)) if whole else None


def report_context(result: WhatIf, proposed: dict[str, Plan], scenario: str) -> dict[str, object]:
    """The figures the template shows, as exact decimals and ready-made SVG."""
    acc = result.accounts
    changes = acc["change"].to_list()
    current, proposed_total = int(acc["current"].sum()), int(acc["proposed"].sum())
    worst = max(1, math.ceil(acc.height / 100))
    hardest = acc.filter(acc["change"] > 0).sort(["change", "account_id"], descending=[True, False])
    hardest_rows = [
        {
            **{k: r[k] for k in ("account_id", "plan", "days_used")},
            "kwh": kwh(r["kwh"]),
            "current": fen(r["current"]),
            "proposed": fen(r["proposed"]),
            "change": fen(r["change"]),
            "peak_share": _percent(r["kwh_peak_hours"], r["kwh"]),
            "above_tier1": kwh(r["kwh_above_tier1"]),
        }
        for r in hardest.head(worst).iter_rows(named=True)
    ]
    alt = result.alternatives
    groups = (
        alt.group_by("plan", "best_plan")
        .agg(count=alt["account_id"].len(), saving=(alt["proposed"] - alt["best"]).sum())
        .sort("plan", "best_plan")
    )
    months = result.months
    month_labels = [f"{m:%Y-%m}" for m in months["month"].to_list()]
    districts = result.districts
    district_labels = districts["district"].to_list()
    charts = {}
    for locale in LOCALES:
        t = TEXTS[locale]
        names = {"current": t["series_current"], "proposed": t["series_proposed"]}
        charts[locale] = {
            "months": bars_svg(
                month_labels,
                {names[k]: months[k].to_list() for k in ("current", "proposed")},
                t["by_month"],
            ),
            "districts": bars_svg(
                [d or t["no_district"] for d in district_labels],
                {names[k]: districts[k].to_list() for k in ("current", "proposed")},
                t["by_district"],
            ),
            "histogram": histogram_svg(histogram(changes), t["histogram"]),
        }
    return {
        "scenario": scenario,
        "first": result.period.first,
        "last": result.period.last,
        "households": acc.height,
        "current": fen(current),
        "proposed": fen(proposed_total),
        "change": fen(proposed_total - current),
        "change_percent": _percent(proposed_total - current, current),
        "better": sum(1 for c in changes if c < 0),
        "worse": sum(1 for c in changes if c > 0),
        "unchanged": sum(1 for c in changes if c == 0),
        "months": [
            Row(label, fen(c), fen(p), fen(p - c))
            for label, c, p in zip(month_labels, months["current"], months["proposed"], strict=True)
        ],
        "districts": [
            {
                "district": d,
                "accounts": n,
                "current": fen(c),
                "proposed": fen(p),
                "change": fen(p - c),
            }
            for d, n, c, p in districts.select(
                "district", "accounts", "current", "proposed"
            ).iter_rows()
        ],
        "tiers": [
            {
                "tier": tier,
                "kwh_current": kwh(kc),
                "kwh_proposed": kwh(kp),
                "current": fen(cost_fen(c)),
                "proposed": fen(cost_fen(p)),
                "change": fen(cost_fen(p) - cost_fen(c)),
            }
            for tier, kc, c, kp, p in result.tiers.select(
                "tier", "kwh_current", "current", "kwh_proposed", "proposed"
            ).iter_rows()
        ],
        "deciles": [fen(v) for v in deciles(changes)],
        "min_change": fen(min(changes)) if changes else None,
        "max_change": fen(max(changes)) if changes else None,
        "hardest": hardest_rows,
        "alternatives": [
            {"plan": p, "best_plan": b, "count": n, "saving": fen(s)}
            for p, b, n, s in groups.iter_rows()
        ],
        "alternatives_count": alt.height,
        "proposal": "\n".join(plan_toml(proposed[k]) for k in sorted(proposed)),
        "charts": charts,
    }


def render_report(result: WhatIf, proposed: dict[str, Plan], scenario: str) -> str:
    """The report's HTML text."""
    env = Environment(
        loader=PackageLoader("jobs", "templates"), autoescape=select_autoescape(["html"])
    )
    context = report_context(result, proposed, scenario)
    return env.get_template("tariff_whatif.html").render(
        locales=[(locale, TEXTS[locale]) for locale in LOCALES], **context
    )
