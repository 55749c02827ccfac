"""The services' JWT parameters (their defaults, with the development key) and tokens minted with them."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from uuid import UUID

from fastmicro.settings import DEV_PUBLIC_KEYS, ServiceSettings
from fastmicro.tokens import DEV_SIGNING_KEY, SigningKey, TokenSigner


def _default(name: str) -> Any:
    return ServiceSettings.model_fields[name].default


@dataclass(frozen=True)
class JwtParameters:
    signing_key: str
    public_keys: str
    issuer: str
    audience: str

    def raw_args(self) -> list[str]:
        """For bench.raw.app; the public keys travel in its environment (JWT_PUBLIC_KEYS)."""
        return ["--jwt-issuer", self.issuer, "--jwt-audience", self.audience]

    def signer(self) -> TokenSigner:
        # Valid for the whole run, however long the host makes it.
        key = SigningKey.from_json(self.signing_key)
        return TokenSigner(key, issuer=self.issuer, audience=self.audience, ttl_seconds=12 * 3600)

    def mint(self, user_ids: list[UUID]) -> list[str]:
        signer = self.signer()
        return [signer.issue(user_id).access_token for user_id in user_ids]


JWT = JwtParameters(
    signing_key=DEV_SIGNING_KEY,
    public_keys=DEV_PUBLIC_KEYS,
    issuer=_default("jwt_issuer"),
    audience=_default("jwt_audience"),
)
