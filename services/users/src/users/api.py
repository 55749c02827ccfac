"""The users HTTP API: schemas in, use case, schemas out. No rules here."""

from __future__ import annotations

from typing import Annotated
from uuid import UUID

from fastapi import APIRouter, Depends, Response, status
from fastapi.security import OAuth2PasswordRequestForm

from fastmicro.errors import problems
from fastmicro.openapi import link
from fastmicro.security import CurrentUser
from users.dependencies import UserServiceDep
from users.schemas import TokenOut, UserCreate, UserOut, UserUpdate

_NO_STORE = {"Cache-Control": "no-store", "Pragma": "no-cache"}
# From a User to what can be done with it (the fuzzer's stateful tests follow them too).
_USER = {"user_id": "$response.body#/id"}
_USER_LINKS = {
    "links": {
        "GetUser": link("GET", "/users/{user_id}", **_USER),
        "UpdateUser": link("PATCH", "/users/{user_id}", **_USER),
        "DeleteUser": link("DELETE", "/users/{user_id}", **_USER),
    }
}

router = APIRouter(tags=["users"])


@router.post("/users", status_code=status.HTTP_201_CREATED, responses={201: _USER_LINKS, **problems(409, 422)})
async def register(body: UserCreate, service: UserServiceDep) -> UserOut:
    return UserOut.model_validate(await service.register(body))


@router.post("/auth/token", responses=problems(401, 422))
async def issue_token(
    form: Annotated[OAuth2PasswordRequestForm, Depends()], service: UserServiceDep, response: Response
) -> TokenOut:
    token = await service.issue_token(form.username, form.password)
    response.headers.update(_NO_STORE)  # RFC 6749, 5.1: no cache may keep a token
    return TokenOut(access_token=token.access_token, expires_in=token.expires_in)


@router.get("/users/me", responses={200: _USER_LINKS, **problems(401)})
async def me(actor: CurrentUser, service: UserServiceDep) -> UserOut:
    return await service.me(actor)


@router.get("/users/{user_id}", responses=problems(401, 403, 422))
async def get_user(user_id: UUID, actor: CurrentUser, service: UserServiceDep) -> UserOut:
    return await service.get(actor, user_id)


@router.patch("/users/{user_id}", responses=problems(401, 403, 422))
async def update_user(user_id: UUID, body: UserUpdate, actor: CurrentUser, service: UserServiceDep) -> UserOut:
    return UserOut.model_validate(await service.update(actor, user_id, body))


@router.delete("/users/{user_id}", status_code=status.HTTP_204_NO_CONTENT, responses=problems(401, 403, 422))
async def delete_user(user_id: UUID, actor: CurrentUser, service: UserServiceDep) -> Response:
    await service.delete(actor, user_id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)
