"""Crash tests of the whole `wattpay up`: a steady input feed that survives the kills.

The feed publishes an example set in its merged processing order (S14.1). Readings go in
small batches; every payment and account event is confirmed on its own before anything
later is sent, so the order that matters for money (an account's payments and events
against its readings) is the same however the broker's fetches interleave. When a batch is
not confirmed (the broker died under it), the feed waits for a broker, reads back which of
the batch's messages the broker kept, and sends only the others: nothing lost. A request
the broker was still writing when its S3 store died can land after that read, and its
messages then reach the topic twice (tests/integration/test_crash.py expects billing to
reject the copies).

After its S3 store dies, Tansu 0.6.0 can leave offsets it handed out but never wrote at the
end of a partition, and report a high watermark behind them: a reader there sees neither a
message nor the end of the partition until the next message lands (after it, the gap is
skipped). The read-back therefore ends when every partition is at its end or nothing more
has arrived for a few seconds.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import threading
import time
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, Producer, TopicPartition

from bus.kafka import PUBLISHER_SETTINGS
from pipelines.replay_files import merged_envelopes
from tests.live_harness import (
    WATTPAY,
    free_ports,
    start_up,
    up_command,
    up_environment,
)

INPUT_TOPICS = ("wattpay.accounts", "wattpay.payments", "wattpay.readings")
SENTINEL = "ZZ-END"
Message = tuple[str, bytes | None, bytes]


def feed_messages(directory: Path) -> list[Message]:
    """The example set in processing order, then an account opening that marks the end.

    The opening is a minute later than every input: a flow that catches up merges by
    timestamp, and on a tie it would take the opening before the last readings (S14.1).
    """
    messages: list[Message] = []
    last_ts: datetime | None = None
    for envelope in merged_envelopes(directory):
        payload = envelope.payload if isinstance(envelope.payload, dict) else {}
        field = "meter_id" if envelope.topic == "readings" else "account_id"
        key = payload.get(field)
        messages.append(
            (f"wattpay.{envelope.topic}", str(key).encode() if key else None, envelope.raw.encode())
        )
        try:
            ts = datetime.fromisoformat(str(payload.get("ts")))
        except ValueError:
            continue
        if ts.tzinfo is not None and (last_ts is None or ts > last_ts):
            last_ts = ts
    assert last_ts is not None, "no input with a timestamp"
    end = {
        "type": "open",
        "account_id": SENTINEL,
        "meter_id": "M-ZZ-END",
        "plan": "zhejiang-tiered",
        "ts": (last_ts + timedelta(minutes=1)).isoformat(),
    }
    messages.append(("wattpay.accounts", SENTINEL.encode(), json.dumps(end).encode()))
    return messages


def _groups(messages: list[Message], size: int) -> Iterator[list[Message]]:
    batch: list[Message] = []
    for message in messages:
        if message[0] != "wattpay.readings":
            if batch:
                yield batch
            yield [message]
            batch = []
            continue
        batch.append(message)
        if len(batch) >= size:
            yield batch
            batch = []
    if batch:
        yield batch


def read_values(
    bootstrap: str, topics: tuple[str, ...], timeout: float = 20.0, settle: float | None = None
) -> list[bytes]:
    """Every message value on ``topics``, read to the end of every partition (or raise).

    With ``settle``, the read also ends once every partition has answered (a message or its
    end) and no message has arrived for ``settle`` seconds: a partition ending in offsets the
    broker never wrote reports no end (module docstring).
    """
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": "crash-test-reader",
            "enable.auto.commit": "false",
            "enable.partition.eof": "true",
        }
    )
    try:
        metadata = consumer.list_topics(timeout=5)
        parts = [
            TopicPartition(t, p, OFFSET_BEGINNING)
            for t in topics
            for p in metadata.topics[t].partitions
        ]
        consumer.assign(parts)
        values: list[bytes] = []
        at_end: set[tuple[str, int]] = set()
        answered: set[tuple[str, int]] = set()
        deadline = time.monotonic() + timeout
        last_arrival = time.monotonic()
        while len(at_end) < len(parts):
            now = time.monotonic()
            if settle is not None and len(answered) == len(parts) and now - last_arrival > settle:
                break
            if now > deadline:
                raise TimeoutError(f"read {len(values)} messages, not to the end")
            for message in consumer.consume(1000, 0.3):
                error = message.error()
                if error is None:
                    values.append(message.value())
                    answered.add((message.topic(), message.partition()))
                    last_arrival = time.monotonic()
                elif error.code() == KafkaError._PARTITION_EOF:
                    at_end.add((message.topic(), message.partition()))
                    answered.add((message.topic(), message.partition()))
                else:
                    raise RuntimeError(str(error))
        return values
    finally:
        consumer.close()


class Feeder(threading.Thread):
    """Publishes the messages at a steady pace to whichever broker is connected."""

    def __init__(self, messages: list[Message], *, batch: int = 16, pause: float = 0.1) -> None:
        super().__init__(name="feeder", daemon=True)
        self.groups = list(_groups(messages, batch))
        self.pause = pause
        self.sent = 0
        self.retried = 0
        self.error: BaseException | None = None
        self._broker: str | None = None
        self._cond = threading.Condition()
        self._producer: tuple[str, Producer] | None = None

    def connect(self, bootstrap: str) -> None:
        with self._cond:
            self._broker = bootstrap
            self._cond.notify_all()

    def disconnect(self) -> None:
        with self._cond:
            self._broker = None

    def _current(self) -> str:
        with self._cond:
            self._cond.wait_for(lambda: self._broker is not None)
            return str(self._broker)

    def run(self) -> None:
        try:
            for group in self.groups:
                pending = group
                while pending:
                    if self._send(self._current(), pending):
                        self.sent += len(pending)
                        pending = []
                    else:
                        self.retried += 1
                        pending = self._missing(pending)
                time.sleep(self.pause)
        except BaseException as err:  # surfaced by the test
            self.error = err
        finally:
            self._producer = None

    def _send(self, bootstrap: str, group: list[Message]) -> bool:
        failures: list[KafkaError] = []
        if self._producer is None or self._producer[0] != bootstrap:
            producer = Producer(
                {
                    **PUBLISHER_SETTINGS,  # an idempotent producer can lose a batch here
                    "retries": "0",  # what was not confirmed is read back, then sent again
                    "bootstrap.servers": bootstrap,
                    "linger.ms": "2",
                    "message.timeout.ms": "4000",
                    "partitioner": "murmur2",
                }
            )
            self._producer = (bootstrap, producer)
        producer = self._producer[1]
        for topic, key, value in group:
            producer.produce(
                topic, value=value, key=key, on_delivery=lambda e, _m: e and failures.append(e)
            )
        left = producer.flush(8)
        if left or failures:
            self._producer = None  # a fresh client after an outage
            return False
        return True

    def _missing(self, group: list[Message], patience: float = 180.0) -> list[Message]:
        """Which messages of an unconfirmed group the broker does not hold."""
        deadline = time.monotonic() + patience
        while True:
            bootstrap = self._current()
            try:
                present = set(read_values(bootstrap, INPUT_TOPICS, settle=3.0))
            except Exception as err:  # the broker is not back yet
                if time.monotonic() > deadline:
                    raise TimeoutError(f"cannot read the inputs back: {err}") from err
                time.sleep(1.0)
                continue
            return [m for m in group if m[2] not in present]


class UpProcess:
    """`wattpay up` in its own process group, in its own working directory."""

    def __init__(self, work: Path) -> None:
        self.work = work
        self.state_dir = work / ".wattpay"
        self.dsn = f"chdb://{work / 'clickhouse'}"
        self.ports = free_ports()
        self.process: subprocess.Popen[bytes] | None = None

    def start(self, *extra: str) -> dict:
        state_file = self.state_dir / "up.json"
        state_file.unlink(missing_ok=True)
        log_path = self.work / "up.log"

        def launch(ports: dict[str, int]) -> subprocess.Popen[bytes]:
            with log_path.open("ab") as log:
                return subprocess.Popen(
                    up_command(self.dsn, ports, *extra),
                    cwd=self.work,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    env=up_environment(ports),
                    start_new_session=True,
                )

        self.process, self.ports = start_up(
            launch, self.ports, log_path, state_file, 120, first=self.process is None
        )
        self.state = json.loads(state_file.read_text())
        return self.state

    def kill_group(self) -> None:
        """SIGKILL `up` and every process of its group, as a crash or the OOM killer would."""
        assert self.process is not None
        os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait()

    def stop(self) -> int:
        assert self.process is not None
        self.process.send_signal(signal.SIGINT)
        return self.process.wait(120)

    def query(self, sql: str) -> list[dict]:
        """A query answered by the running instance (`wattpay sql` finds it)."""
        done = subprocess.run(
            [*WATTPAY, "sql", sql, "--format", "json"],
            cwd=self.work,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        if done.returncode != 0:
            raise OSError(done.stderr)
        return json.loads(done.stdout)

    def loaded_everything(self) -> bool:
        """The loader has committed every partition of the facts topic to its end.

        The sentinel's row in ClickHouse says the last input was billed; other accounts'
        facts of the same moment may sit in another partition the loader has yet to write.
        """
        return facts_loaded(self.state["brokers"])

    def has_sentinel(self) -> bool:
        try:
            rows = self.query(f"SELECT count() AS n FROM accounts WHERE account_id = '{SENTINEL}'")
        except (OSError, ValueError, subprocess.TimeoutExpired):
            return False
        return bool(rows) and int(rows[0]["n"]) > 0

    def pid(self, name: str) -> int | None:
        """The pid in a pid file of the state dir (broker.pid, s3/weed.pid) if it runs."""
        try:
            pid = int((self.state_dir / name).read_text().split()[0])
            os.kill(pid, 0)
        except (OSError, ValueError, IndexError):  # no file, or not a pid (yet)
            return None
        return pid


def facts_loaded(bootstrap: str, topic: str = "wattpay.facts") -> bool:
    """Whether the loader's group has committed every partition of ``topic`` to its end."""
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": "wattpay-loader",
            "enable.auto.commit": "false",
        }
    )
    try:
        partitions = consumer.list_topics(topic, timeout=5).topics[topic].partitions
        places = [TopicPartition(topic, p) for p in partitions]
        for place in consumer.committed(places, timeout=10):
            _, end = consumer.get_watermark_offsets(place, timeout=5)
            if end > max(place.offset, 0):
                return False
        return True
    finally:
        consumer.close()
