"""Ports chosen now and bound later stay out of the range outgoing connections take theirs from."""

import socket
from pathlib import Path

import pytest

from bus import ports
from bus.ports import EPHEMERAL, FIRST_CHOSEN, free_port, free_ports, port_is_free
from pipelines.cluster import is_listening


def test_chosen_ports_are_free_distinct_and_below_the_ephemeral_range() -> None:
    ephemeral_low = int(EPHEMERAL.read_text(encoding="ascii").split()[0])
    ports = free_ports(8)
    assert len(set(ports)) == 8
    for port in [*ports, free_port()]:
        assert FIRST_CHOSEN <= port < ephemeral_low  # never an outgoing connection's
        with socket.socket() as server:  # free: a server can listen there
            server.bind(("127.0.0.1", port))
            server.listen()
            assert not port_is_free(port)


@pytest.mark.parametrize("kernel_range", ["", "garbage\n", "1024\t65535\n", "10500 60999\n"])
def test_without_a_usable_range_below_the_ephemeral_one_the_kernel_picks(
    kernel_range: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake = tmp_path / "ip_local_port_range"
    fake.write_text(kernel_range, encoding="ascii")
    monkeypatch.setattr(ports, "EPHEMERAL", fake)
    chosen = free_ports(4)
    assert len(set(chosen)) == 4
    assert all(port_is_free(port) for port in chosen)


def test_an_odd_address_is_left_to_bytewax() -> None:
    for address in ("127.0.0.1:99999", "127.0.0.1:0", "127.0.0.1:", "[::1]:80", "nohost"):
        assert is_listening(address)
