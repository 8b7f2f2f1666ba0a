"""Ports chosen now and bound later stay out of the range outgoing connections take theirs from."""

import socket

from bus.ports import EPHEMERAL, FIRST_CHOSEN, free_port, free_ports, port_is_free


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
