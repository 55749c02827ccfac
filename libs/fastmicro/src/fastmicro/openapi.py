"""The OpenAPI document as the services behave: problem responses as sent, and links between operations."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI

from fastmicro.errors import PROBLEM_CONTENT_TYPE


def link(method: str, path: str, **parameters: str) -> dict[str, Any]:
    """An OpenAPI link to the operation `method path`, each parameter a runtime expression.

    For `responses={201: {"links": {"GetUser": link("GET", "/users/{user_id}", user_id="$response.body#/id")}}}`:
    clients, and the fuzzer's stateful tests, follow it from a response to the next request.
    """
    pointer = path.replace("~", "~0").replace("/", "~1")
    return {"operationRef": f"#/paths/{pointer}/{method.lower()}", "parameters": parameters}


def document_problems(app: FastAPI) -> None:
    """Document error responses as they are sent: `application/problem+json`, with the `Problem` schema.

    `problems(...)` gives FastAPI the model, which it files under the route's media type
    (application/json): the document then promised a content type no error has, and a problem
    body that nothing checked against its schema.
    """
    generate = app.openapi

    def openapi() -> dict[str, Any]:
        generated = app.openapi_schema is None
        document = generate()  # cached by FastAPI after the first call
        if generated:
            for operations in document["paths"].values():
                for operation in operations.values():
                    for response in operation.get("responses", {}).values():
                        content = response.get("content", {})
                        if PROBLEM_CONTENT_TYPE in content and "application/json" in content:
                            content[PROBLEM_CONTENT_TYPE] = content.pop("application/json")
        return document

    app.openapi = openapi  # type: ignore[method-assign]
