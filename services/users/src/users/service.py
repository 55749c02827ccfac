"""The users use cases: the only place their rules run."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from sqlalchemy.exc import IntegrityError

from fastmicro.db import unique_violation, utcnow
from fastmicro.errors import AuthorizationError
from fastmicro.security import InvalidToken, PasswordHasher, Principal
from fastmicro_contracts.users import UserCreated, UserDeleted, UserUpdated
from users.errors import EmailTaken, InvalidCredentials, InvalidCurrentPassword, InvalidRefreshToken
from users.models import User, UserId, normalize_email
from users.sessions import RefreshToken, TokenState, token_digest
from users.throttle import ThrottlePolicy, TooManyAttempts

if TYPE_CHECKING:
    from fastmicro.idempotency import IdempotentRequest
    from fastmicro.tokens import TokenSigner
    from users.schemas import UserCreate, UserOut, UserUpdate
    from users.uow import UsersUnitOfWork


@dataclass(frozen=True, slots=True)
class Authority:
    """What users signs with and the rules of its sessions: built once per process."""

    signer: TokenSigner
    throttle: ThrottlePolicy
    refresh_ttl: timedelta
    clock: Callable[[], datetime] = field(default=utcnow)


@dataclass(frozen=True, slots=True)
class TokenPair:
    access_token: str
    expires_in: int
    refresh_token: str


class UserService:
    def __init__(self, uow: UsersUnitOfWork, hasher: PasswordHasher, authority: Authority) -> None:
        self._uow = uow
        self._hasher = hasher
        self._authority = authority

    async def register(self, data: UserCreate, key: IdempotentRequest | None = None) -> User:
        """Register; under a key, once (a retry gets the first answer: fastmicro.idempotency)."""
        # Hash before the transaction: no connection is held during the slow part.
        password_hash = await self._hasher.hash(data.password.get_secret_value())
        async with self._uow.once(key) as uow:
            user = User.register(email=data.email, name=data.name, password_hash=password_hash)
            try:
                await uow.users.create(user)
            except IntegrityError as error:
                if unique_violation(error) == "uq_users_email":
                    raise EmailTaken() from error
                raise
            uow.emit(UserCreated(user_id=user.id, email=user.email, name=user.name))
            await uow.commit(answer=user)
        return user

    async def login(self, email: str, password: str, address: str | None) -> TokenPair:
        """A new session for the right password, unless the account or the address is throttled."""
        authority = self._authority
        keys = authority.throttle.keys(normalize_email(email), address)
        now = authority.clock()
        standing = await self._uow.login_failures.attempt(keys, now=now, window=authority.throttle.window)
        retry_after = authority.throttle.retry_after(standing.blocked_until, now)
        if retry_after is not None:
            raise TooManyAttempts(retry_after)
        async with self._uow as uow:
            user = await uow.users.get_by_email(email)
        # Unknown emails are verified against a decoy hash: a miss takes as long as a hit.
        if not await self._hasher.verify(user.password_hash if user else None, password) or user is None:
            raise InvalidCredentials()  # the attempt stays recorded as a failure
        await self._uow.login_failures.succeeded(keys, standing)
        if self._hasher.needs_rehash(user.password_hash):
            await self._rehash(user.id, password)
        return await self._start_session(user.id)

    async def refresh(self, refresh_token: str) -> TokenPair:
        """The token's successor and a new access token; a retired token revokes its whole family."""
        authority = self._authority
        now = authority.clock()
        async with self._uow as uow:
            current = await uow.sessions.by_digest(token_digest(refresh_token))
            if current is None:
                raise InvalidRefreshToken()
            state = current.state(now)
            if state is TokenState.RETIRED:
                await uow.sessions.revoke_family(current.family_id, now)
                await uow.commit()
                raise InvalidRefreshToken()
            if state is TokenState.EXPIRED:
                raise InvalidRefreshToken()
            successor, token = current.rotate(now=now, ttl=authority.refresh_ttl)
            uow.sessions.add(successor)
            await uow.commit()
        return self._pair(current.user_id, token)

    async def logout(self, refresh_token: str) -> None:
        """Ends the token's session. Any token is accepted (RFC 7009, 2.2): an unknown one has nothing to end."""
        async with self._uow as uow:
            current = await uow.sessions.by_digest(token_digest(refresh_token))
            if current is not None:
                await uow.sessions.revoke_family(current.family_id, self._authority.clock())
                await uow.commit()

    async def me(self, actor: Principal) -> UserOut:
        """The token's owner as the API shows them; a token outlives its account only until the account is deleted."""
        user = await self._uow.queries.profile(actor.user_id)
        if user is None:
            raise InvalidToken()
        return user

    async def get(self, actor: Principal, user_id: UserId) -> UserOut:
        _require_self(actor, user_id)
        return await self.me(actor)

    async def update(self, actor: Principal, user_id: UserId, changes: UserUpdate) -> User:
        """A new password needs the current one, and ends every session (refresh token) of the user."""
        _require_self(actor, user_id)
        verified_hash = password_hash = None
        if changes.password is not None:
            verified_hash = await self._verify_current(actor, changes.current_password_value())
            password_hash = await self._hasher.hash(changes.password.get_secret_value())
        async with self._uow as uow:
            user = await self._actor(uow, actor, for_update=True)
            if verified_hash is not None and user.password_hash != verified_hash:
                raise InvalidCurrentPassword()  # changed by someone else since it was checked
            if user.change(name=changes.name, password_hash=password_hash):
                await uow.users.update(user)
                if password_hash is not None:
                    await uow.sessions.revoke_user(user.id, self._authority.clock())
                uow.emit(UserUpdated(user_id=user.id, email=user.email, name=user.name))
                await uow.commit()
        return user

    async def delete(self, actor: Principal, user_id: UserId) -> None:
        _require_self(actor, user_id)
        async with self._uow as uow:
            user = await self._actor(uow, actor, for_update=True)
            await uow.users.delete(user.id)
            uow.emit(UserDeleted(user_id=user.id))
            await uow.commit()

    async def _actor(self, uow: UsersUnitOfWork, actor: Principal, *, for_update: bool = False) -> User:
        """The token's owner; a token outlives its account only until the account is deleted.

        Writers lock the row: of two racing changes (or deletes), the second sees the first's result.
        """
        user = await uow.users.get(actor.user_id, for_update=for_update)
        if user is None:
            raise InvalidToken()
        return user

    async def _verify_current(self, actor: Principal, current_password: str) -> str:
        """The stored hash `current_password` matches (checked with no connection held)."""
        async with self._uow as uow:
            user = await self._actor(uow, actor)
        if not await self._hasher.verify(user.password_hash, current_password):
            raise InvalidCurrentPassword()
        return user.password_hash

    async def _start_session(self, user_id: UserId) -> TokenPair:
        now = self._authority.clock()
        first, token = RefreshToken.start(user_id, now=now, ttl=self._authority.refresh_ttl)
        async with self._uow as uow:
            await uow.sessions.purge_expired(user_id, now)
            uow.sessions.add(first)
            try:
                await uow.commit()
            except IntegrityError as error:  # the account was deleted since its password was checked
                raise InvalidCredentials() from error
        return self._pair(user_id, token)

    def _pair(self, user_id: UserId, refresh_token: str) -> TokenPair:
        access = self._authority.signer.issue(user_id)
        return TokenPair(access.access_token, access.expires_in, refresh_token)

    async def _rehash(self, user_id: UserId, password: str) -> None:
        password_hash = await self._hasher.hash(password)
        async with self._uow as uow:
            user = await uow.users.get(user_id, for_update=True)
            if user is not None:
                user.change(password_hash=password_hash)
                await uow.commit()


def _require_self(actor: Principal, user_id: UserId) -> None:
    if actor.user_id != user_id:
        raise AuthorizationError("You may only act on your own account")
