"""The tariff what-if report opens in real headless Chromium, in Chinese and in English.

The report is one file with no script or style from elsewhere; screenshots are kept as test
artifacts (their directory is printed).
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.browser import Browser
from tests.tools import require_tool
from tests.whatif_town import PROPOSAL, build_town
from wattpay.cli import main

VISIBLE = (
    "Array.from(document.querySelectorAll('section.lang'))"
    ".filter(s => getComputedStyle(s).display !== 'none').map(s => s.lang)"
)


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory) -> Path:
    work = tmp_path_factory.mktemp("whatif")
    dsn = build_town(work)
    proposal = work / "proposal.toml"
    proposal.write_text(PROPOSAL, encoding="utf-8")
    out = work / "out"
    args = ["--from", "2026-06", "--to", "2026-06", "--proposed", str(proposal)]
    assert main(["tariff-whatif", *args, "--out", str(out), "--clickhouse", dsn, "--quiet"]) == 0
    return out / "report.html"


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Browser]:
    require_tool("chromium")
    chromium = Browser(tmp_path_factory.mktemp("chromium"))
    yield chromium
    chromium.close()


def _text(browser: Browser, selector: str) -> str:
    return browser.evaluate(
        f"Array.from(document.querySelectorAll({selector!r}))"
        ".filter(e => e.offsetParent !== null).map(e => e.innerText).join('|')"
    )


def test_report_is_self_contained(report: Path) -> None:
    html = report.read_text(encoding="utf-8")
    assert "http://" not in html.replace('xmlns="http://www.w3.org/2000/svg"', "")
    assert "https://" not in html and "<link" not in html and "src=" not in html


@pytest.mark.parametrize(
    ("query", "lang", "heading", "worse"),
    [
        ("", "zh-CN", "电价方案测算", "电费增加"),
        ("?lang=en", "en", "Tariff what-if", "Worse off"),
    ],
)
def test_report_opens_in_both_languages(
    report: Path, browser: Browser, query: str, lang: str, heading: str, worse: str
) -> None:
    url = report.as_uri() + query
    browser.open(url)
    assert browser.evaluate(VISIBLE) == [lang]
    assert _text(browser, "h1") == heading
    assert worse in _text(browser, ".card")
    assert _text(browser, ".revenue-current") == "25.94"
    assert _text(browser, ".revenue-proposed") == "26.02"
    assert _text(browser, ".revenue-change") == "0.08 (0.31 %)"  # 8 fen of 25.94
    assert _text(browser, ".households") == "3"
    # Three charts drawn with a size: months, districts, the change histogram.
    sizes = browser.evaluate(
        "Array.from(document.querySelectorAll('section.lang'))"
        ".filter(s => getComputedStyle(s).display !== 'none')[0]"
        ".querySelectorAll('svg.chart').length"
    )
    assert sizes == 3
    assert (
        browser.evaluate(
            "Array.from(document.querySelectorAll('svg.chart'))"
            ".filter(s => s.getBoundingClientRect().width > 300).length"
        )
        == 3
    )
    assert "H1" in _text(browser, "table.hardest")
    assert "west<i>&" in _text(browser, "table.districts")  # shown as text, not markup
    shots = Path(tempfile.mkdtemp(prefix="wattpay-whatif-report-"))
    print(f"\nscreenshot of the tariff what-if report: {shots}")
    assert browser.screenshot(shots / f"report-{lang}.png").stat().st_size > 10_000
