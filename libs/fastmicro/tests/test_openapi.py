"""The OpenAPI document says what the app sends: problem responses as application/problem+json, and links."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from fastmicro.errors import PROBLEM_CONTENT_TYPE, problems
from fastmicro.openapi import link
from fastmicro.settings import ServiceSettings
from fastmicro.web import create_app

router = APIRouter()
THING = {"thing_id": "$response.body#/id"}


@router.post(
    "/things", status_code=201, responses={201: {"links": {"Get": link("GET", "/things/{thing_id}", **THING)}}}
)
async def create() -> dict[str, int]:
    return {"id": 1}


@router.get("/things/{thing_id}", responses=problems(404, 422))
async def read(thing_id: int) -> dict[str, int]:
    return {"id": thing_id}


def document(settings: ServiceSettings) -> dict[str, Any]:
    return create_app(settings, title="openapi", routers=[router], roles=lambda _runtime: ()).openapi()


def test_problems_are_documented_as_problem_json_with_their_schema(kernel_settings: ServiceSettings) -> None:
    responses = document(kernel_settings)["paths"]["/things/{thing_id}"]["get"]["responses"]

    for status in ("404", "422"):
        assert responses[status]["content"] == {
            PROBLEM_CONTENT_TYPE: {"schema": {"$ref": "#/components/schemas/Problem"}}
        }
    assert responses["200"]["content"].keys() == {"application/json"}


def test_the_document_is_the_same_on_every_call(kernel_settings: ServiceSettings) -> None:
    app = create_app(kernel_settings, title="openapi", routers=[router], roles=lambda _runtime: ())

    assert app.openapi() is app.openapi()
    assert PROBLEM_CONTENT_TYPE in app.openapi()["paths"]["/things/{thing_id}"]["get"]["responses"]["404"]["content"]


def test_a_link_names_its_operation_by_reference(kernel_settings: ServiceSettings) -> None:
    created = document(kernel_settings)["paths"]["/things"]["post"]["responses"]["201"]

    assert created["links"] == {
        "Get": {"operationRef": "#/paths/~1things~1{thing_id}/get", "parameters": {"thing_id": "$response.body#/id"}}
    }
    assert created["content"]["application/json"]  # the response's own schema stays beside its links
