"""Helpers for tests of the web app: a real ``wattpay web`` process and plain HTTP requests."""

from __future__ import annotations

import json
import os
import subprocess
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from tests.live_harness import WATTPAY, free_port, wait_until


@dataclass
class Reply:
    status: int
    headers: dict[str, str]
    body: bytes

    @property
    def text(self) -> str:
        return self.body.decode("utf-8")

    def json(self):
        return json.loads(self.body)


def get(url: str, headers: dict[str, str] | None = None, method: str = "GET") -> Reply:
    """One HTTP request to a loopback URL; error statuses are returned, not raised."""
    request = urllib.request.Request(url, headers=headers or {}, method=method)
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return Reply(response.status, dict(response.headers.items()), response.read())
    except urllib.error.HTTPError as err:
        return Reply(err.code, dict(err.headers.items()), err.read())


class WebProcess:
    """``wattpay web`` against a ClickHouse DSN, on a free port."""

    def __init__(self, dsn: str, work: Path, *extra: str, host: str = "127.0.0.1", env=None):
        self.host = host
        self.port = free_port()
        self.url = f"http://{host}:{self.port}"
        self.log_path = work / f"web-{self.port}.log"
        self.command = [
            *WATTPAY,
            "web",
            "--clickhouse",
            dsn,
            "--host",
            host,
            "--port",
            str(self.port),
            *extra,
        ]
        self.env = {**os.environ, "WATTPAY_WEB_TOKEN": "", **(env or {})}
        self.process: subprocess.Popen[bytes] | None = None

    def start(self, ready_headers: dict[str, str] | None = None) -> WebProcess:
        self.log = self.log_path.open("ab")
        self.process = subprocess.Popen(
            self.command, stdout=self.log, stderr=subprocess.STDOUT, env=self.env
        )

        def answers() -> bool:
            assert self.process is not None and self.process.poll() is None, self.read_log()
            try:
                return get(self.url + "/health", ready_headers).status == 200
            except OSError:
                return False

        wait_until(answers, 60, f"wattpay web on {self.url}")
        return self

    def read_log(self) -> str:
        return self.log_path.read_text(encoding="utf-8", errors="replace")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(30)
        self.log.close()

    def __enter__(self) -> WebProcess:
        return self if self.process is not None else self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
