"""Access tokens: signed by users with a private key, verified everywhere with public keys only.

Keys travel as JSON Web Keys (RFC 7517). users holds one private key (`JWT_SIGNING_KEY`) and
every service the public key set (`JWT_PUBLIC_KEYS`, the document users also serves at
`/.well-known/jwks.json`). A token names its key in the `kid` header; the key decides the
algorithm, never the token. P-256 (ES256) by default: every request verifies a signature and
OpenSSL verifies P-256 faster than Ed25519 on x86-64 (measured: 214 vs 292 µs per token through
PyJWT), and every JWT library and gateway speaks it. Ed25519 (EdDSA) keys are accepted too.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from types import MappingProxyType
from typing import Any

import jwt
from cryptography.hazmat.primitives.asymmetric.ec import EllipticCurvePrivateKey, EllipticCurvePublicKey
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from fastmicro.errors import AuthenticationError

UserId = uuid.UUID

#: The key that ships in the repository for development and tests. Production refuses it.
DEV_SIGNING_KEY = json.dumps(
    {
        "kty": "EC",
        "crv": "P-256",
        "kid": "dev-only-change-me",
        "x": "V3xWrK_pvvuzzsuVjfBVk3KFtPDgbzAzhlRXcr5xw_Y",
        "y": "mfyVgi-y6N1tw7_0EeXAwhPnfC9PT2RlRrfhIY1ORh4",
        "d": "yQVbfKIvt0Z3oMhyhT6qN4J11gUKUPHal2slhuLTJOg",
    }
)

#: The longest an access token may live (JWT_TTL_SECONDS): they are revoked only by expiring.
MAX_ACCESS_TOKEN_SECONDS = 3600

# kty/crv → the one algorithm a key of that kind signs with.
_ALGORITHMS: dict[tuple[object, object], str] = {("OKP", "Ed25519"): "EdDSA", ("EC", "P-256"): "ES256"}
_PRIVATE_MEMBERS = frozenset({"d", "p", "q", "dp", "dq", "qi", "oth", "k"})
_PUBLIC_MEMBERS = ("kty", "crv", "x", "y")
_REQUIRED_CLAIMS = ["exp", "iat", "sub", "iss", "aud", "jti"]


class InvalidToken(AuthenticationError):
    code = "invalid_token"
    detail = "The token is invalid or has expired"


class UnusableKey(ValueError):
    """A key or key set that cannot be used; the message says why (never the key itself)."""


@dataclass(frozen=True, slots=True)
class PublicKey:
    kid: str
    algorithm: str
    key: Ed25519PublicKey | EllipticCurvePublicKey
    jwk: MappingProxyType[str, str]


@dataclass(frozen=True, slots=True)
class SigningKey:
    kid: str
    algorithm: str
    key: Ed25519PrivateKey | EllipticCurvePrivateKey
    public: PublicKey

    @classmethod
    def from_json(cls, text: str) -> SigningKey:
        jwk = _object(text, "JWT_SIGNING_KEY")
        if "d" not in jwk:
            raise UnusableKey("JWT_SIGNING_KEY must be a private key (a JWK with `d`)")
        kid, algorithm = _kid_and_algorithm(jwk)
        try:
            private = jwt.PyJWK(jwk, algorithm).key
        except (jwt.PyJWTError, ValueError, TypeError) as error:
            raise UnusableKey(f"JWT_SIGNING_KEY {kid!r} is not a valid {algorithm} private key") from error
        if not isinstance(private, Ed25519PrivateKey | EllipticCurvePrivateKey):
            raise UnusableKey("JWT_SIGNING_KEY must be a private key")
        # The public half derived from the private key, never taken on trust from the JWK's `x`/`y`.
        derived = jwt.get_algorithm_by_name(algorithm).to_jwk(private.public_key(), as_dict=True)
        public = _public_key({**derived, "kid": kid})
        return cls(kid=kid, algorithm=algorithm, key=private, public=public)


@dataclass(frozen=True, slots=True)
class PublicKeySet:
    keys: MappingProxyType[str, PublicKey]

    @classmethod
    def from_json(cls, text: str) -> PublicKeySet:
        document = _object(text, "JWT_PUBLIC_KEYS")
        entries = document.get("keys")
        if not isinstance(entries, list) or not entries:
            raise UnusableKey('JWT_PUBLIC_KEYS must be a JWK set: {"keys": [<public JWK>, ...]}')
        keys: dict[str, PublicKey] = {}
        for entry in entries:
            if not isinstance(entry, dict):
                raise UnusableKey("JWT_PUBLIC_KEYS: every key must be a JSON object")
            key = _public_key(entry)
            if key.kid in keys:
                raise UnusableKey(f"JWT_PUBLIC_KEYS: kid {key.kid!r} appears twice")
            keys[key.kid] = key
        return cls(MappingProxyType(keys))

    @classmethod
    def of(cls, *keys: SigningKey) -> PublicKeySet:
        return cls(MappingProxyType({key.kid: key.public for key in keys}))

    def document(self) -> dict[str, list[dict[str, str]]]:
        """The set as `/.well-known/jwks.json` serves it: public members only."""
        return {"keys": [dict(key.jwk) for key in self.keys.values()]}

    def to_json(self) -> str:
        return json.dumps(self.document())


@dataclass(frozen=True, slots=True)
class Principal:
    """Who a verified token speaks for."""

    user_id: UserId
    token_id: str
    issued_at: datetime
    expires_at: datetime


@dataclass(frozen=True, slots=True)
class IssuedToken:
    access_token: str
    expires_in: int


class TokenSigner:
    """Issues access tokens. Only users holds one: no other service can mint a token."""

    def __init__(self, key: SigningKey, *, issuer: str, audience: str, ttl_seconds: int) -> None:
        self._key = key
        self._headers = {"kid": key.kid}
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
        token = jwt.encode(claims, self._key.key, algorithm=self._key.algorithm, headers=self._headers)
        return IssuedToken(token, self._ttl)


class TokenVerifier:
    """Verifies access tokens against public keys. The key named by `kid` fixes the algorithm.

    A client sends one token for its whole life (minutes), so the tokens verified lately are kept,
    up to `cache_size`: the same bytes under the same keys verify the same way, and only the
    expiry can change, so a kept token is checked against the clock and nothing else. The
    signature check is most of what a token costs (a P-256 verification, about 0.2 ms).
    """

    def __init__(
        self,
        keys: PublicKeySet,
        *,
        issuer: str,
        audience: str,
        cache_size: int = 4096,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._keys = keys.keys
        self._issuer = issuer
        self._audience = audience
        self._cache: dict[str, tuple[Principal, float]] = {}
        self._cache_size = cache_size
        self._clock = clock

    def verify(self, token: str) -> Principal:
        kept = self._cache.get(token)
        if kept is not None:
            principal, expires = kept
            if self._clock() < expires:
                return principal
            del self._cache[token]
            raise InvalidToken()
        principal, expires = self._verify(token)
        if len(self._cache) >= self._cache_size:
            del self._cache[next(iter(self._cache))]  # the oldest kept: insertion order
        self._cache[token] = (principal, expires)
        return principal

    def _verify(self, token: str) -> tuple[Principal, float]:
        try:
            key = self._keys.get(jwt.get_unverified_header(token).get("kid"))  # type: ignore[arg-type]
            if key is None:
                raise InvalidToken()
            claims = jwt.decode(
                token,
                key.key,
                algorithms=[key.algorithm],
                issuer=self._issuer,
                audience=self._audience,
                options={"require": _REQUIRED_CLAIMS},
            )
            expires_at = datetime.fromtimestamp(claims["exp"], UTC)
            principal = Principal(
                user_id=uuid.UUID(claims["sub"]),
                token_id=str(claims["jti"]),
                issued_at=datetime.fromtimestamp(claims["iat"], UTC),
                expires_at=expires_at,
            )
            return principal, expires_at.timestamp()
        # OverflowError and OSError: a signed claim beyond any date (`exp` of 2**62) is bad input too.
        except (jwt.PyJWTError, ValueError, TypeError, OverflowError, OSError) as error:
            raise InvalidToken() from error


def _object(text: str, name: str) -> dict[str, Any]:
    try:
        value = json.loads(text)
    except ValueError:
        raise UnusableKey(f"{name} must be JSON") from None
    if not isinstance(value, dict):
        raise UnusableKey(f"{name} must be a JSON object")
    return value


def _kid_and_algorithm(jwk: dict[str, Any]) -> tuple[str, str]:
    kid = jwk.get("kid")
    if not isinstance(kid, str) or not kid:
        raise UnusableKey("every key needs a `kid`: tokens name the key that signed them")
    algorithm = _ALGORITHMS.get((jwk.get("kty"), jwk.get("crv")))
    if algorithm is None:
        raise UnusableKey(f"key {kid!r}: only Ed25519 (OKP) and P-256 (EC) keys are accepted")
    if jwk.get("alg", algorithm) != algorithm or jwk.get("use", "sig") != "sig":
        raise UnusableKey(f"key {kid!r}: `alg` must be {algorithm} and `use` sig where given")
    return kid, algorithm


def _public_key(jwk: dict[str, Any]) -> PublicKey:
    kid, algorithm = _kid_and_algorithm(jwk)
    if _PRIVATE_MEMBERS & jwk.keys():
        raise UnusableKey(f"key {kid!r} holds a private part: a public key set must not")
    try:
        key = jwt.PyJWK(jwk, algorithm).key
    except (jwt.PyJWTError, ValueError, TypeError) as error:
        raise UnusableKey(f"key {kid!r} is not a valid {algorithm} public key") from error
    if not isinstance(key, Ed25519PublicKey | EllipticCurvePublicKey):
        raise UnusableKey(f"key {kid!r} is not a public key")
    public = {name: jwk[name] for name in _PUBLIC_MEMBERS if name in jwk}
    return PublicKey(kid, algorithm, key, MappingProxyType({**public, "kid": kid, "alg": algorithm, "use": "sig"}))
