"""Passwords (argon2id) and bearer tokens (JWT), and the `CurrentUser` dependency every service uses."""

from __future__ import annotations

import asyncio
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Annotated

import jwt
from argon2 import PasswordHasher as _Argon2
from argon2.exceptions import InvalidHashError, VerificationError
from fastapi import Depends, Request
from fastapi.security import OAuth2PasswordBearer

from fastmicro.errors import AuthenticationError

UserId = uuid.UUID


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


class InvalidToken(AuthenticationError):
    code = "invalid_token"
    detail = "The token is invalid or has expired"


@dataclass(frozen=True, slots=True)
class Principal:
    """Who a verified token speaks for."""

    user_id: UserId
    token_id: str
    expires_at: datetime


@dataclass(frozen=True, slots=True)
class IssuedToken:
    access_token: str
    expires_in: int


class TokenCodec:
    """Issues and verifies JWTs. The algorithm is pinned: a token cannot choose how it is checked."""

    def __init__(self, secret: str, *, algorithm: str, issuer: str, audience: str, ttl_seconds: int) -> None:
        self._secret = secret
        self._algorithm = algorithm
        self._issuer = issuer
        self._audience = audience
        self._ttl = ttl_seconds

    def issue(self, user_id: UserId) -> IssuedToken:
        now = datetime.now(UTC)
        claims = {
            "sub": str(user_id),
            "iss": self._issuer,
            "aud": self._audience,
            "iat": now,
            "exp": now + timedelta(seconds=self._ttl),
            "jti": uuid.uuid4().hex,
        }
        return IssuedToken(jwt.encode(claims, self._secret, algorithm=self._algorithm), self._ttl)

    def verify(self, token: str) -> Principal:
        try:
            claims = jwt.decode(
                token,
                self._secret,
                algorithms=[self._algorithm],
                issuer=self._issuer,
                audience=self._audience,
                options={"require": ["exp", "iat", "sub", "iss", "aud", "jti"]},
            )
            return Principal(
                user_id=uuid.UUID(claims["sub"]),
                token_id=str(claims["jti"]),
                expires_at=datetime.fromtimestamp(claims["exp"], UTC),
            )
        # OverflowError and OSError: a signed claim beyond any date (`exp` of 2**62) is bad input too.
        except (jwt.PyJWTError, ValueError, TypeError, OverflowError, OSError) as error:
            raise InvalidToken() from error


class BearerPrincipal(OAuth2PasswordBearer):
    """The request's bearer token, verified: one dependency, which OpenAPI shows as the OAuth2 password flow.

    auto_error=False: a missing token is our 401 problem, not FastAPI's plain one. The codec is the
    app's (`app.state.token_codec`, set at startup), so verifying costs no further dependency.
    """

    def __init__(self) -> None:
        super().__init__(tokenUrl="/auth/token", scheme_name="OAuth2PasswordBearer", auto_error=False)

    async def __call__(self, request: Request) -> Principal:  # type: ignore[override]
        token = await super().__call__(request)
        if not token:
            raise AuthenticationError("Bearer token required", code="not_authenticated")
        codec: TokenCodec = request.app.state.token_codec
        return codec.verify(token)


current_principal = BearerPrincipal()

CurrentUser = Annotated[Principal, Depends(current_principal)]
