"""schemathesis hooks of `make fuzz` (tools/fuzz.toml loads them): the bearer token of a real user.

Every request carries the token of an account registered on users (FUZZ_USERS_URL), so the
authenticated operations are fuzzed past their 401. The fuzzer may delete that account (DELETE
/users/{id} with the id GET /users/me gave it); the token then answers 401, and schemathesis asks
for a new one (`retry_on`, 401 by default) and replays the request: a new account is registered.
Emails are numbered per run (FUZZ_ACCOUNT names it), so a run registers the same ones every time.
"""

from __future__ import annotations

import itertools
import os
from typing import Any

import httpx
import schemathesis

USERS_URL = os.environ["FUZZ_USERS_URL"]
ACCOUNT = os.environ.get("FUZZ_ACCOUNT", "fuzz")
PASSWORD = "fuzzing-password"  # noqa: S105 - a throwaway account on a throwaway database


@schemathesis.auth()
class RegisteredUser:
    def __init__(self) -> None:
        self._numbers = itertools.count(1)

    def get(self, case: schemathesis.Case[Any], context: schemathesis.AuthContext) -> str:
        with httpx.Client(base_url=USERS_URL, timeout=10) as client:
            while True:
                email = f"{ACCOUNT}-{next(self._numbers)}@fuzz.example.com"
                created = client.post("/users", json={"email": email, "password": PASSWORD, "name": "Fuzz"})
                if created.status_code != 409:  # the fuzzer may have registered this email itself
                    break
            created.raise_for_status()
            token = client.post("/auth/token", data={"username": email, "password": PASSWORD})
            token.raise_for_status()
            access_token: str = token.json()["access_token"]
            return access_token

    def set(self, case: schemathesis.Case[Any], data: str, context: schemathesis.AuthContext) -> None:
        case.headers["Authorization"] = f"Bearer {data}"
