"""How many SMS segments a text takes (SPEC S16.1): GSM 7-bit or UCS-2, as carriers count them.

A text of GSM 03.38 characters fits 160 per single message and 153 per part of a long one
(extension characters such as ``€`` or ``[`` count twice); any other character (Chinese)
makes it UCS-2: 70 per single message, 67 per part.
"""

from __future__ import annotations

from dataclasses import dataclass

GSM_BASIC = set(
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà"
)
GSM_EXTENSION = set("\f^{}\\[~]|€")
LIMITS = {"gsm7": (160, 153), "ucs2": (70, 67)}


@dataclass(frozen=True)
class SmsSize:
    """The encoding a text needs, its length in that encoding's units, and its segments."""

    encoding: str
    units: int
    segments: int

    @property
    def per_segment(self) -> int:
        """Units one segment holds at this text's size (single vs. concatenated)."""
        single, part = LIMITS[self.encoding]
        return single if self.segments <= 1 else part


def sms_size(text: str) -> SmsSize:
    """The segments a text needs on the air interface (a code point counts as one UCS-2 unit)."""
    if all(c in GSM_BASIC or c in GSM_EXTENSION for c in text):
        encoding = "gsm7"
        units = sum(2 if c in GSM_EXTENSION else 1 for c in text)
    else:
        encoding = "ucs2"
        units = sum(2 if ord(c) > 0xFFFF else 1 for c in text)
    single, part = LIMITS[encoding]
    segments = 1 if units <= single else -(-units // part)
    return SmsSize(encoding, units, segments)
