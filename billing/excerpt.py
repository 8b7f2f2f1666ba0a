"""Input values quoted in rejection details: short, and safe to encode anywhere."""

from __future__ import annotations

LIMIT = 40


def excerpt(value: object, limit: int = LIMIT) -> str:
    """``repr`` of an input value cut to about ``limit`` characters (lone surrogates escaped)."""
    if isinstance(value, dict | list) and len(value) > 3:
        text = f"<{type(value).__name__} of {len(value)}>"
    else:
        text = repr(value)
    if len(text) > limit:
        text = f"{text[:limit]}…({len(text)} chars)"
    return text
