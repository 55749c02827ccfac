"""Tokens for tests: signed as users signs them, with the development key unless another is given."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

from cryptography.hazmat.primitives.asymmetric.ec import SECP256R1, generate_private_key
from jwt.algorithms import ECAlgorithm

from fastmicro.keygen import new_key
from fastmicro.tokens import DEV_SIGNING_KEY, SigningKey, TokenSigner

if TYPE_CHECKING:
    from fastmicro.settings import ServiceSettings


def new_signing_key(kid: str, *, curve: str = "Ed25519") -> str:
    """A fresh private JWK (JSON) named `kid`: Ed25519, or P-256 with `curve="P-256"`."""
    if curve == "P-256":
        return json.dumps({**ECAlgorithm.to_jwk(generate_private_key(SECP256R1()), as_dict=True), "kid": kid})
    return new_key(kid)


def signer_for(settings: ServiceSettings, *, key: str = DEV_SIGNING_KEY, ttl_seconds: int | None = None) -> TokenSigner:
    """Signs as users would for `settings` (issuer, audience, lifetime), with `key`."""
    return TokenSigner(
        SigningKey.from_json(key),
        issuer=settings.jwt_issuer,
        audience=settings.jwt_audience,
        ttl_seconds=settings.jwt_ttl_seconds if ttl_seconds is None else ttl_seconds,
    )
