"""Readiness of a service that publishes nothing: the contract's checks, and no outbox figures."""

from __future__ import annotations

import httpx


async def test_ready_reports_the_checks_and_no_outbox_figures(client: httpx.AsyncClient) -> None:
    response = await client.get("/health/ready")

    assert response.status_code == 200
    assert response.json() == {"status": "ok", "checks": {"database": "ok", "broker": "ok"}}
