"""The services' JWT parameters (their defaults, with the development secret) and tokens minted with them."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from uuid import UUID

from fastmicro.security import TokenCodec
from fastmicro.settings import DEV_JWT_SECRET, ServiceSettings


def _default(name: str) -> Any:
    return ServiceSettings.model_fields[name].default


@dataclass(frozen=True)
class JwtParameters:
    secret: str
    algorithm: str
    issuer: str
    audience: str

    def raw_args(self) -> list[str]:
        """For bench.raw.app; the secret travels in its environment (JWT_SECRET)."""
        return ["--jwt-algorithm", self.algorithm, "--jwt-issuer", self.issuer, "--jwt-audience", self.audience]

    def codec(self) -> TokenCodec:
        # Valid for the whole run, however long the host makes it.
        return TokenCodec(
            self.secret, algorithm=self.algorithm, issuer=self.issuer, audience=self.audience, ttl_seconds=12 * 3600
        )

    def mint(self, user_ids: list[UUID]) -> list[str]:
        codec = self.codec()
        return [codec.issue(user_id).access_token for user_id in user_ids]


JWT = JwtParameters(
    secret=DEV_JWT_SECRET,
    algorithm=_default("jwt_algorithm"),
    issuer=_default("jwt_issuer"),
    audience=_default("jwt_audience"),
)
