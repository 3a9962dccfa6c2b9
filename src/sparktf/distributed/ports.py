"""A TCP port for a TensorFlow worker, reserved without the bind-close race.

The usual recipe (spark-tensorflow-distributor, many others) binds port 0,
reads the port, *closes* the socket and hands the number to TensorFlow. Between
the close and TensorFlow's own bind, any process on the host may take the port,
and the worker dies with "Could not start gRPC server".

Here the reservation socket stays bound for the worker's whole life, with
``SO_REUSEPORT`` set, and TensorFlow's gRPC server is told to bind with
``SO_REUSEPORT`` too (``TF_GRPC_REUSE_PORT=1``; TensorFlow disables it by
default). Why this is race-free:

* From our bind on, the port is in use: the kernel never hands it out for
  another ``bind(0)``, and any other socket that binds it explicitly fails with
  ``EADDRINUSE`` unless it also sets ``SO_REUSEPORT`` *and* runs as the same
  user (Linux's rule against port hijacking).
* TensorFlow's server, in our own child process and as our user, sets
  ``SO_REUSEPORT`` and so binds and listens on the held port.
* Our socket never listens, so every connection to the port reaches
  TensorFlow's server (the kernel spreads connections over *listening* sockets
  only).

The reservation is released when the worker process has exited.

Which interfaces: TensorFlow's gRPC server listens on every interface, whatever
``TF_CONFIG`` says (``grpc_server_lib.cc`` hard-codes ``0.0.0.0:<port>``, and no
setting or environment variable changes it, up to TensorFlow 2.20 at least), so
the reservation binds the same wildcard address: only then is the port closed to
every other ``bind``. It never listens, so it accepts nothing itself. The
addresses the workers *connect to* are the executors' own, from Spark (see
:func:`~sparktf.distributed.tf_config.host_of`). Keep the TF workers' ports off
untrusted networks with the cluster's firewall.
"""

from __future__ import annotations

import socket
from collections.abc import Iterator
from contextlib import contextmanager

from sparktf.errors import LauncherError

__all__ = ["REUSE_PORT_ENV", "reserve_port"]

# Makes TensorFlow's gRPC server bind with SO_REUSEPORT (read in grpc_server_lib.cc).
REUSE_PORT_ENV = {"TF_GRPC_REUSE_PORT": "1"}


@contextmanager
def reserve_port(host: str = "0.0.0.0") -> Iterator[int]:  # noqa: S104 - never listens; TF's server binds it so
    """Hold a free TCP port for a TF worker while the ``with`` block runs.

    Start the TF process with :data:`REUSE_PORT_ENV` in its environment inside
    the block, and leave the block only after that process has exited.

    Yields:
        The reserved port number.

    Raises:
        LauncherError: the platform has no ``SO_REUSEPORT`` or no port could be bound.
    """
    if not hasattr(socket, "SO_REUSEPORT"):
        raise LauncherError(
            "This platform has no SO_REUSEPORT, which the launcher needs to reserve TF worker ports safely.",
            hint="Run the Spark executors on Linux (or macOS).",
        )
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        try:
            sock.bind((host, 0))
        except OSError as exc:
            raise LauncherError(
                f"Could not bind a TCP port on {host!r} for a TensorFlow worker: {exc}.",
                hint="Check the executor's network settings (SPARK_LOCAL_IP) and free ephemeral ports.",
                host=host,
            ) from None
        yield int(sock.getsockname()[1])
    finally:
        sock.close()
