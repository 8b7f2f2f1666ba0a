r"""Input bytes' text to JSON values, refusing what the flow could not carry (SPEC S2, S9).

A message is one flat JSON object. Anything a downstream encoder or parser would choke on is
refused here, with a reason, instead of raising later: nesting beyond ``MAX_DEPTH`` (the
decoder recurses), a key given twice (parsers disagree on which counts), and strings holding
lone surrogates (JSON allows ``"\ud800"``; no UTF-8 encoder, neither ClickHouse's nor
Kafka's, takes it).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

from billing.excerpt import excerpt
from billing.state_pickle import constructor_reduce


def _reject_float(text: str) -> Any:
    """Keep JSON numbers with a fraction, exponent or NaN as a marker that fails decimals."""
    return FloatLiteral(text)


@dataclass(frozen=True, slots=True)
class FloatLiteral:
    """A JSON number that is not an integer; never valid where a decimal string is needed."""

    text: str

    def __reduce__(self) -> tuple[Any, tuple[Any, ...]]:
        return constructor_reduce(self)  # compiled, its fields refuse setattr


class _DuplicateKeyError(ValueError):
    """A JSON object names the same key twice (parsers disagree on which one counts)."""


def _object(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    value = dict(pairs)
    if len(value) != len(pairs):
        seen: set[str] = set()
        for key, _ in pairs:
            if key in seen:
                raise _DuplicateKeyError(f"duplicate key {excerpt(key)}")
            seen.add(key)
    return value


_DECODER = json.JSONDecoder(
    parse_float=_reject_float, parse_constant=_reject_float, object_pairs_hook=_object
)
_SPACE = json.decoder.WHITESPACE.match  # type: ignore[attr-defined]
_PAIRS = json.JSONDecoder(
    parse_float=_reject_float, parse_constant=_reject_float, object_pairs_hook=tuple
)
_SCAN = _PAIRS.scan_once  # type: ignore[attr-defined]  # the C scanner; raw_decode wraps it
MAX_DEPTH = 16  # input messages are flat objects; deeper nesting is malformed
_STRINGS = re.compile(r'"(?:[^"\\]++|\\.)*+"', re.DOTALL)
_NOT_BRACKETS = re.compile(r"[^\[\]{}]++")
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")


def _flat(text: str) -> Any:  # noqa: ANN401 - any JSON value
    """Decode a text with one bracket in all: a flat object, a flat array, or a scalar.

    The usual message. Its object comes back as a tuple of pairs from C, without the
    Python call per object of ``_DECODER``; a key given twice is refused as there.
    """
    # As ``JSONDecoder.decode`` does, with its errors, minus its calls for what is not there:
    # whitespace around the value (a message has none) and ``raw_decode``'s wrapping.
    start = 0 if text[0] == "{" else _SPACE(text, 0).end()
    try:
        value, end = _SCAN(text, start)
    except StopIteration as err:
        raise json.JSONDecodeError("Expecting value", text, err.value) from None
    if type(value) is tuple:
        flat = dict(value)
        if len(flat) != len(value):
            _object(list(value))  # raises, naming the first key given twice
        value = flat
    if end != len(text):
        end = _SPACE(text, end).end()  # then what follows, as ``JSONDecoder.decode`` checks it
        if end != len(text):
            raise json.JSONDecodeError("Extra data", text, end)
    return value


def _too_deep(text: str) -> bool:
    """Whether a JSON text nests brackets deeper than ``MAX_DEPTH`` (strings do not count)."""
    brackets = _NOT_BRACKETS.sub("", _STRINGS.sub("", text))
    level = 0
    for char in brackets:
        level += 1 if char in "[{" else -1
        if level > MAX_DEPTH:
            return True
    return False


def _has_surrogate(value: Any) -> bool:
    """Whether any string (or key) in a decoded JSON value holds a lone surrogate."""
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            try:
                item.encode("utf-8")
            except UnicodeEncodeError:
                return True
        elif isinstance(item, dict):
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return False


def decode_json(text: str) -> tuple[Any, str]:
    r"""Decode one message's JSON text: ``(value, "")``, or ``(None, why not)``; never raises.

    Refused: nesting deeper than ``MAX_DEPTH``, duplicate keys, strings with lone surrogates
    (``"\ud800"``: no UTF-8 encoder takes them), and anything that is not JSON.
    """
    if not text:
        return None, "empty input"
    brackets = text.count("{") + text.count("[")
    if brackets > MAX_DEPTH and _too_deep(text):
        return None, f"JSON nested deeper than {MAX_DEPTH} levels"
    try:
        value = _flat(text) if brackets == 1 else _DECODER.decode(text)
    except _DuplicateKeyError as duplicate:  # one name per clause: each has its own type
        return None, str(duplicate)
    except (ValueError, RecursionError) as err:
        return None, f"not JSON: {err}"
    if "\\" in text and _SURROGATE_ESCAPE.search(text) and _has_surrogate(value):
        return None, "a string holds a lone surrogate (\\ud800-\\udfff)"
    return value, ""
