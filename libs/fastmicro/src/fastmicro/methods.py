"""405 Method Not Allowed, decided per resource, with an `Allow` header that names all its methods.

Starlette answers 405 with the methods of the first route whose path matches, though several
routes may serve one path (GET and PATCH /users/{user_id} are two), and a request to a literal
path (PATCH /users/me) falls through to a parametrised route of that method (PATCH
/users/{user_id}, which then refuses "me" as an id). Here the resource is the first path
template that matches, as routing tries them, and it allows the methods of every route of that
template.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from fastapi.routing import iter_route_contexts
from starlette._utils import get_route_path

from fastmicro.errors import problem, problem_response

if TYPE_CHECKING:
    from collections.abc import Sequence

    from starlette.routing import BaseRoute
    from starlette.types import ASGIApp, Receive, Scope, Send

Resources = list[tuple[re.Pattern[str], frozenset[str]]]


class MethodNotAllowedMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self._resources: Resources | None = None  # built at the first request: every route is in by then

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            if self._resources is None:
                self._resources = resources(scope["app"].router.routes)
            allowed = allowed_methods(self._resources, get_route_path(scope))
            if allowed is not None and scope["method"] not in allowed:
                body = problem(405, "Method Not Allowed", "method_not_allowed")
                await problem_response(body, {"Allow": ", ".join(sorted(allowed))})(scope, receive, send)
                return
        await self.app(scope, receive, send)


def resources(routes: Sequence[BaseRoute]) -> Resources:
    """Each path template once, in routing order, with the methods of all its routes (included routers' too)."""
    methods: dict[str, set[str]] = {}
    patterns: dict[str, re.Pattern[str]] = {}
    for route in iter_route_contexts(routes):
        path, regex, route_methods = route.path, getattr(route, "path_regex", None), route.methods
        if isinstance(path, str) and isinstance(regex, re.Pattern) and route_methods:
            patterns.setdefault(path, regex)
            methods.setdefault(path, set()).update(route_methods)
    return [(patterns[path], frozenset(allowed)) for path, allowed in methods.items()]


def allowed_methods(resources: Resources, path: str) -> frozenset[str] | None:
    """The methods the resource at `path` allows; None when no route serves it (a 404 then)."""
    for pattern, allowed in resources:
        if pattern.match(path):
            return allowed
    return None
