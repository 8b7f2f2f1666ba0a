"""The embedded Kafka of ``wattpay up``: Tansu on an embedded S3 store, or Tansu in memory.

Durable (the default): Tansu keeps topics, messages and committed offsets in a bucket of a
SeaweedFS store whose data lives in ``STATE_DIR/s3``, so a crash or a restart of ``up``
loses nothing. The cluster id under which Tansu files its data is kept there too.

In memory (``wattpay up --memory-broker``): every topic and offset is gone when the broker
process ends.

`check` is the supervision step ``up`` runs every second: a dead store or a dead durable
broker is started again on the same ports, so every client carries on where it was; a dead
in-memory broker cannot be brought back, and ``up`` stops.
"""

from __future__ import annotations

import logging
import uuid
from pathlib import Path

from wattpay.broker import EmbeddedBroker
from wattpay.s3store import SeaweedStore
from wattpay.stale import reap_stale, record_pid

log = logging.getLogger(__name__)
BUCKET = "tansu"


class BrokerLost(RuntimeError):
    """The embedded broker died and what it held cannot be brought back."""


class EmbeddedKafka:
    """The embedded broker and, when durable, its S3 store; `start`, `check`, `stop`."""

    def __init__(self, state_dir: Path, *, memory: bool = False) -> None:
        self.state_dir = Path(state_dir)
        self.memory = memory
        self.store = None if memory else SeaweedStore(self.state_dir / "s3", bucket=BUCKET)
        self.broker: EmbeddedBroker | None = None

    @property
    def durable(self) -> bool:
        """Whether topics and offsets outlive a restart."""
        return not self.memory

    @property
    def config(self) -> dict[str, str]:
        """confluent-kafka client settings for the broker."""
        assert self.broker is not None
        return self.broker.config

    @property
    def description(self) -> str:
        """Where the topics live, for the banner."""
        if self.store is None:
            return "embedded, in memory: a restart starts with empty topics"
        return f"embedded, durable: topics kept in {self.store.directory}"

    def pids(self) -> dict[str, int | None]:
        """Process ids of the broker and the store (None when not running)."""
        return {
            "broker": self.broker.pid if self.broker is not None else None,
            "store": self.store.pid if self.store is not None else None,
        }

    def start(self) -> EmbeddedKafka:
        """Start the store (durable), then the broker on it."""
        if self.store is None:
            self.broker = EmbeddedBroker().start()
            self._record_broker()
            return self
        self.store.start()
        try:
            cluster_id = self._cluster_id()
            reap_stale(self.state_dir / "broker.pid", f"--cluster-id {cluster_id}", 10.0)
            self.broker = EmbeddedBroker(
                # What the broker acknowledged is in the store: no need to wait on a stop.
                stop_grace=2.0,
                storage=f"s3://{BUCKET}/",
                cluster_id=cluster_id,
                environment=self.store.environment,
            ).start()
        except Exception:
            self.store.stop()
            raise
        self._record_broker()
        return self

    @property
    def cluster_id(self) -> str:
        """The id the broker files its data under in the store (durable only)."""
        return self._cluster_id()

    def _cluster_id(self) -> str:
        assert self.store is not None
        path = self.store.directory / "cluster-id"
        try:
            return path.read_text(encoding="utf-8").strip()
        except OSError:
            cluster_id = f"wattpay-{uuid.uuid4().hex[:12]}"
            path.write_text(cluster_id + "\n", encoding="utf-8")
            return cluster_id

    def _record_broker(self) -> None:
        if self.broker is not None and self.broker.pid is not None:
            self.state_dir.mkdir(parents=True, exist_ok=True)
            record_pid(self.state_dir / "broker.pid", self.broker.pid)

    def check(self) -> list[str]:
        """Restart whatever died; what was done, one line each. Raises `BrokerLost`."""
        done: list[str] = []
        store, broker = self.store, self.broker
        if store is not None and not store.running:
            endpoint, code = store.endpoint, store.exit_code()
            log.warning("embedded S3 store exited (code %s); restarting it", code)
            store.restart()
            done.append(f"S3 store restarted after exit code {code}")
            if broker is not None and store.endpoint != endpoint:
                broker.environment.update(store.environment)
                broker.stop()  # its endpoint moved: start it again below
        if broker is not None and not broker.running:
            code = broker.exit_code()
            if store is None:
                raise BrokerLost(
                    f"the in-memory broker on {broker.bootstrap} exited (code {code}); its "
                    "topics are gone. Stopping; start `wattpay up` again."
                )
            log.warning("embedded broker exited (code %s); restarting it", code)
            broker.restart()
            self._record_broker()
            done.append(f"broker restarted on {broker.bootstrap} after exit code {code}")
        return done

    def stop(self) -> None:
        """Stop the broker, then the store. Safe to call twice."""
        if self.broker is not None:
            self.broker.stop()
            (self.state_dir / "broker.pid").unlink(missing_ok=True)
        if self.store is not None:
            self.store.stop()
