"""Host port allocation."""

from __future__ import annotations

import socket

from stacks.deployer.runtime import ports


def test_allocated_ports_are_free_in_range_and_not_handed_out_twice() -> None:
    handed = [ports.allocate() for _ in range(50)]
    assert all(ports.PORT_MIN <= p <= ports.PORT_MAX for p in handed)
    assert len(set(handed)) == len(handed)
    assert all(ports.is_free(p) for p in handed)


def test_a_listening_port_is_not_free_and_excluded_ports_are_skipped() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        busy = sock.getsockname()[1]
        assert not ports.is_free(busy)
    first = ports.allocate()
    assert ports.allocate(exclude=[first]) != first
