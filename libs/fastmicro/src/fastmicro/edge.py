"""What every response carries at the edge: the headers a reviewer expects on a JSON API.

- `X-Content-Type-Options: nosniff`: a JSON body is never run as a script or a page.
- `Content-Security-Policy: default-src 'none'; frame-ancestors 'none'` and
  `X-Frame-Options: DENY`: nothing an API answers loads anything or is framed (the /docs pages,
  which load the Swagger UI, are left their own policy).
- `Referrer-Policy: no-referrer`, `Cross-Origin-Resource-Policy: same-origin`.
- `Cache-Control: no-store` unless the route set its own: answers are per user.
- In production, `Strict-Transport-Security` (the edge serves HTTPS; browsers ignore it over HTTP).
"""

from __future__ import annotations

from starlette.types import ASGIApp, Message, Receive, Scope, Send

_ALWAYS = [
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"no-referrer"),
    (b"cross-origin-resource-policy", b"same-origin"),
]
_API_ONLY = [(b"content-security-policy", b"default-src 'none'; frame-ancestors 'none'")]
_HSTS = [(b"strict-transport-security", b"max-age=31536000; includeSubDomains")]
_NO_STORE = (b"cache-control", b"no-store")
_DOCS_PATHS = ("/docs", "/redoc")


class SecurityHeadersMiddleware:
    def __init__(self, app: ASGIApp, *, hsts: bool) -> None:
        self.app = app
        self._api_headers = _ALWAYS + _API_ONLY + (_HSTS if hsts else [])
        self._docs_headers = _ALWAYS + (_HSTS if hsts else [])

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        docs = scope["path"].startswith(_DOCS_PATHS)
        extra = self._docs_headers if docs else self._api_headers

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                if not any(name.lower() == b"cache-control" for name, _ in headers):
                    headers.append(_NO_STORE)
                message["headers"] = headers + extra
            await send(message)

        await self.app(scope, receive, send_with_headers)
