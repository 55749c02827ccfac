"""Ports for servers a test starts as processes, found free before they bind them."""

from __future__ import annotations

import os
import socket
from collections.abc import Iterable
from pathlib import Path


def free_port_base(offsets: Iterable[int]) -> int:
    """A base at which `base + offset` is free on 127.0.0.1 for every offset.

    The ports are found free some seconds before the servers bind them, so the base is kept
    below the kernel's ephemeral range where it can be: a port in that range may meanwhile become
    the local port of any outgoing connection on the machine, and the server's bind then fails.
    """
    wanted = tuple(offsets)
    lowest, highest = 10000, _first_ephemeral_port() - max(wanted) - 1
    if highest - lowest < 1000:  # an ephemeral range that starts low: anywhere
        lowest, highest = 20000, 40000
    for _ in range(50):
        base = lowest + int.from_bytes(os.urandom(2), "big") % (highest - lowest)
        if all(_free(base + offset) for offset in wanted):
            return base
    raise RuntimeError(f"no base with ports +{wanted} free")


def _first_ephemeral_port() -> int:
    """Where the kernel starts handing out local ports to outgoing connections (Linux; else its default)."""
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


def _free(port: int) -> bool:
    with socket.socket() as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as servers bind: TIME_WAIT is no obstacle
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True
