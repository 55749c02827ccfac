"""What one users process holds (its Runtime: parts, unit of work, background roles) and what routes take from it."""

from __future__ import annotations

import hmac
from datetime import timedelta
from functools import cached_property
from typing import Annotated

from fastapi import Depends

from fastmicro.runtime import BackgroundRole, Runtime
from fastmicro.security import PasswordHasher
from fastmicro.tokens import TokenSigner
from users.service import Authority, UserService
from users.settings import UsersSettings
from users.throttle import ThrottlePolicy
from users.uow import UsersUnitOfWork


class Users(Runtime[UsersSettings]):
    def roles(self) -> list[BackgroundRole]:
        """The outbox relay and the outbox's retention: users consumes nothing."""
        return [self.outbox_relay(), self.retention_purger(outbox=True, inbox=False, idempotency=True)]

    def fingerprint_key(self) -> bytes:
        """POST /users bodies hold a password: their Idempotency-Key fingerprints are keyed with a
        secret the database does not hold (derived from the signing key; a key rotation leaves the
        registrations still in their retry window to be retried as new ones, answered email_taken)."""
        signing_key = self.settings.jwt_signing_key.get_secret_value().encode()
        return hmac.digest(signing_key, b"fastmicro idempotency-key fingerprint", "sha256")

    def uow(self) -> UsersUnitOfWork:
        return UsersUnitOfWork(self.session_factory)

    @cached_property
    def password_hasher(self) -> PasswordHasher:
        settings = self.settings
        return PasswordHasher(
            time_cost=settings.password_hash_time_cost,
            memory_cost_kib=settings.password_hash_memory_kib,
            parallelism=settings.password_hash_parallelism,
        )

    @cached_property
    def authority(self) -> Authority:
        settings = self.settings
        return Authority(
            signer=TokenSigner(
                settings.signing_key(),
                issuer=settings.jwt_issuer,
                audience=settings.jwt_audience,
                ttl_seconds=settings.jwt_ttl_seconds,
            ),
            throttle=ThrottlePolicy(
                per_account_and_address=settings.login_failures_per_account_and_address,
                per_account=settings.login_failures_per_account,
                per_address=settings.login_failures_per_address,
                window=timedelta(seconds=settings.login_failure_window_seconds),
            ),
            refresh_ttl=timedelta(days=settings.refresh_token_ttl_days),
        )

    @cached_property
    def jwks(self) -> dict[str, list[dict[str, str]]]:
        """The public keys tokens are verified with (RFC 7517), as /.well-known/jwks.json serves them."""
        return self.settings.public_keys().document()


UsersDep = Annotated[Users, Depends(Users.current)]


async def get_user_service(users: UsersDep) -> UserService:
    return UserService(users.uow(), users.password_hasher, users.authority)


UserServiceDep = Annotated[UserService, Depends(get_user_service)]
