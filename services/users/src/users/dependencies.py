"""The users service's Annotated dependencies."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from fastmicro.security import PasswordHasher
from fastmicro.web import RuntimeDep
from users.service import UserService
from users.uow import UsersUnitOfWork


async def get_user_service(request: Request, runtime: RuntimeDep) -> UserService:
    hasher: PasswordHasher = request.app.state.password_hasher
    return UserService(UsersUnitOfWork(runtime.session_factory), hasher, runtime.tokens)


UserServiceDep = Annotated[UserService, Depends(get_user_service)]
