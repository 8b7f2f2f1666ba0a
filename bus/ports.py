"""Loopback ports: one that nothing listens on, and whether one is free.

Everything wattpay starts listens on loopback by default (``HOST``).
"""

from __future__ import annotations

import socket

HOST = "127.0.0.1"


def free_port(host: str = HOST) -> int:
    """A TCP port on ``host`` that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((host, 0))
        return int(probe.getsockname()[1])


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
