"""Shared test helpers for tests that drive real third-party programs (kcat, mbpoll, …)."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest


def require_tool(name: str, *, package: str | None = None) -> str:
    """Path of the program ``name``; fails on CI (``CI=true``), skips elsewhere, if missing."""
    path = shutil.which(name)
    if path is not None:
        return path
    message = f"{name} is not installed (apt-get install -y {package or name})"
    if os.environ.get("CI") == "true":
        pytest.fail(message)
    pytest.skip(message)


FIRST_FIXED_LIBRDKAFKA = (2, 1, 1)


def _librdkafka_version(kcat: str, env: dict[str, str]) -> tuple[int, ...]:
    import re
    import subprocess

    shown = subprocess.run([kcat, "-V"], capture_output=True, text=True, env=env, check=False)
    found = re.search(r"librdkafka (\d+)\.(\d+)\.(\d+)", shown.stdout + shown.stderr)
    assert found, f"cannot tell kcat's librdkafka version: {shown.stdout!r}"
    return tuple(int(part) for part in found.groups())


def kcat_command(workdir: Path) -> tuple[str, dict[str, str]]:
    """The kcat program and an environment it can reach the embedded broker with.

    Debian 12's kcat links librdkafka 2.0.2, which cannot parse the broker's ApiVersions v3
    response (fixed in librdkafka 2.1.1); kcat then runs on the librdkafka bundled with
    confluent-kafka. kcat itself is unchanged.
    """
    import confluent_kafka

    path = require_tool("kcat")
    env = dict(os.environ)
    if _librdkafka_version(path, env) < FIRST_FIXED_LIBRDKAFKA:
        wheel_libs = Path(confluent_kafka.__file__).resolve().parent.parent / "confluent_kafka.libs"
        bundled = sorted(wheel_libs.glob("librdkafka*.so*"))
        if not bundled:
            pytest.fail("kcat's librdkafka is older than 2.1.1 and no newer one is bundled")
        libdir = workdir / "librdkafka"
        libdir.mkdir(exist_ok=True)
        link = libdir / "librdkafka.so.1"
        if not link.exists():
            link.symlink_to(bundled[0])
        env["LD_LIBRARY_PATH"] = os.pathsep.join(
            filter(None, [str(libdir), env.get("LD_LIBRARY_PATH")])
        )
        assert _librdkafka_version(path, env) >= FIRST_FIXED_LIBRDKAFKA
    return path, env
