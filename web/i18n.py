"""Page texts in zh-CN and en, kept as files (``web/locales/*.json``)."""

from __future__ import annotations

import json
from collections.abc import Mapping
from functools import cache
from importlib.resources import files

LOCALES = ("zh-CN", "en")


def pick_locale(value: str | None, default: str) -> str:
    """The supported locale for a requested one (``en-US`` → ``en``), else ``default``."""
    if value:
        base = value.replace("_", "-").split("-")[0].lower()
        if base == "en":
            return "en"
        if base == "zh":
            return "zh-CN"
    return default if default in LOCALES else LOCALES[0]


@cache
def _texts(locale: str) -> dict[str, str]:
    return json.loads(files("web").joinpath(f"locales/{locale}.json").read_text("utf-8"))


class Translator:
    """``t("key")`` gives the text in the page's locale (the key itself if it has none).

    ``names`` are labels configured beside the locale files, by locale and ``group.name``
    key (a configured plan's display name); they come first.
    """

    def __init__(self, locale: str, names: Mapping[str, Mapping[str, str]] | None = None) -> None:
        self.locale = pick_locale(locale, LOCALES[0])
        self.other = "en" if self.locale == "zh-CN" else "zh-CN"
        self.names = names or {}

    def __call__(self, key: str, **values: object) -> str:
        text = _texts(self.locale).get(key) or _texts("en").get(key) or key
        return text.format(**values) if values else text

    def label(self, group: str, name: object) -> str:
        """The text of ``group.name`` (a plan, a reason code) in the locale, else the name."""
        key = f"{group}.{name}"
        return (
            self.names.get(self.locale, {}).get(key)
            or _texts(self.locale).get(key)
            or self.names.get(self.other, {}).get(key)
            or _texts("en").get(key)
            or str(name)
        )
