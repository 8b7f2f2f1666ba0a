"""Charts as server-rendered SVG: no script, no CDN, readable without a browser plug-in.

Geometry is computed in Decimal like everything else here and written with one decimal.
"""

from __future__ import annotations

from collections.abc import Sequence
from decimal import ROUND_HALF_UP, Decimal

from markupsafe import Markup, escape

PAD_LEFT, PAD_RIGHT, PAD_TOP, PAD_BOTTOM = 44, 12, 22, 26
ONE = Decimal("0.1")


def _n(value: Decimal | int) -> str:
    return str(Decimal(value).quantize(ONE, ROUND_HALF_UP))


def nice_max(top: Decimal) -> Decimal:
    """A round axis maximum at or above ``top`` (1, 2 or 5 times a power of ten)."""
    if top <= 0:
        return Decimal(1)
    power = Decimal(10) ** (top.adjusted())
    for step in (1, 2, 5, 10):
        if top <= step * power:
            return step * power
    return 10 * power


def _frame(width: int, height: int, top: Decimal, unit: str, label: str) -> list[str]:
    plot_h = height - PAD_TOP - PAD_BOTTOM
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width} {height}" '
        f'class="chart" role="img" aria-label="{escape(label)}">',
        f"<title>{escape(label)}</title>",
    ]
    for i in range(5):
        y = Decimal(PAD_TOP) + Decimal(plot_h) * i / 4
        value = top * (4 - i) / 4
        parts.append(
            f'<line class="grid" x1="{PAD_LEFT}" x2="{width - PAD_RIGHT}" y1="{_n(y)}" '
            f'y2="{_n(y)}"/><text class="axis" x="{PAD_LEFT - 4}" y="{_n(y + 4)}" '
            f'text-anchor="end">{escape(_short(value))}</text>'
        )
    parts.append(f'<text class="axis unit" x="4" y="{PAD_TOP - 10}">{escape(unit)}</text>')
    return parts


def _short(value: Decimal) -> str:
    text = format(value.normalize(), "f")
    return text if len(text) < 7 else format(value.quantize(Decimal(1)), "f")


def bar_chart(
    labels: Sequence[str],
    values: Sequence[Decimal | None],
    *,
    unit: str,
    label: str,
    width: int = 1100,
    height: int = 240,
    label_every: int = 5,
    ticks: Sequence[str] | None = None,
) -> Markup:
    """Bars, one per label (a missing value leaves its slot empty but keeps its label).

    ``ticks`` are shorter axis texts for the labels (the labels themselves by default).
    """
    ticks = ticks or labels
    top = nice_max(max((v for v in values if v is not None), default=Decimal(0)))
    parts = _frame(width, height, top, unit, label)
    plot_w = Decimal(width - PAD_LEFT - PAD_RIGHT)
    plot_h = Decimal(height - PAD_TOP - PAD_BOTTOM)
    slot = plot_w / max(len(values), 1)
    for i, (name, value) in enumerate(zip(labels, values, strict=True)):
        x = Decimal(PAD_LEFT) + slot * i
        if value is not None:
            h = plot_h * value / top
            parts.append(
                f'<rect class="bar" data-label="{escape(name)}" data-value="{value}" '
                f'x="{_n(x + slot / 10)}" y="{_n(Decimal(PAD_TOP) + plot_h - h)}" '
                f'width="{_n(slot * 8 / 10)}" height="{_n(h)}">'
                f"<title>{escape(name)}: {value} {escape(unit)}</title></rect>"
            )
        else:
            parts.append(f'<g class="empty" data-label="{escape(name)}"></g>')
        last = len(values) - 1
        if i == last or (i % label_every == 0 and last - i >= label_every // 2):
            parts.append(
                f'<text class="axis" x="{_n(x + slot / 2)}" y="{height - 8}" '
                f'text-anchor="middle">{escape(ticks[i])}</text>'
            )
    parts.append("</svg>")
    return Markup("".join(parts))  # noqa: S704 - every text and attribute above is escaped


def line_chart(
    series: dict[str, Sequence[Decimal | None]],
    *,
    unit: str,
    label: str,
    names: dict[str, str],
    width: int = 1100,
    height: int = 260,
) -> Markup:
    """One polyline per series over the same x positions (hours 0–23), with a legend.

    A None value ends the line (an hour that has not come yet).
    """
    values = [v for points in series.values() for v in points if v is not None]
    top = nice_max(max(values, default=Decimal(0)))
    parts = _frame(width, height, top, unit, label)
    plot_w = Decimal(width - PAD_LEFT - PAD_RIGHT)
    plot_h = Decimal(height - PAD_TOP - PAD_BOTTOM)
    count = max((len(p) for p in series.values()), default=1)
    step = plot_w / max(count - 1, 1)
    for key, points in series.items():
        coords = " ".join(
            f"{_n(Decimal(PAD_LEFT) + step * i)},{_n(Decimal(PAD_TOP) + plot_h - plot_h * v / top)}"
            for i, v in enumerate(points)
            if v is not None
        )
        parts.append(
            f'<polyline class="line {escape(key)}" data-series="{escape(key)}" '
            f'points="{coords}"><title>{escape(names.get(key, key))}</title></polyline>'
        )
    for hour in range(0, count, 3):
        parts.append(
            f'<text class="axis" x="{_n(Decimal(PAD_LEFT) + step * hour)}" y="{height - 8}" '
            f'text-anchor="middle">{hour:02d}</text>'
        )
    x = width - PAD_RIGHT - 150
    for i, key in enumerate(series):
        y = PAD_TOP + 6 + i * 16
        parts.append(
            f'<line class="line {escape(key)}" x1="{x}" x2="{x + 18}" y1="{y}" y2="{y}"/>'
            f'<text class="legend" x="{x + 24}" y="{y + 4}">{escape(names.get(key, key))}</text>'
        )
    parts.append("</svg>")
    return Markup("".join(parts))  # noqa: S704 - every text and attribute above is escaped
