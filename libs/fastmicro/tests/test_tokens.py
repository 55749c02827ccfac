"""Access tokens: only the holder of the private key mints one; the key named by `kid` fixes the algorithm."""

from __future__ import annotations

import base64
import json
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import jwt
import pytest

from fastmicro import keygen
from fastmicro.testing.tokens import new_signing_key
from fastmicro.tokens import (
    DEV_SIGNING_KEY,
    InvalidToken,
    PublicKeySet,
    SigningKey,
    TokenSigner,
    TokenVerifier,
    UnusableKey,
)

ISSUER = "kernel-issuer"
AUDIENCE = "kernel-audience"
KEY = SigningKey.from_json(new_signing_key("k1"))
OTHER = SigningKey.from_json(new_signing_key("k2"))


def signer(key: SigningKey = KEY, *, ttl: int = 600, issuer: str = ISSUER) -> TokenSigner:
    return TokenSigner(key, issuer=issuer, audience=AUDIENCE, ttl_seconds=ttl)


def verifier(*keys: SigningKey) -> TokenVerifier:
    return TokenVerifier(PublicKeySet.of(*(keys or (KEY,))), issuer=ISSUER, audience=AUDIENCE)


def crafted(*, key: Any = None, algorithm: str = "ES256", headers: Any = None, drop: str = "", **overrides: Any) -> str:
    """A token signed by hand, valid for `verifier()` unless an argument spoils it."""
    now = datetime.now(UTC)
    claims: dict[str, Any] = {
        "sub": str(uuid.uuid4()),
        "iss": ISSUER,
        "aud": AUDIENCE,
        "iat": now,
        "exp": now + timedelta(minutes=5),
        "jti": uuid.uuid4().hex,
        **overrides,
    }
    claims.pop(drop, None)
    return jwt.encode(claims, KEY.key if key is None else key, algorithm=algorithm, headers=headers or {"kid": "k1"})


def _b64(data: dict[str, Any] | bytes) -> str:
    raw = data if isinstance(data, bytes) else json.dumps(data).encode()
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def _hand_signed(header: dict[str, Any]) -> str:
    """Signed by the right key over a header PyJWT itself would refuse to write."""
    now = int(datetime.now(UTC).timestamp())
    claims = {"sub": str(uuid.uuid4()), "iss": ISSUER, "aud": AUDIENCE, "iat": now, "exp": now + 300, "jti": "j"}
    signing_input = f"{_b64(header)}.{_b64(claims)}"
    signature = jwt.get_algorithm_by_name(KEY.algorithm).sign(signing_input.encode(), KEY.key)
    return f"{signing_input}.{_b64(signature)}"


def test_round_trip() -> None:
    user_id = uuid.uuid4()
    before = datetime.now(UTC)

    issued = signer(ttl=600).issue(user_id)
    principal = verifier().verify(issued.access_token)

    assert principal.user_id == user_id
    assert principal.token_id
    assert issued.expires_in == 600
    assert jwt.get_unverified_header(issued.access_token) == {"alg": "ES256", "kid": "k1", "typ": "JWT"}
    assert before - timedelta(seconds=1) <= principal.issued_at <= datetime.now(UTC)
    assert before + timedelta(seconds=599) <= principal.expires_at <= datetime.now(UTC) + timedelta(seconds=600)


def test_each_token_has_its_own_id() -> None:
    first, second = (verifier().verify(signer().issue(uuid.uuid4()).access_token) for _ in range(2))

    assert first.token_id != second.token_id


def test_ed25519_keys_sign_with_eddsa() -> None:
    key = SigningKey.from_json(new_signing_key("e1", curve="Ed25519"))
    token = signer(key).issue(uuid.uuid4()).access_token

    assert jwt.get_unverified_header(token)["alg"] == "EdDSA"
    assert verifier(key).verify(token)


def test_a_hand_crafted_valid_token_verifies() -> None:
    """The baseline the rejections below each spoil in one way."""
    user_id = uuid.uuid4()

    assert verifier().verify(crafted(sub=str(user_id))).user_id == user_id
    assert verifier().verify(_hand_signed({"alg": "ES256", "kid": "k1"}))


_PUBLIC_X = KEY.public.jwk["x"]


@pytest.mark.parametrize(
    "token",
    [
        pytest.param(crafted(exp=datetime.now(UTC) - timedelta(seconds=5)), id="expired"),
        pytest.param(crafted(key=OTHER.key), id="another-key-same-kid"),
        pytest.param(crafted(key=OTHER.key, headers={"kid": "k2"}), id="unknown-kid"),
        pytest.param(crafted(headers={"typ": "JWT"}), id="no-kid"),
        pytest.param(_hand_signed({"alg": "ES256", "kid": ["k1"]}), id="kid-not-a-string"),
        # Key confusion: the public key (which anyone may read) used as an HMAC secret.
        pytest.param(crafted(key=_PUBLIC_X, algorithm="HS256"), id="hs256-with-the-public-key"),
        pytest.param(
            crafted(key="dev-only-secret-change-me-0123456789abcdef", algorithm="HS256"), id="hs256-old-secret"
        ),
        pytest.param(crafted(key="", algorithm="none"), id="alg-none"),
        pytest.param(
            crafted(key=SigningKey.from_json(new_signing_key("k1", curve="Ed25519")).key, algorithm="EdDSA"),
            id="eddsa-for-an-es256-kid",
        ),
        pytest.param(crafted(aud="someone-else"), id="wrong-audience"),
        pytest.param(crafted(iss="someone-else"), id="wrong-issuer"),
        pytest.param(crafted(drop="exp"), id="missing-exp"),
        pytest.param(crafted(drop="iat"), id="missing-iat"),
        pytest.param(crafted(drop="sub"), id="missing-sub"),
        pytest.param(crafted(drop="jti"), id="missing-jti"),
        pytest.param(crafted(sub="not-a-uuid"), id="sub-not-a-uuid"),
        pytest.param(crafted(exp=2**62), id="exp-beyond-any-date"),
        pytest.param(crafted(exp=10**400), id="exp-beyond-any-float"),
        pytest.param(crafted(exp=float("inf")), id="exp-infinity"),
        pytest.param(crafted(exp=float("nan")), id="exp-nan"),
        pytest.param(crafted(iat=10**400), id="iat-beyond-any-float"),
        pytest.param(crafted(iat=2**62), id="iat-beyond-any-date"),
        pytest.param(crafted(nbf=2**62), id="nbf-far-future"),
        pytest.param(_b64({"alg": "ES256", "kid": "k1"}) + "." + _b64({"sub": "x"}) + ".", id="unsigned"),
        pytest.param("garbage", id="garbage"),
        pytest.param("", id="empty"),
    ],
)
def test_bad_tokens_are_invalid(token: str) -> None:
    with pytest.raises(InvalidToken) as caught:
        verifier().verify(token)

    assert (caught.value.status, caught.value.code) == (401, "invalid_token")


def test_a_token_from_another_issuer_is_invalid() -> None:
    token = signer(issuer="other-issuer").issue(uuid.uuid4()).access_token

    with pytest.raises(InvalidToken):
        verifier().verify(token)


def test_rotation_old_and_new_tokens_verify_while_both_keys_are_published() -> None:
    """The runbook's steps: publish the new key, sign with it, retire the old one after a token lifetime."""
    user_id = uuid.uuid4()
    old_token = signer(KEY).issue(user_id).access_token

    # Step 1: every service knows both keys; users still signs with the old one.
    both = verifier(KEY, OTHER)
    assert both.verify(old_token).user_id == user_id
    # Step 2: users signs with the new one; tokens of both keys verify.
    new_token = signer(OTHER).issue(user_id).access_token
    assert jwt.get_unverified_header(new_token)["kid"] == "k2"
    assert both.verify(new_token).user_id == user_id
    assert both.verify(old_token).user_id == user_id
    # Step 3: the old key is withdrawn; its tokens (expired by then in practice) are refused.
    new_only = verifier(OTHER)
    assert new_only.verify(new_token).user_id == user_id
    with pytest.raises(InvalidToken):
        new_only.verify(old_token)


def test_the_public_set_round_trips_through_its_json() -> None:
    document = PublicKeySet.of(KEY, OTHER).to_json()
    parsed = PublicKeySet.from_json(document)

    assert set(parsed.keys) == {"k1", "k2"}
    assert all(set(key.jwk) == {"kty", "crv", "x", "y", "kid", "alg", "use"} for key in parsed.keys.values())
    token = signer(OTHER).issue(uuid.uuid4()).access_token
    assert TokenVerifier(parsed, issuer=ISSUER, audience=AUDIENCE).verify(token)


def test_a_signing_key_whose_public_half_does_not_match_is_refused() -> None:
    """users would otherwise publish a key that verifies none of its own signatures."""
    lying = {**json.loads(new_signing_key("k1")), "x": json.loads(new_signing_key("zz"))["x"]}

    with pytest.raises(UnusableKey, match="not a valid ES256 private key"):
        SigningKey.from_json(json.dumps(lying))


_PUBLIC = dict(KEY.public.jwk)


@pytest.mark.parametrize(
    ("document", "message"),
    [
        ("not json", "must be JSON"),
        ("[]", "JSON object"),
        ("{}", "JWK set"),
        ('{"keys": []}', "JWK set"),
        (json.dumps({"keys": ["k1"]}), "JSON object"),
        (json.dumps({"keys": [{**_PUBLIC, "kid": ""}]}), "needs a `kid`"),
        (json.dumps({"keys": [{k: v for k, v in _PUBLIC.items() if k != "kid"}]}), "needs a `kid`"),
        (json.dumps({"keys": [_PUBLIC, _PUBLIC]}), "appears twice"),
        (json.dumps({"keys": [json.loads(new_signing_key("k9"))]}), "private part"),
        (json.dumps({"keys": [{"kty": "oct", "k": "c2VjcmV0", "kid": "h"}]}), "only Ed25519"),
        (json.dumps({"keys": [{"kty": "RSA", "n": "AQAB", "e": "AQAB", "kid": "r"}]}), "only Ed25519"),
        (json.dumps({"keys": [{**_PUBLIC, "alg": "HS256"}]}), "`alg` must be ES256"),
        (json.dumps({"keys": [{**_PUBLIC, "use": "enc"}]}), "`use` sig"),
        (json.dumps({"keys": [{**_PUBLIC, "x": "short"}]}), "not a valid ES256 public key"),
    ],
)
def test_unusable_public_sets_are_refused_with_the_reason(document: str, message: str) -> None:
    with pytest.raises(UnusableKey, match=message):
        PublicKeySet.from_json(document)


def test_a_signing_key_must_be_private() -> None:
    with pytest.raises(UnusableKey, match="private key"):
        SigningKey.from_json(json.dumps(_PUBLIC))


def test_the_development_key_parses() -> None:
    assert SigningKey.from_json(DEV_SIGNING_KEY).algorithm == "ES256"


def _keygen(capsys: pytest.CaptureFixture[str], *argv: str) -> dict[str, str]:
    keygen.main(list(argv))
    lines = capsys.readouterr().out.splitlines()
    return {name: value.strip("'") for name, _, value in (line.partition("=") for line in lines)}


def test_keygen_makes_a_pair_and_adds_it_beside_the_published_keys(capsys: pytest.CaptureFixture[str]) -> None:
    first = _keygen(capsys, "--kid", "2026-11")
    second = _keygen(capsys, "--kid", "2026-12", "--public-keys", first["JWT_PUBLIC_KEYS"])

    key = SigningKey.from_json(second["JWT_SIGNING_KEY"])
    published = PublicKeySet.from_json(second["JWT_PUBLIC_KEYS"])
    assert (key.kid, key.algorithm) == ("2026-12", "ES256")
    assert list(published.keys) == ["2026-12", "2026-11"]
    assert published.keys["2026-11"] == PublicKeySet.from_json(first["JWT_PUBLIC_KEYS"]).keys["2026-11"]
    token = signer(key).issue(uuid.uuid4()).access_token
    assert TokenVerifier(published, issuer=ISSUER, audience=AUDIENCE).verify(token)


def test_keygen_refuses_a_kid_already_published(capsys: pytest.CaptureFixture[str]) -> None:
    first = _keygen(capsys, "--kid", "2026-11")

    with pytest.raises(SystemExit):
        keygen.main(["--kid", "2026-11", "--public-keys", first["JWT_PUBLIC_KEYS"]])


class _CountingDecode:
    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.calls = 0
        real = jwt.decode

        def counting(*args: Any, **kwargs: Any) -> Any:
            self.calls += 1
            return real(*args, **kwargs)

        monkeypatch.setattr(jwt, "decode", counting)


def test_a_token_verified_once_is_not_verified_again(monkeypatch: pytest.MonkeyPatch) -> None:
    decode = _CountingDecode(monkeypatch)
    checker = verifier()
    token = signer().issue(uuid.uuid4()).access_token

    first, second = checker.verify(token), checker.verify(token)

    assert first == second
    assert decode.calls == 1


def test_a_kept_token_still_expires() -> None:
    now = [datetime.now(UTC).timestamp()]
    checker = TokenVerifier(PublicKeySet.of(KEY), issuer=ISSUER, audience=AUDIENCE, clock=lambda: now[0])
    token = signer(ttl=60).issue(uuid.uuid4()).access_token
    assert checker.verify(token)

    now[0] += 61

    with pytest.raises(InvalidToken):
        checker.verify(token)


def test_the_kept_tokens_are_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    decode = _CountingDecode(monkeypatch)
    checker = TokenVerifier(PublicKeySet.of(KEY), issuer=ISSUER, audience=AUDIENCE, cache_size=2)
    first, second, third = (signer().issue(uuid.uuid4()).access_token for _ in range(3))

    for token in (first, second, third, third, first):
        checker.verify(token)

    assert decode.calls == 4  # the first was let go for the third, so verified again


def test_a_refused_token_is_not_kept(monkeypatch: pytest.MonkeyPatch) -> None:
    decode = _CountingDecode(monkeypatch)
    checker = verifier()
    forged = crafted(key=OTHER.key)

    for _ in range(2):
        with pytest.raises(InvalidToken):
            checker.verify(forged)

    assert decode.calls == 2
