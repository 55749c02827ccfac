"""Tokens for tests: signed as users signs them, with the development key unless another is given."""

from __future__ import annotations

from typing import TYPE_CHECKING

from fastmicro.keygen import new_key
from fastmicro.tokens import DEV_SIGNING_KEY, SigningKey, TokenSigner

if TYPE_CHECKING:
    from fastmicro.settings import ServiceSettings


#: A fresh private JWK (JSON) named `kid`: P-256 by default, or Ed25519 with `curve="Ed25519"`.
new_signing_key = new_key


def signer_for(settings: ServiceSettings, *, key: str = DEV_SIGNING_KEY, ttl_seconds: int | None = None) -> TokenSigner:
    """Signs as users would for `settings` (issuer, audience, lifetime), with `key`."""
    return TokenSigner(
        SigningKey.from_json(key),
        issuer=settings.jwt_issuer,
        audience=settings.jwt_audience,
        ttl_seconds=settings.jwt_ttl_seconds if ttl_seconds is None else ttl_seconds,
    )
