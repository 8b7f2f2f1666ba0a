"""Loopback ports: one that nothing listens on, and whether one is free.

Everything wattpay starts listens on loopback by default (``HOST``).
"""

from __future__ import annotations

import random
import socket
from contextlib import ExitStack
from itertools import islice
from pathlib import Path

HOST = "127.0.0.1"


FIRST_CHOSEN = 10_000
"""The lowest port ``free_port`` picks (above the usual services' ports)."""
EPHEMERAL = Path("/proc/sys/net/ipv4/ip_local_port_range")


def free_port(host: str = HOST) -> int:
    """A TCP port on ``host`` that nothing listens on now and no connection will be given."""
    return free_ports(1, host)[0]


def free_ports(count: int, host: str = HOST) -> list[int]:
    """``count`` distinct TCP ports on ``host`` that nothing listens on now.

    A port is often bound later, by another process, and again after a restart (``wattpay
    up``'s billing flow binds its metrics port when it starts; the S3 store's server
    restarts on the ports it wrote down). A port from the kernel's ephemeral range, where
    ``bind(0)`` picks, is also where every outgoing connection takes its local port: one
    that lasts would hold it meanwhile, and the bind would fail for as long as it lasts.
    So the ports are drawn at random below that range, among those free now.
    """
    low = _ephemeral_low()
    if low is not None and low - FIRST_CHOSEN >= 1_000:
        candidates = random.sample(range(FIRST_CHOSEN, low), k=min(low - FIRST_CHOSEN, 400))
        chosen = list(islice((p for p in candidates if port_is_free(p, host)), count))
        if len(chosen) == count:
            return chosen
    with ExitStack() as stack:  # no range known below the ephemeral one: the kernel's picks
        ports = []
        for _ in range(count):
            probe = stack.enter_context(socket.socket(socket.AF_INET, socket.SOCK_STREAM))
            probe.bind((host, 0))
            ports.append(int(probe.getsockname()[1]))
        return ports


def _ephemeral_low() -> int | None:
    """The first port of the kernel's ephemeral range (Linux), or None when unknown."""
    try:
        return int(EPHEMERAL.read_text(encoding="ascii").split()[0])
    except (OSError, ValueError, IndexError):
        return None


def port_is_free(port: int, host: str = HOST) -> bool:
    """Whether a bind to ``host:port`` succeeds (nothing listens there).

    Connections of a server that just exited linger in TIME_WAIT; like the servers
    themselves, the probe binds with SO_REUSEADDR, so they do not count.
    """
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError:
            return False
        return True
