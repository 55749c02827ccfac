from __future__ import annotations

from pydantic import Field

from fastmicro.settings import ServiceSettings


class UsersSettings(ServiceSettings):
    service_name: str = "users"
    http_port: int = 8001
    database_url: str = "postgresql+asyncpg://postgres@127.0.0.1:5432/users"

    # argon2id cost (RFC 9106 second recommendation by default); lower only in tests.
    password_hash_time_cost: int = Field(default=3, ge=1)
    password_hash_memory_kib: int = Field(default=65536, ge=8)
    password_hash_parallelism: int = Field(default=4, ge=1)
