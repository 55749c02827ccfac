"""`python -m fastmicro.keygen --kid <name> [--public-keys <current JWK set>]`: a new signing key.

Prints two lines: JWT_SIGNING_KEY (the private JWK, for users only) and JWT_PUBLIC_KEYS (the
public set every service verifies with). Given the current set, the new key is added beside the
keys already published: step one of a rotation (docs/operations.md, "Rotating the signing key").
"""

from __future__ import annotations

import argparse
import json

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from jwt.algorithms import OKPAlgorithm

from fastmicro.tokens import PublicKey, PublicKeySet, SigningKey


def new_key(kid: str) -> str:
    """A fresh Ed25519 private JWK (JSON) named `kid`."""
    jwk = OKPAlgorithm.to_jwk(Ed25519PrivateKey.generate(), as_dict=True)
    return json.dumps({**jwk, "kid": kid}, separators=(",", ":"))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--kid", required=True, help="the new key's id, e.g. prod-2026-12")
    parser.add_argument("--public-keys", default=None, help="the JWK set published now, to add the new key to")
    args = parser.parse_args(argv)
    private = new_key(args.kid)
    key = SigningKey.from_json(private)
    published: dict[str, PublicKey] = {}
    if args.public_keys:
        published = dict(PublicKeySet.from_json(args.public_keys).keys)
        if args.kid in published:
            parser.error(f"kid {args.kid!r} is already published: name the new key differently")
    keys = PublicKeySet.of(key).keys | published
    print(f"JWT_SIGNING_KEY='{private}'")  # noqa: T201 - the command's output
    document = {"keys": [dict(public.jwk) for public in keys.values()]}
    print(f"JWT_PUBLIC_KEYS='{json.dumps(document, separators=(',', ':'))}'")  # noqa: T201


if __name__ == "__main__":
    main()
