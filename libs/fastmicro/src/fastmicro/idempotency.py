"""Retry-safe writes: a client's `Idempotency-Key`, and the first answer to it, kept with the work it did.

A route takes `UserIdempotencyKey` (scoped to the caller) or `AnonymousIdempotencyKey` (scoped to
the body itself) and hands it to its use case, which opens its unit of work with it:

    async with self._uow.once(key) as uow:   # claims the key: a stored answer is replayed instead
        ...
        await uow.commit(answer=order)        # the answer, as the route renders it, with the work

Entering claims the key: a transaction advisory lock on it (so a concurrent retry waits for the
first request to commit, at most IDEMPOTENCY_WAIT_SECONDS, then gets 409 `request_in_progress`),
then a read of its stored answer. The claim is one round trip, a function the migration creates,
because a statement's snapshot predates the lock it waits for: only the function's next statement
sees what the request it waited for committed. A stored answer is replayed (`Replayed`, rendered
by the handler `install_idempotency` registers); a stored answer to another request is 422
`idempotency_key_reused`. `commit(answer=...)` writes the answer in the same transaction as the
work, so the answer exists exactly when the work does: a COMMIT whose reply was lost (a 503) is
replayed on retry, never done twice. A 4xx the use case raises is stored too, in a transaction
of its own (the work's was rolled back); a 5xx leaves the key unused.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Annotated, Any, cast

from fastapi import Depends, FastAPI, Header, Request
from fastapi.responses import Response
from pydantic import BaseModel
from sqlalchemy import DateTime, LargeBinary, SmallInteger, String, bindparam, text
from sqlalchemy.dialects.postgresql import JSONB, insert
from sqlalchemy.orm import Mapped, mapped_column

from fastmicro.db import Base, sqlstate_of, utcnow
from fastmicro.errors import PROBLEM_CONTENT_TYPE, AppError, ConflictError, ValidationError
from fastmicro.runtime import Runtime
from fastmicro.security import CurrentUser

if TYPE_CHECKING:
    from collections.abc import Callable

    from sqlalchemy.engine import Connection
    from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession


MAX_KEY_LENGTH = 255
HEADER = "Idempotency-Key"
#: On a replayed answer, so that a client (and a test) can tell it from a fresh one.
REPLAYED_HEADER = "Idempotent-Replayed"
#: What a client waits before trying again after a 409 `request_in_progress`.
RETRY_AFTER_SECONDS = 1
_LOCK_NOT_AVAILABLE = "55P03"  # lock_timeout ran out


class IdempotencyRecord(Base):
    """A key's first answer: per scope (the caller, or the body's digest) and key; kept for IDEMPOTENCY_KEY_HOURS."""

    __tablename__ = "idempotency_keys"

    scope: Mapped[str] = mapped_column(String(64), primary_key=True)
    key: Mapped[str] = mapped_column(String(MAX_KEY_LENGTH), primary_key=True)
    #: SHA-256 of the method, the path and the body: a retry must ask what the first request asked.
    fingerprint: Mapped[bytes] = mapped_column(LargeBinary)
    status_code: Mapped[int] = mapped_column(SmallInteger)
    headers: Mapped[dict[str, str]] = mapped_column(JSONB)
    body: Mapped[bytes] = mapped_column(LargeBinary)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), index=True)


idempotency_table = IdempotencyRecord.metadata.tables["idempotency_keys"]

# Waits for the key's lock at most p_wait_ms, then reads the key's live answer with a snapshot
# taken after the lock was granted (a new statement in a VOLATILE function takes a new one).
_CREATE_CLAIM = """
CREATE FUNCTION idempotency_claim(p_scope text, p_key text, p_wait_ms integer, p_ttl_seconds double precision)
RETURNS TABLE (fingerprint bytea, status_code smallint, headers jsonb, body bytea)
LANGUAGE plpgsql VOLATILE AS $$
DECLARE
    previous text := current_setting('lock_timeout');
BEGIN
    PERFORM set_config('lock_timeout', p_wait_ms || 'ms', true);
    PERFORM pg_advisory_xact_lock(hashtextextended('idempotency' || chr(10) || p_scope || chr(10) || p_key, 0));
    PERFORM set_config('lock_timeout', previous, true);
    RETURN QUERY
        SELECT k.fingerprint, k.status_code, k.headers, k.body FROM idempotency_keys AS k
        WHERE k.scope = p_scope AND k.key = p_key AND k.created_at > now() - make_interval(secs => p_ttl_seconds);
END
$$
"""

CLAIM = text("SELECT * FROM idempotency_claim(:scope, :key, :wait_ms, :ttl_seconds)")

_insert = insert(idempotency_table)
#: An expired answer still in the table (not purged yet) is replaced; a live one never is.
RECORD = _insert.on_conflict_do_update(
    index_elements=["scope", "key"],
    set_={name: _insert.excluded[name] for name in ("fingerprint", "status_code", "headers", "body", "created_at")},
    where=idempotency_table.c.created_at <= bindparam("expired_before"),
)


def create_idempotency_keys(bind: Connection) -> None:
    """For a service's Alembic migration: `create_idempotency_keys(op.get_bind())`."""
    idempotency_table.create(bind)
    bind.exec_driver_sql(_CREATE_CLAIM)


def drop_idempotency_keys(bind: Connection) -> None:
    bind.exec_driver_sql("DROP FUNCTION idempotency_claim(text, text, integer, double precision)")
    idempotency_table.drop(bind)


class RequestInProgress(ConflictError):
    code = "request_in_progress"
    detail = "A request with this Idempotency-Key is still being processed; try again shortly"

    def headers(self) -> dict[str, str]:
        return {"Retry-After": str(RETRY_AFTER_SECONDS)}


class IdempotencyKeyReused(ValidationError):
    code = "idempotency_key_reused"
    detail = "This Idempotency-Key was used for a different request"


#: Raised by the claim, never stored as an answer: they are about the key, not the request.
_ABOUT_THE_KEY = (RequestInProgress, IdempotencyKeyReused)


@dataclass(frozen=True, slots=True)
class StoredAnswer:
    status_code: int
    headers: dict[str, str]
    body: bytes

    def response(self) -> Response:
        return Response(self.body, status_code=self.status_code, headers={**self.headers, REPLAYED_HEADER: "true"})


class Replayed(Exception):
    """The key was answered before: its answer goes back to the client as it was."""

    def __init__(self, answer: StoredAnswer) -> None:
        super().__init__("replayed")
        self.answer = answer


@dataclass(frozen=True, slots=True)
class IdempotentRequest:
    """One request's key: whose it is (scope), the key, what the request asked, and how its answer looks."""

    scope: str
    key: str
    fingerprint: bytes
    wait_seconds: float
    ttl_seconds: float
    success_status: int
    render: Callable[[Any], BaseModel]

    async def claim(self, session: AsyncSession) -> None:
        """Take the key (waiting for a request holding it); raise `Replayed` if it was answered before."""
        params = {
            "scope": self.scope,
            "key": self.key,
            "wait_ms": max(1, round(self.wait_seconds * 1000)),
            "ttl_seconds": self.ttl_seconds,
        }
        try:
            row = (await session.execute(CLAIM, params)).one_or_none()
        except Exception as error:
            if sqlstate_of(error) == _LOCK_NOT_AVAILABLE:
                raise RequestInProgress() from error
            raise
        if row is None:
            return
        if bytes(row.fingerprint) != self.fingerprint:
            raise IdempotencyKeyReused()
        raise Replayed(StoredAnswer(row.status_code, dict(row.headers), bytes(row.body)))

    def success(self, result: Any) -> StoredAnswer:
        body = self.render(result).model_dump_json().encode()
        return StoredAnswer(self.success_status, {"content-type": "application/json"}, body)

    @staticmethod
    def failure(error: AppError) -> StoredAnswer:
        body = json.dumps(error.to_problem(), separators=(",", ":")).encode()
        return StoredAnswer(error.status, {"content-type": PROBLEM_CONTENT_TYPE, **error.headers()}, body)

    def stores(self, error: BaseException | None) -> bool:
        """Whether the answer to `error` is kept: a client error about the request, not about the key."""
        return isinstance(error, AppError) and 400 <= error.status < 500 and not isinstance(error, _ABOUT_THE_KEY)

    async def record(self, session: AsyncSession, answer: StoredAnswer) -> None:
        """Store `answer` in the session's transaction (with the work, when it succeeded)."""
        await session.execute(RECORD, self._row(answer))

    async def record_alone(self, engine: AsyncEngine, answer: StoredAnswer) -> None:
        """Store `answer` in a transaction of its own: a client error, whose work was rolled back."""
        async with engine.begin() as conn:
            await conn.execute(RECORD, self._row(answer))

    def _row(self, answer: StoredAnswer) -> dict[str, Any]:
        now = utcnow()
        return {
            "scope": self.scope,
            "key": self.key,
            "fingerprint": self.fingerprint,
            "status_code": answer.status_code,
            "headers": answer.headers,
            "body": answer.body,
            "created_at": now,
            "expired_before": now - timedelta(seconds=self.ttl_seconds),
        }


KeyHeader = Annotated[
    str | None,
    Header(
        alias=HEADER,
        min_length=1,
        max_length=MAX_KEY_LENGTH,
        description=(
            "A key of the client's choosing (at most 255 characters) that makes a retry safe: the same key"
            " and body get the first answer again, without the work being done twice."
        ),
    ),
]


async def _request_key(request: Request, key: str | None, scope: str | None) -> IdempotentRequest | None:
    if key is None:
        return None
    runtime = await Runtime.current(request)
    digest = _fingerprint(request.method, request.url.path, await request.body(), runtime.fingerprint_key())
    settings = runtime.settings
    route = request.scope["route"]
    return IdempotentRequest(
        scope=scope if scope is not None else digest.hex(),
        key=key,
        fingerprint=digest,
        wait_seconds=settings.idempotency_wait_seconds,
        ttl_seconds=settings.idempotency_key_hours * 3600,
        success_status=route.status_code or 200,
        render=cast("type[BaseModel]", route.response_model).model_validate,
    )


async def _user_key(request: Request, actor: CurrentUser, key: KeyHeader = None) -> IdempotentRequest | None:
    return await _request_key(request, key, str(actor.user_id))


async def _anonymous_key(request: Request, key: KeyHeader = None) -> IdempotentRequest | None:
    return await _request_key(request, key, None)


#: The request's key, scoped to the authenticated caller; None without the header.
UserIdempotencyKey = Annotated[IdempotentRequest | None, Depends(_user_key)]
#: The request's key for a route without a caller: scoped to the body, so two clients never share one.
AnonymousIdempotencyKey = Annotated[IdempotentRequest | None, Depends(_anonymous_key)]


def _fingerprint(method: str, path: str, body: bytes, key: bytes | None) -> bytes:
    """The request as a digest; a JSON body in a canonical form, so that its spacing and key order do not count.

    With a `key` (a service whose bodies hold secrets, such as a password), an HMAC: the digest is
    stored, and a plain hash of a known request would let a copy of the table test guesses.
    """
    try:
        canonical = json.dumps(json.loads(body), sort_keys=True, separators=(",", ":")).encode()
    except ValueError:
        canonical = body
    request = b"\n".join((method.encode(), path.encode(), canonical))
    return hmac.digest(key, request, "sha256") if key is not None else hashlib.sha256(request).digest()


async def _replayed(_: Request, exc: Exception) -> Response:
    return cast("Replayed", exc).answer.response()


def install_idempotency(app: FastAPI) -> None:
    """Replayed answers leave as they were first given."""
    app.add_exception_handler(Replayed, _replayed)
