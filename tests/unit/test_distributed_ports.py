"""Port reservation: the held port is closed to others and open to the TF server."""

from __future__ import annotations

import socket

import pytest

from sparktf.distributed.ports import REUSE_PORT_ENV, reserve_port


def test_a_reserved_port_cannot_be_taken_by_another_socket() -> None:
    with reserve_port() as port:
        intruder = socket.socket()
        with pytest.raises(OSError):
            intruder.bind(("0.0.0.0", port))
        intruder.close()


def test_a_reuse_port_server_like_tensorflows_binds_it_and_gets_the_connections() -> None:
    with reserve_port() as port:
        # What TensorFlow's gRPC server does with TF_GRPC_REUSE_PORT=1.
        server = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        server.bind(("0.0.0.0", port))
        server.listen(1)
        client = socket.create_connection(("127.0.0.1", port), timeout=10)
        conn, _ = server.accept()
        client.sendall(b"ping")
        assert conn.recv(4) == b"ping"
        for s in (conn, client, server):
            s.close()
    assert REUSE_PORT_ENV == {"TF_GRPC_REUSE_PORT": "1"}


def test_reservations_never_share_a_port() -> None:
    with reserve_port() as a, reserve_port() as b, reserve_port() as c:
        assert len({a, b, c}) == 3


def test_the_port_is_free_again_after_the_block() -> None:
    with reserve_port() as port:
        pass
    again = socket.socket()
    again.bind(("0.0.0.0", port))
    again.close()
