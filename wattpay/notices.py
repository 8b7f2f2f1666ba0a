"""Notification texts for the web pages' account history (SPEC S16.1, S17.2)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from config.settings import Settings


def notification_texts(settings: Settings) -> Callable[[Mapping[str, Any], str], str | None]:
    """A function giving a recorded notification's text in a locale, as it was sent.

    The web app gets this function (it may not import the notification package itself); a
    notification no template can render gives None.
    """
    from notify.texts import TemplateError, render

    def text(notification: Mapping[str, Any], locale: str) -> str | None:
        zh = locale == "zh-CN"
        signature = settings.notify.signature if zh else settings.notify.signature_en
        try:
            return render(notification, signature, settings.rules.zone, locale).text
        except (TemplateError, ValueError, TypeError, KeyError):
            return None

    return text
