"""Shared test helpers for tests that drive real third-party programs (kcat, mbpoll, …)."""

from __future__ import annotations

import os
import shutil

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
