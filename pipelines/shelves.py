"""A keyed state's large map, snapshotted by the part that changed.

A route bucket's meter spans and payment-id claims grow with the city, but change only
with the rare account event or payment, while the bucket is snapshotted every epoch.
Kept on shelves (by a stable hash of the key), each shelf is pickled again only after a
change on it; an unchanged shelf gives back its bytes of the last snapshot.
"""

from __future__ import annotations

import pickle
import zlib
from collections.abc import Iterator, MutableMapping
from typing import TypeVar

V = TypeVar("V")

SHELVES = 64


def _shelf_of(key: str) -> int:
    return zlib.crc32(key.encode("utf-8", "surrogatepass")) % SHELVES


class Shelved(MutableMapping[str, V]):
    """A ``str`` → value map whose snapshot re-pickles only the shelves that changed.

    Values changed in place must be reported with ``touched``.
    """

    def __init__(self, frozen: tuple[bytes, ...] | None = None) -> None:
        self.items: dict[str, V] = {}
        self._shelves: list[dict[str, V]] = [{} for _ in range(SHELVES)]
        self._frozen: list[bytes | None] = [None] * SHELVES
        for index, blob in enumerate(frozen or ()):
            shelf: dict[str, V] = pickle.loads(blob)  # noqa: S301 - our own snapshot
            self._shelves[index] = shelf
            self._frozen[index] = blob
            self.items.update(shelf)

    def __getitem__(self, key: str) -> V:
        return self.items[key]

    def get(self, key: str, default: V | None = None) -> V | None:  # type: ignore[override]
        """The value of ``key``, or ``default``."""
        return self.items.get(key, default)

    def __setitem__(self, key: str, value: V) -> None:
        index = _shelf_of(key)
        self._shelves[index][key] = value
        self._frozen[index] = None
        self.items[key] = value

    def __delitem__(self, key: str) -> None:
        index = _shelf_of(key)
        del self._shelves[index][key]
        self._frozen[index] = None
        del self.items[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self.items)

    def touched(self, key: str) -> None:
        """The value of ``key`` was changed in place."""
        self._frozen[_shelf_of(key)] = None

    def __len__(self) -> int:
        return len(self.items)

    def snapshot(self) -> tuple[bytes, ...]:
        """Every shelf pickled; the unchanged ones are the bytes of the last snapshot."""
        for index, blob in enumerate(self._frozen):
            if blob is None:
                self._frozen[index] = pickle.dumps(
                    self._shelves[index], protocol=pickle.HIGHEST_PROTOCOL
                )
        return tuple(self._frozen)  # type: ignore[arg-type]
