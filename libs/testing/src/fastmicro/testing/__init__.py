"""Test support for fastmicro services: real servers, throwaway databases, the bus, fault injection."""

from fastmicro.testing.bus import publish_envelope, publish_event, publish_raw
from fastmicro.testing.catcher import EventCatcher, catch_events
from fastmicro.testing.client import app_client
from fastmicro.testing.contracts import committed_example
from fastmicro.testing.delivery import EventDelivery
from fastmicro.testing.plugin import migrated_database
from fastmicro.testing.processes import ServiceProcess
from fastmicro.testing.proxy import TcpProxy
from fastmicro.testing.servers import TestServers

__all__ = [
    "EventCatcher",
    "EventDelivery",
    "ServiceProcess",
    "TcpProxy",
    "TestServers",
    "app_client",
    "catch_events",
    "committed_example",
    "migrated_database",
    "publish_envelope",
    "publish_event",
    "publish_raw",
]
