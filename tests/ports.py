"""Ports for tests that need something to be refused."""

import socket


def closed_port() -> int:
    """A port on 127.0.0.1 that nothing listens on: the probe that found it is closed again."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]
