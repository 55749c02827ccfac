"""Shared fixtures of the kernel's own tests."""

from __future__ import annotations

import pytest

from fastmicro.settings import ServiceSettings

#: Nothing listens here: apps built on it never touch a database unless a test asks them to.
UNUSED_DATABASE_URL = "postgresql+asyncpg://kernel@127.0.0.1:9/unused"


@pytest.fixture
def kernel_settings(amqp_namespace: str) -> ServiceSettings:
    """Settings for an in-process app whose routes need neither the database nor the broker."""
    return ServiceSettings(
        service_name="kernel-test",
        environment="test",
        database_url=UNUSED_DATABASE_URL,
        amqp_namespace=amqp_namespace,
        _env_file=None,
    )
