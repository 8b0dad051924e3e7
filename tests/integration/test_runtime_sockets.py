"""The API workers' listening sockets (``plyr_appview.runtime.bind_api_sockets``)."""

from __future__ import annotations

import socket
import sys

import pytest

from plyr_appview.runtime import bind_api_sockets


def test_one_worker_gets_one_plain_socket():
    [sock] = bind_api_sockets("127.0.0.1", 0, 1)
    with sock:
        assert sock.getsockname()[1] > 0
        assert sock.getsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT) == 0


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="kernel balancing is Linux's")
def test_each_worker_gets_its_own_socket_and_connections_spread_over_them():
    socks = bind_api_sockets("127.0.0.1", 0, 2)
    try:
        assert len(socks) == 2
        port = socks[0].getsockname()[1]
        assert socks[1].getsockname()[1] == port
        clients = [socket.create_connection(("127.0.0.1", port)) for _ in range(64)]
        accepted = []
        for sock in socks:
            sock.setblocking(False)
            count = 0
            while True:
                try:
                    conn, _ = sock.accept()
                except BlockingIOError:
                    break
                conn.close()
                count += 1
            accepted.append(count)
        for client in clients:
            client.close()
        # The kernel spreads connections by a hash of their addresses: 64 connections
        # all on one socket would be a 1-in-2**63 event.
        assert sum(accepted) == 64 and min(accepted) > 0, accepted
    finally:
        for sock in socks:
            sock.close()
