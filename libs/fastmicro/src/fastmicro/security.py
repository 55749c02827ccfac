"""Passwords (argon2id) and the `CurrentUser` dependency every service uses (tokens: fastmicro.tokens)."""

from __future__ import annotations

import asyncio
import uuid
from typing import TYPE_CHECKING, Annotated

from argon2 import PasswordHasher as _Argon2
from argon2.exceptions import InvalidHashError, VerificationError
from fastapi import Depends, Request
from fastapi.security import OAuth2PasswordBearer

from fastmicro.errors import AuthenticationError
from fastmicro.tokens import InvalidToken, Principal

if TYPE_CHECKING:
    from fastmicro.runtime import Runtime

__all__ = ["CurrentUser", "InvalidToken", "PasswordHasher", "Principal", "current_principal"]


class PasswordHasher:
    """argon2id with the library's RFC 9106 defaults; the work runs off the event loop."""

    def __init__(self, *, time_cost: int = 3, memory_cost_kib: int = 65536, parallelism: int = 4) -> None:
        self._argon2 = _Argon2(time_cost=time_cost, memory_cost=memory_cost_kib, parallelism=parallelism)
        # Verified against when the account does not exist, so that a miss costs what a hit costs.
        self._decoy = self._argon2.hash(uuid.uuid4().hex)

    async def hash(self, password: str) -> str:
        return await asyncio.to_thread(self._argon2.hash, password)

    async def verify(self, password_hash: str | None, password: str) -> bool:
        return await asyncio.to_thread(self._verify, password_hash or self._decoy, password) and bool(password_hash)

    def needs_rehash(self, password_hash: str) -> bool:
        return self._argon2.check_needs_rehash(password_hash)

    def _verify(self, password_hash: str, password: str) -> bool:
        try:
            return self._argon2.verify(password_hash, password)
        except (VerificationError, InvalidHashError):
            return False


class BearerPrincipal(OAuth2PasswordBearer):
    """The request's bearer token, verified: one dependency, which OpenAPI shows as the OAuth2 password flow.

    auto_error=False: a missing token is our 401 problem, not FastAPI's plain one. The verifier is the
    app's runtime's (built at startup), so verifying costs no further dependency.
    """

    def __init__(self) -> None:
        super().__init__(tokenUrl="/auth/token", scheme_name="OAuth2PasswordBearer", auto_error=False)

    async def __call__(self, request: Request) -> Principal:  # type: ignore[override]
        token = await super().__call__(request)
        if not token:
            raise AuthenticationError("Bearer token required", code="not_authenticated")
        runtime: Runtime = request.app.state.runtime
        principal = runtime.tokens.verify(token)
        revocations = runtime.revocations
        if revocations is not None and revocations.is_revoked(principal.user_id):
            raise InvalidToken()
        return principal


current_principal = BearerPrincipal()

CurrentUser = Annotated[Principal, Depends(current_principal)]
