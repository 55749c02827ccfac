"""schemathesis hooks of `make fuzz` (tools/fuzz.toml loads them): the bearer token of a real user, and
Idempotency-Keys that name one request each (`before_call`).

Every request carries the token of an account registered on users (FUZZ_USERS_URL), so the
authenticated operations are fuzzed past their 401. The fuzzer may delete that account (DELETE
/users/{id} with the id GET /users/me gave it); the token then answers 401, and schemathesis asks
for a new one (`retry_on`, 401 by default) and replays the request: a new account is registered.
Emails are numbered per run (FUZZ_ACCOUNT names it), so a run registers the same ones every time.
"""

from __future__ import annotations

import itertools
import json
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


#: Idempotency-Keys sent so far, per account: the request each was first sent with.
_KEYS: dict[tuple[str, str], str] = {}
_RENAMED = itertools.count(1)


@schemathesis.hook
def before_call(context: schemathesis.HookContext, case: schemathesis.Case[Any], **kwargs: Any) -> None:
    """A generated Idempotency-Key already sent with another request is made new.

    Such a request is valid by the document and rightly refused (422 `idempotency_key_reused`:
    the key names its first request), which the positive-data check would take for a schema-valid
    request rejected. The key's value is kept as generated, with a suffix, and within its length
    limit; an invalid key (empty, too long) is left as it is, for the negative checks.
    """
    headers = case.headers  # case-insensitive
    generated = headers.get("Idempotency-Key") if headers is not None else None
    if headers is None or not isinstance(generated, str) or not 1 <= len(generated) <= 255:
        return
    account = str(headers.get("Authorization", ""))
    request = json.dumps(
        [case.method, case.path, case.path_parameters, case.body], sort_keys=True, default=repr, ensure_ascii=False
    )
    key = generated
    while _KEYS.setdefault((account, key), request) != request:
        key = f"{generated}-{next(_RENAMED)}"[-255:]
    headers["Idempotency-Key"] = key
