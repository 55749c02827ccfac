"""The users service's Annotated dependencies."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from fastmicro.security import PasswordHasher
from fastmicro.web import RuntimeDep
from users.service import Authority, UserService
from users.uow import UsersUnitOfWork


async def get_user_service(request: Request, runtime: RuntimeDep) -> UserService:
    hasher: PasswordHasher = request.app.state.password_hasher
    authority: Authority = request.app.state.authority
    return UserService(UsersUnitOfWork(runtime.session_factory), hasher, authority)


UserServiceDep = Annotated[UserService, Depends(get_user_service)]
