"""PDF documents: the monthly bill (zh-CN or en) and the e-invoice, with an embedded CJK font.

The bill shows the S15.2 fields, the month's daily usage as a vector bar chart, the tier
position on the year-to-date scale and the points; the invoice shows its one line and the
VAT split. Fonts: see `jobs.fonts`.
"""

from __future__ import annotations

from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

from fpdf import FPDF

from jobs.bill_labels import LABELS
from jobs.fonts import FONTS

FONT, CJK = "text", "cjk"  # font family names inside a document


def _document(stamp: datetime, text: str) -> FPDF:
    pdf = FPDF(format="A4")
    pdf.set_creation_date(stamp)  # the bill's own date: same input, same bytes
    latin, cjk = FONTS.for_text(text)
    pdf.add_font(FONT, fname=str(latin))
    pdf.add_font(CJK, fname=str(cjk))
    pdf.set_font(FONT, size=10)
    pdf.set_fallback_fonts([CJK])
    pdf.set_auto_page_break(False)
    pdf.add_page()
    return pdf


def warm_up(text: str) -> None:
    """Render a throwaway page of ``text``: what a process's first document pays once.

    The font subsets for the labels and ``text``, and the renderer's own first use.
    """
    pdf = _document(datetime(2000, 1, 1, tzinfo=UTC), text)
    pdf.cell(80, 5, f"0123456789 {text}")
    pdf.output()


def _text(value: object, none: str) -> str:
    return none if value is None else str(value)


def _section(pdf: FPDF, title: str, rows: list[tuple[str, str]], x: float, y: float) -> float:
    pdf.set_xy(x, y)
    pdf.set_font(FONT, size=11)
    pdf.cell(85, 7, title)
    pdf.set_font(FONT, size=9)
    y += 8
    for label, value in rows:
        pdf.set_xy(x, y)
        pdf.cell(55, 5.5, label)
        pdf.cell(30, 5.5, value, align="R")
        y += 5.5
    return y


def render_bill(
    bill: dict[str, Any], daily_milli: list[int], contact: dict[str, str], path: Path
) -> None:
    """Write the bill PDF of one account × month."""
    locale = "en" if contact.get("locale", "zh-CN").startswith("en") else "zh-CN"
    t = LABELS[locale]
    none = t["none"]
    pdf = _document(bill["generated_at"], "".join(str(v) for v in bill.values()))
    pdf.set_title(f"{t['title']} {bill['bill_id']}")
    pdf.set_font(FONT, size=16)
    pdf.set_xy(15, 12)
    pdf.cell(180, 9, f"{t['title']}  {bill['month']:%Y-%m}")
    pdf.set_font(FONT, size=9)
    pdf.set_xy(15, 22)
    pdf.cell(
        180,
        5,
        f"{t['account']} {bill['account_id']}   {t['meter']} {bill['meter_id']}   "
        f"{t['plan']} {bill['plan']}   {t['days']} {bill['days']}",
    )
    usage = [
        (t[k], _text(bill[k], none))
        for k in (
            "kwh",
            "kwh_peak",
            "kwh_valley",
            "kwh_tier1",
            "kwh_tier2",
            "kwh_tier3",
            "charge",
            "avg_price",
        )
    ]
    money = [
        (t[k], _text(bill[k], none))
        for k in (
            "opening_balance",
            "topups",
            "rebates",
            "points_redeemed_yuan",
            "refund",
            "closing_balance",
        )
    ]
    money[1] = (money[1][0], f"{bill['topups']} ({bill['topup_count']})")
    points = [
        (t[k], str(bill[k]))
        for k in (
            "points_opening",
            "points_earned",
            "points_redeemed",
            "points_expired",
            "points_closing",
        )
    ]
    compare = [
        (t[k], _text(bill[k], none))
        for k in ("kwh_prev_month", "kwh_same_month_last_year", "disconnections", "invoice_no")
    ]
    left = _section(pdf, t["usage"], usage, 15, 32)
    right = _section(pdf, t["money"], money, 110, 32)
    left = _section(pdf, t["points"], points, 15, left + 4)
    right = _section(pdf, t["compare"], compare, 110, right + 4)
    top = max(left, right) + 8
    _daily_chart(pdf, t["daily"], bill["month"], daily_milli, 15, top, 180, 60)
    _tier_scale(pdf, t, bill, 15, top + 80, 180)
    path.write_bytes(bytes(pdf.output()))


def _daily_chart(
    pdf: FPDF, title: str, month: date, milli: list[int], x: float, y: float, w: float, h: float
) -> None:
    """Bars of each day's kWh, drawn as vector rectangles with a labelled axis."""
    pdf.set_font(FONT, size=11)
    pdf.set_xy(x, y)
    pdf.cell(w, 6, title)
    top, bottom = y + 10, y + 10 + h
    peak = max(milli, default=0)
    pdf.set_draw_color(80, 80, 80)
    pdf.line(x + 12, bottom, x + w, bottom)
    pdf.line(x + 12, top, x + 12, bottom)
    pdf.set_font(FONT, size=7)
    pdf.set_xy(x, top - 2)
    pdf.cell(11, 4, str(Decimal(peak).scaleb(-3)), align="R")
    pdf.set_xy(x, bottom - 2)
    pdf.cell(11, 4, "0", align="R")
    if not milli:
        return
    slot = (w - 14) / len(milli)
    pdf.set_fill_color(46, 117, 182)
    for index, value in enumerate(milli):
        height = h * value / peak if peak else 0  # drawing geometry only, not an amount
        left = x + 13 + index * slot
        if height > 0:
            pdf.rect(left, bottom - height, slot * 0.7, height, style="F")
        if index % 5 == 0 or index == len(milli) - 1:
            pdf.set_xy(left - 1, bottom + 1)
            pdf.cell(slot + 2, 4, str(index + 1), align="C")


def _tier_scale(
    pdf: FPDF, t: dict[str, str], bill: dict[str, Any], x: float, y: float, w: float
) -> None:
    """The year-to-date cumulative against the tier bounds, as a three-segment scale."""
    pdf.set_font(FONT, size=11)
    pdf.set_xy(x, y)
    pdf.cell(w, 6, t["tier"])
    ytd = bill["ytd_kwh"]
    bounds = [Decimal(2760), Decimal(4800)]
    if bill["kwh_to_next_tier"] is not None and bill["tier"] <= len(bounds):
        bounds[bill["tier"] - 1] = ytd + bill["kwh_to_next_tier"]
    end = max(bounds[-1] * Decimal("1.25"), ytd)
    colours = ((120, 190, 120), (240, 190, 80), (220, 90, 80))
    edges = [Decimal(0), *bounds, end]
    bar_y = y + 9
    for index, colour in enumerate(colours):
        pdf.set_fill_color(*colour)
        start = x + w * float(edges[index] / end)  # drawing geometry only
        stop = x + w * float(edges[index + 1] / end)
        pdf.rect(start, bar_y, stop - start, 6, style="F")
    marker = x + w * float(ytd / end)
    pdf.set_draw_color(0, 0, 0)
    pdf.set_line_width(0.6)
    pdf.line(marker, bar_y - 2, marker, bar_y + 8)
    pdf.set_line_width(0.2)
    pdf.set_font(FONT, size=8)
    for bound in bounds:
        pdf.set_xy(x + w * float(bound / end) - 10, bar_y + 7)
        pdf.cell(20, 4, format(bound.normalize(), "f"), align="C")
    text = t["ytd"].format(ytd=ytd, tier=bill["tier"])
    if bill["kwh_to_next_tier"] is not None:
        text += t["to_next"].format(kwh=bill["kwh_to_next_tier"])
    pdf.set_font(FONT, size=9)
    pdf.set_xy(x, bar_y + 13)
    pdf.cell(w, 5, text)


def render_invoice(invoice: dict[str, Any], path: Path) -> None:
    """Write the e-invoice PDF (电子发票): header, parties, the one line and the VAT split."""
    pdf = _document(invoice["issued_at"], "".join(str(v) for v in invoice.values()))
    pdf.set_title(f"电子发票 {invoice['invoice_no']}")
    pdf.set_font(FONT, size=16)
    pdf.set_xy(15, 14)
    pdf.cell(180, 10, "电子发票（普通发票）", align="C")
    pdf.set_font(FONT, size=9)
    pdf.set_xy(120, 28)
    pdf.multi_cell(
        75,
        5,
        f"发票号码：{invoice['invoice_no']}\n开票日期：{invoice['issued_at']:%Y年%m月%d日}",
    )
    pdf.set_xy(15, 42)
    pdf.multi_cell(
        85, 5, f"购买方\n名称：{invoice['buyer_name']}\n户号：{invoice['account_id']}", border=1
    )
    pdf.set_xy(110, 42)
    pdf.multi_cell(
        85,
        5,
        f"销售方\n名称：{invoice['seller_name']}\n纳税人识别号：{invoice['seller_tax_id']}",
        border=1,
    )
    head = ("项目名称", "单位", "数量", "单价(含税)", "金额", "税率", "税额")
    widths = (42, 16, 26, 26, 26, 18, 26)
    rate = f"{int(invoice['tax_rate'] * 100)}%"
    line = (
        invoice["item"],
        invoice["unit"],
        str(invoice["quantity_kwh"]),
        str(invoice["unit_price"]),
        str(invoice["amount_excl_tax"]),
        rate,
        str(invoice["tax"]),
    )
    y = 62
    for cells in (head, line):
        pdf.set_xy(15, y)
        for width, cell in zip(widths, cells, strict=True):
            pdf.cell(width, 7, cell, border=1, align="C")
        y += 7
    pdf.set_xy(15, y)
    pdf.cell(110, 7, "合计", border=1)
    pdf.cell(26, 7, f"¥{invoice['amount_excl_tax']}", border=1, align="C")
    pdf.cell(18, 7, "", border=1)
    pdf.cell(26, 7, f"¥{invoice['tax']}", border=1, align="C")
    pdf.set_xy(15, y + 7)
    pdf.cell(180, 7, f"价税合计（小写） ¥{invoice['amount']}", border=1)
    pdf.set_xy(15, y + 18)
    pdf.cell(180, 5, f"账单 {invoice['bill_id']}  电费含增值税 {rate}")
    path.write_bytes(bytes(pdf.output()))
