"""Listening sockets several processes share (``SO_REUSEPORT``): the Stratum port of a market's
local gateways (``hashmarket serve --gateways N``).

The kernel spreads new connections over every listening socket of the group, so each gateway
process takes its share of the miners; when one dies its socket leaves the group and new
connections go to the others. The market holds one more socket of the group, bound but never
listening (``reserve_shared_port``): it fixes the port number before any gateway starts (a
port 0 in the flags becomes a real one), and keeps it while gateways come and go. Sharing needs
the same user in every process, which children of one market are.
"""

from __future__ import annotations

import socket

import trio


def _shared_socket(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind((host, port))
    except OSError:
        sock.close()
        raise
    return sock


def reserve_shared_port(host: str, port: int) -> socket.socket:
    """A bound, non-listening ``SO_REUSEPORT`` socket on ``host``:``port`` (0: a free port):
    the port for processes that ``open_shared_listeners`` on it. Raises ``OSError`` if it
    cannot be bound."""
    return _shared_socket(host, port)


async def open_shared_listeners(host: str, port: int) -> list[trio.SocketListener]:
    """One listener on ``host``:``port`` in a ``SO_REUSEPORT`` group, as
    ``trio.open_tcp_listeners`` returns them. Raises ``OSError`` if it cannot be bound."""
    sock = _shared_socket(host, port)
    try:
        sock.listen(socket.SOMAXCONN)
        sock.setblocking(False)
        return [trio.SocketListener(trio.socket.from_stdlib_socket(sock))]
    except BaseException:
        sock.close()
        raise
