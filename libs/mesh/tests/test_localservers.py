"""Free ports for local servers: a mesh started on `MeshPorts.free()` needs 13 distinct ones."""

from __future__ import annotations

import socket

import pytest

from voicemesh.mesh.localservers import free_port

pytestmark = pytest.mark.unit


def test_free_ports_handed_out_in_a_row_are_distinct() -> None:
    # The kernel alone repeats a just-closed port often enough that 500 draws almost surely
    # hold one (about 4 repeats expected over its ~28,000 ephemeral ports).
    ports = [free_port() for _ in range(500)]
    assert len(set(ports)) == len(ports)


def test_a_free_port_can_be_bound() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", free_port()))
