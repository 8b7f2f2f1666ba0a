"""Retention on the embedded broker: which records may go, and the janitor that removes them.

Tansu 0.6.0's S3 engine keeps every record for ever: it stores a topic's `retention.ms` and
answers with it, but nothing applies it, and its DeleteRecords is unimplemented (``todo!()``
in ``tansu-storage/src/dynostore.rs``; the broker drops the connection, and confluent-kafka's
``AdminClient.delete_records`` fails with a transport error). It keeps each produced batch as
one object, ``clusters/C/topics/T/partitions/P/records/OFFSET.batch``, and a fetch lists them
and serves those at or after the offset asked for. So wattpay deletes whole batch objects in
the store itself, below a bound per partition and older than a configured age:

- **Derived topics** (facts, notifications, commands, payment requests, the DLQ, the notify
  workers' topics): below the committed offset of every consumer group that committed on the
  partition (the loader's on the facts, which are in ClickHouse by then; the notify workers'
  on the notifications), and older than ``derived_hours``. A topic no group commits on is
  kept for ``derived_hours`` only.
- **Inputs** (readings, payments, relay results): below the positions of the oldest recovery
  snapshot still kept (the billing flow resumes at or after them), and older than
  ``input_days``.
- **Account events** are kept: the notify workers read their e-mail addresses from the start
  of that topic, and there is one event per account change.

A batch goes only when the next batch of its partition starts at or below the bound, so the
last batch of a partition stays. A reader placed below what is left is served the first batch
left, as after any gap. The store's volumes are then vacuumed, which gives the space back.
"""

from __future__ import annotations

import http.client
import io
import logging
import pickle
import sqlite3
import threading
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from xml.etree import ElementTree

from bus.kafka import committed_positions
from bus.topics import ACCOUNT_EVENTS, CATALOGUE, Direction
from config.retention import RetentionSettings

log = logging.getLogger(__name__)
S3_NAMESPACE = "{http://s3.amazonaws.com/doc/2006-03-01/}"
SOURCE_STATE_KEY = "merged-input"
"""The state key of the billing flow's input source in the recovery store."""


@dataclass(frozen=True)
class Batch:
    """One stored batch: its first offset and when it was written."""

    offset: int
    written: datetime
    key: str


def removable(batches: Iterable[Batch], bound: int | None, cutoff: datetime) -> list[Batch]:
    """The batches of one partition that may go: wholly below ``bound`` and older than ``cutoff``.

    A batch is wholly below the bound when the next one starts at or below it; the last batch
    never goes. ``bound`` None means no consumer holds the partition: age alone decides.
    """
    ordered = sorted(batches, key=lambda b: b.offset)
    gone: list[Batch] = []
    for batch, following in zip(ordered, ordered[1:], strict=False):
        if bound is not None and following.offset > bound:
            break
        if batch.written >= cutoff:
            break  # later batches are younger still
        gone.append(batch)
    return gone


class _Positions(pickle.Unpickler):
    """Unpickles the input source's snapshot, a dict of str to int, and nothing else."""

    def find_class(self, module: str, name: str) -> object:
        raise pickle.UnpicklingError(f"unexpected {module}.{name} in a source snapshot")


def recovery_positions(recovery_dir: Path) -> dict[str, int] | None:
    """Per ``topic:partition``, the lowest next offset of every source snapshot kept; None if none.

    Bytewax resumes from one of the snapshots still in its store, so nothing below these
    positions is read again.
    """
    lowest: dict[str, int] = {}
    found = False
    for part in sorted(recovery_dir.glob("part-*.sqlite3")):
        connection = sqlite3.connect(f"file:{part}?mode=ro", uri=True, timeout=10)
        try:
            rows = connection.execute(
                "SELECT ser_change FROM snaps WHERE state_key = ?", (SOURCE_STATE_KEY,)
            ).fetchall()
        except sqlite3.Error:
            return None  # not a recovery store this janitor understands: hold everything
        finally:
            connection.close()
        for (blob,) in rows:
            if blob is None:
                continue
            state = _Positions(io.BytesIO(blob)).load()
            if isinstance(state, tuple) and state:  # (positions, sequence number)
                state = state[0]
            if not isinstance(state, dict):
                return None
            found = True
            for key, offset in state.items():
                if isinstance(key, str) and isinstance(offset, int):
                    lowest[key] = min(lowest.get(key, offset), offset)
    return lowest if found else None


class BatchObjects:
    """The broker's batch objects in the embedded S3 store: list them, delete some."""

    def __init__(self, endpoint: str, bucket: str, cluster_id: str) -> None:
        self.endpoint = endpoint
        self.bucket = bucket
        self.cluster_id = cluster_id

    def partitions(self, topic: str) -> dict[int, list[Batch]]:
        """Every batch of ``topic``, by partition."""
        prefix = f"clusters/{self.cluster_id}/topics/{topic}/partitions/"
        found: dict[int, list[Batch]] = {}
        for key, written in self._list(prefix):
            parts = key[len(prefix) :].split("/")
            if len(parts) != 3 or parts[1] != "records" or not parts[2].endswith(".batch"):
                continue
            try:
                partition, offset = int(parts[0]), int(parts[2].removesuffix(".batch"))
            except ValueError:
                continue
            found.setdefault(partition, []).append(Batch(offset, written, key))
        return found

    def _list(self, prefix: str) -> Iterable[tuple[str, datetime]]:
        token: str | None = None
        while True:
            query = {"list-type": "2", "prefix": prefix, "max-keys": "1000"}
            if token:
                query["continuation-token"] = token
            url = f"{self.endpoint}/{self.bucket}?{urllib.parse.urlencode(query)}"
            with urllib.request.urlopen(url, timeout=30) as response:  # noqa: S310 - loopback
                # The answer comes from wattpay's own store on loopback, not from outside.
                root = ElementTree.fromstring(response.read())  # noqa: S314
            for item in root.iter(f"{S3_NAMESPACE}Contents"):
                key = item.findtext(f"{S3_NAMESPACE}Key") or ""
                stamp = item.findtext(f"{S3_NAMESPACE}LastModified") or ""
                try:
                    written = datetime.fromisoformat(stamp.replace("Z", "+00:00"))
                except ValueError:
                    continue
                yield key, written
            if root.findtext(f"{S3_NAMESPACE}IsTruncated") != "true":
                return
            token = root.findtext(f"{S3_NAMESPACE}NextContinuationToken")
            if not token:
                return

    def delete(self, keys: Iterable[str]) -> int:
        """Delete objects, one request each on one connection; how many went."""
        where = urllib.parse.urlsplit(self.endpoint)
        connection = http.client.HTTPConnection(where.hostname or "", where.port, timeout=30)
        done = 0
        try:
            for key in keys:
                connection.request("DELETE", f"/{self.bucket}/{urllib.parse.quote(key)}")
                response = connection.getresponse()
                response.read()
                if response.status in (200, 204, 404):
                    done += 1
        finally:
            connection.close()
        return done


@dataclass
class JanitorRound:
    """What one round removed, per topic."""

    removed: dict[str, int] = field(default_factory=dict)

    @property
    def total(self) -> int:
        """Batches removed in all."""
        return sum(self.removed.values())


class Janitor:
    """Removes what retention allows, every ``interval_seconds``, until stopped."""

    def __init__(
        self,
        settings: RetentionSettings,
        prefix: str,
        config: Mapping[str, str],
        objects: Callable[[], BatchObjects],
        recovery_dir: Path,
        vacuum: Callable[[], None] | None = None,
        on_round: Callable[[JanitorRound], None] | None = None,
    ) -> None:
        self.settings = settings
        self.prefix = prefix
        self.config = dict(config)
        self.objects = objects
        self.recovery_dir = recovery_dir
        self.vacuum = vacuum
        self.on_round = on_round
        self.rounds = 0

    def run(self, stop: threading.Event) -> None:
        """A round every interval; a failed round is logged and the next one tries again."""
        while not stop.wait(self.settings.interval_seconds):
            try:
                done = self.round()
            except Exception as err:  # noqa: BLE001 - the broker or store away: tried again later
                log.warning("retention round failed (tried again later): %s", err)
                continue
            if self.on_round is not None:
                self.on_round(done)
            if done.total:
                log.info("retention removed %d batches: %s", done.total, done.removed)

    def round(self, now: datetime | None = None) -> JanitorRound:
        """One pass over every topic."""
        now = now or datetime.now(UTC)
        inputs = recovery_positions(self.recovery_dir)
        committed = committed_positions(self.config)
        objects = self.objects()
        held = {name for name, _partition in committed}
        done = JanitorRound()
        for topic in CATALOGUE:
            if topic is ACCOUNT_EVENTS:
                continue
            name = topic.full_name(self.prefix)
            if topic.direction is Direction.IN:
                if inputs is None:
                    continue  # no snapshot yet: recovery may need every input
                cutoff = now - timedelta(days=self.settings.input_days)
            else:
                cutoff = now - timedelta(hours=self.settings.derived_hours)
            gone: list[str] = []
            for partition, batches in objects.partitions(name).items():
                if topic.direction is Direction.IN:
                    assert inputs is not None
                    bound: int | None = inputs.get(f"{name}:{partition}", 0)
                else:  # a topic some group reads is held at 0 where it has not committed yet
                    bound = committed.get((name, partition), 0 if name in held else None)
                gone += [b.key for b in removable(batches, bound, cutoff)]
            if gone:
                done.removed[topic.name] = objects.delete(gone)
        if done.total and self.vacuum is not None:
            self.vacuum()
        self.rounds += 1
        return done
