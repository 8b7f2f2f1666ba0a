"""Fonts embedded in the PDFs: a Latin font and a CJK fallback, subset to the text used.

Chinese text needs a CJK font: the first found of ``WATTPAY_CJK_FONT`` and the Debian fonts
in `FONT_CANDIDATES` (the Makefile installs ``fonts-droid-fallback``); it has no Latin
glyphs, so digits and letters come from a Latin font (``fonts-dejavu-core``).
"""

from __future__ import annotations

import hashlib
import logging
import os
import string
import tempfile
import threading
from pathlib import Path

from fontTools import subset, ttLib

from jobs.bill_labels import LABELS

FONT_CANDIDATES = (
    "/usr/share/fonts/truetype/droid/DroidSansFallbackFull.ttf",
    "/usr/share/fonts/truetype/arphic-gbsn00lp/gbsn00lp.ttf",
    "/usr/share/fonts/truetype/wqy/wqy-microhei.ttf",
)
LATIN_CANDIDATES = (
    "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
    "/usr/share/fonts/truetype/liberation/LiberationSans-Regular.ttf",
)


def _first_file(kind: str, variable: str, candidates: tuple[str, ...], package: str) -> Path:
    tried = [os.environ.get(variable, ""), *candidates]
    for candidate in tried:
        if candidate and Path(candidate).is_file():
            return Path(candidate)
    raise FileNotFoundError(
        f"no {kind} font for PDFs; install {package} or set {variable} "
        f"(tried {', '.join(t for t in tried if t)})"
    )


def cjk_font() -> Path:
    """The CJK font file to embed; raise FileNotFoundError naming what was tried."""
    return _first_file("CJK", "WATTPAY_CJK_FONT", FONT_CANDIDATES, "fonts-droid-fallback")


def latin_font() -> Path:
    """The Latin font for digits and letters (the CJK fallback font has none)."""
    return _first_file("Latin", "WATTPAY_LATIN_FONT", LATIN_CANDIDATES, "fonts-dejavu-core")


_BASE_TEXT = "".join(
    sorted(
        {ch for labels in LABELS.values() for text in labels.values() for ch in text}
        | set(string.printable.strip())
        | set("电子发票（普通发票）发票号码：开票日期年月日购买方名称户号销售方纳税人识别号")
        | set("项目名称单位数量单价含税金额税率税额合计价税合计小写账单电费含增值税¥—，")
    )
)


class _Fonts:
    """Subsets of the fonts holding the characters used so far, rebuilt when new ones appear.

    A full CJK font takes most of a second to parse for every document; a subset of the few
    hundred characters a bill uses takes milliseconds, and is what gets embedded anyway.
    """

    def __init__(self) -> None:
        self.chars: frozenset[str] = frozenset()
        self.files: tuple[Path, Path] | None = None
        self.folder = Path(tempfile.mkdtemp(prefix="wattpay-fonts-"))
        self.lock = threading.Lock()  # the web pages render on several threads

    def for_text(self, text: str) -> tuple[Path, Path]:
        with self.lock:
            return self._for_text(text)

    def _for_text(self, text: str) -> tuple[Path, Path]:
        needed = frozenset(text) | frozenset(_BASE_TEXT)
        if self.files is None or not needed <= self.chars:
            self.chars = self.chars | needed
            chars = "".join(sorted(self.chars))
            stamp = hashlib.sha256(chars.encode("utf-8")).hexdigest()[:12]
            self.files = (
                _subset(latin_font(), chars, self.folder / f"latin-{stamp}.ttf"),
                _subset(cjk_font(), chars, self.folder / f"cjk-{stamp}.ttf"),
            )
        return self.files


def _subset(source: Path, chars: str, target: Path) -> Path:
    logging.getLogger("fontTools.subset").setLevel(logging.ERROR)  # tables it cannot subset
    options = subset.Options()
    options.notdef_outline = True
    # The subset keeps the font's own date: saved with the clock's, it made a document
    # rendered in another process, or after new characters appeared, differ in those bytes.
    font = ttLib.TTFont(str(source), recalcTimestamp=False)
    subsetter = subset.Subsetter(options)
    subsetter.populate(text=chars)
    subsetter.subset(font)
    font.save(str(target))
    return target


FONTS = _Fonts()
