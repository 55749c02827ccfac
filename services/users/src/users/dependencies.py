"""The users service's Annotated dependencies."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from fastmicro.security import PasswordHasher
from fastmicro.web import RuntimeDep
from users.service import UserService
from users.uow import UsersUnitOfWork


async def get_uow(runtime: RuntimeDep) -> UsersUnitOfWork:
    return UsersUnitOfWork(runtime.session_factory)


UoWDep = Annotated[UsersUnitOfWork, Depends(get_uow)]


async def get_user_service(request: Request, uow: UoWDep, runtime: RuntimeDep) -> UserService:
    hasher: PasswordHasher = request.app.state.password_hasher
    return UserService(uow, hasher, runtime.tokens)


UserServiceDep = Annotated[UserService, Depends(get_user_service)]
