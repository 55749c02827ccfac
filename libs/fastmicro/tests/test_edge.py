"""At the edge: security headers on every answer, /docs off in production, /metrics behind a token."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import SecretStr

from fastmicro.settings import ServiceSettings
from fastmicro.testing import app_client
from fastmicro.testing.tokens import new_signing_key
from fastmicro.tokens import PublicKeySet, SigningKey
from fastmicro.web import create_app

from .conftest import UNUSED_DATABASE_URL

METRICS_TOKEN = "m" * 40
PRIVATE_KEYS = PublicKeySet.of(SigningKey.from_json(new_signing_key("prod-edge"))).to_json()


def production(**overrides: Any) -> ServiceSettings:
    values: dict[str, Any] = {
        "service_name": "kernel-test",
        "environment": "production",
        "database_url": "postgresql+asyncpg://kernel:s3cr3t-pw@127.0.0.1:9/unused",
        "amqp_url": "amqp://fastmicro:s3cr3t-pw@127.0.0.1:9/",
        "jwt_public_keys": PRIVATE_KEYS,
        "metrics_token": SecretStr(METRICS_TOKEN),
        **overrides,
    }
    return ServiceSettings(_env_file=None, **values)


def app_of(settings: ServiceSettings) -> Any:
    return create_app(settings, title="edge", roles=lambda _runtime: (), outbox=False)


async def test_every_answer_carries_the_security_headers(kernel_settings: ServiceSettings) -> None:
    async with app_client(app_of(kernel_settings)) as client:
        for response in (await client.get("/health/live"), await client.get("/no-such-route")):
            assert response.headers["x-content-type-options"] == "nosniff"
            assert response.headers["x-frame-options"] == "DENY"
            assert response.headers["referrer-policy"] == "no-referrer"
            assert response.headers["cross-origin-resource-policy"] == "same-origin"
            assert response.headers["content-security-policy"] == "default-src 'none'; frame-ancestors 'none'"
            assert response.headers["cache-control"] == "no-store"
            assert "strict-transport-security" not in response.headers  # development: plain HTTP
            assert "server" not in response.headers


async def test_the_docs_keep_their_own_content_policy_in_development(kernel_settings: ServiceSettings) -> None:
    async with app_client(app_of(kernel_settings)) as client:
        docs = await client.get("/docs")
        schema = await client.get("/openapi.json")

    assert docs.status_code == 200
    assert "content-security-policy" not in docs.headers  # the Swagger UI loads its scripts
    assert docs.headers["x-content-type-options"] == "nosniff"
    assert schema.status_code == 200


async def test_production_serves_no_docs_and_sends_hsts() -> None:
    async with app_client(app_of(production())) as client:
        for path in ("/docs", "/redoc", "/openapi.json", "/asyncapi.json"):
            assert (await client.get(path)).status_code == 404, path
        live = await client.get("/health/live")

    assert live.headers["strict-transport-security"] == "max-age=31536000; includeSubDomains"


async def test_production_serves_the_docs_when_asked_to() -> None:
    async with app_client(app_of(production(api_docs=True))) as client:
        assert (await client.get("/openapi.json")).status_code == 200
        assert (await client.get("/asyncapi.json")).json()["asyncapi"] == "3.0.0"


@pytest.mark.parametrize(
    ("authorization", "status"),
    [(None, 401), ("Bearer wrong", 401), (f"Basic {METRICS_TOKEN}", 401), (f"Bearer {METRICS_TOKEN}", 200)],
    ids=["none", "wrong-token", "wrong-scheme", "the-token"],
)
async def test_metrics_need_the_token_when_one_is_set(authorization: str | None, status: int) -> None:
    headers = {"Authorization": authorization} if authorization else {}
    async with app_client(app_of(production())) as client:
        response = await client.get("/metrics", headers=headers)

    assert response.status_code == status
    if status == 200:
        assert "http_requests_total" in response.text
    else:
        assert response.json()["code"] == "not_authenticated"


def test_production_refuses_to_serve_without_a_metrics_token() -> None:
    with pytest.raises(RuntimeError, match="METRICS_TOKEN must be set in production"):
        app_of(production(metrics_token=None))


@pytest.mark.parametrize("token", ["short", "change-me-" + "x" * 40], ids=["short", "example"])
def test_production_refuses_a_weak_metrics_token(token: str) -> None:
    with pytest.raises(ValueError, match="METRICS_TOKEN must be a private value"):
        production(metrics_token=SecretStr(token))


def test_development_leaves_metrics_open_and_docs_on() -> None:
    settings = ServiceSettings(service_name="kernel-test", database_url=UNUSED_DATABASE_URL, _env_file=None)

    assert settings.metrics_token is None
    assert settings.docs_enabled()
