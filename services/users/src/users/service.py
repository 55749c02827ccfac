"""The users use cases: the only place their rules run."""

from __future__ import annotations

from typing import TYPE_CHECKING

from sqlalchemy.exc import IntegrityError

from fastmicro.db import unique_violation
from fastmicro.errors import AuthorizationError
from fastmicro.security import InvalidToken, IssuedToken, PasswordHasher, Principal, TokenCodec
from fastmicro_contracts.users import UserCreated, UserDeleted, UserUpdated
from users.errors import EmailTaken, InvalidCredentials
from users.models import User, UserId

if TYPE_CHECKING:
    from users.schemas import UserCreate, UserOut, UserUpdate
    from users.uow import UsersUnitOfWork


class UserService:
    def __init__(self, uow: UsersUnitOfWork, hasher: PasswordHasher, tokens: TokenCodec) -> None:
        self._uow = uow
        self._hasher = hasher
        self._tokens = tokens

    async def register(self, data: UserCreate) -> User:
        # Hash before the transaction: no connection is held during the slow part.
        password_hash = await self._hasher.hash(data.password.get_secret_value())
        async with self._uow as uow:
            user = User.register(email=data.email, name=data.name, password_hash=password_hash)
            try:
                await uow.users.create(user)
            except IntegrityError as error:
                if unique_violation(error) == "uq_users_email":
                    raise EmailTaken() from error
                raise
            uow.emit(UserCreated(user_id=user.id, email=user.email, name=user.name))
            await uow.commit()
        return user

    async def issue_token(self, email: str, password: str) -> IssuedToken:
        async with self._uow as uow:
            user = await uow.users.get_by_email(email)
        # Unknown emails are verified against a decoy hash: a miss takes as long as a hit.
        if not await self._hasher.verify(user.password_hash if user else None, password) or user is None:
            raise InvalidCredentials()
        if self._hasher.needs_rehash(user.password_hash):
            await self._rehash(user.id, password)
        return self._tokens.issue(user.id)

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
        _require_self(actor, user_id)
        password_hash = await self._hasher.hash(changes.password.get_secret_value()) if changes.password else None
        async with self._uow as uow:
            user = await self._actor(uow, actor, for_update=True)
            if user.change(name=changes.name, password_hash=password_hash):
                await uow.users.update(user)
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
