"""The users HTTP API: schemas in, use case, schemas out. No rules here."""

from __future__ import annotations

from typing import Annotated, Any
from uuid import UUID

from fastapi import APIRouter, Depends, Form, Request, Response, status
from fastapi.exceptions import RequestValidationError
from fastapi.security import OAuth2PasswordRequestForm
from pydantic import ValidationError

from fastmicro.errors import problems
from fastmicro.idempotency import AnonymousIdempotencyKey
from fastmicro.openapi import link
from fastmicro.security import CurrentUser
from users.dependencies import UsersDep, UserServiceDep
from users.schemas import RefreshIn, TokenOut, UserCreate, UserOut, UserUpdate
from users.service import TokenPair

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
async def register(body: UserCreate, service: UserServiceDep, key: AnonymousIdempotencyKey) -> UserOut:
    return UserOut.model_validate(await service.register(body, key))


async def _refresh_body(request: Request) -> RefreshIn:
    """`refresh_token` from a form (as OAuth2 clients send it) or from a JSON object."""
    media_type = request.headers.get("content-type", "").partition(";")[0].strip().lower()
    try:
        if media_type in {"application/x-www-form-urlencoded", "multipart/form-data"}:
            form = await request.form()
            return RefreshIn.model_validate({"refresh_token": form.get("refresh_token")})
        return RefreshIn.model_validate_json(await request.body())
    except ValidationError as error:
        raise RequestValidationError(error.errors(include_url=False)) from None


# The schema in place: no route takes RefreshIn as its body, so FastAPI lists it in no component.
# A form's unrecognised parameters are ignored (RFC 6749, 3.2), a JSON object's refused.
_REFRESH_SCHEMA = RefreshIn.model_json_schema()
_REFRESH_BODY: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {"schema": _REFRESH_SCHEMA},
            "application/x-www-form-urlencoded": {"schema": {**_REFRESH_SCHEMA, "additionalProperties": True}},
        },
    }
}
RefreshBody = Annotated[RefreshIn, Depends(_refresh_body)]


def _token_out(pair: TokenPair, response: Response) -> TokenOut:
    response.headers.update(_NO_STORE)  # RFC 6749, 5.1: no cache may keep a token
    return TokenOut(access_token=pair.access_token, expires_in=pair.expires_in, refresh_token=pair.refresh_token)


class LoginForm(OAuth2PasswordRequestForm):
    """The OAuth2 password flow's form (Swagger's Authorize sends it), documented as it is checked:
    an empty username or password is refused (422), as it always was."""

    def __init__(
        self,
        *,
        username: Annotated[str, Form(min_length=1)],
        password: Annotated[str, Form(min_length=1, json_schema_extra={"format": "password"})],
        grant_type: Annotated[str | None, Form(pattern="^password$")] = None,
        scope: Annotated[str, Form()] = "",
        client_id: Annotated[str | None, Form()] = None,
        client_secret: Annotated[str | None, Form(json_schema_extra={"format": "password"})] = None,
    ) -> None:
        super().__init__(
            grant_type=grant_type,
            username=username,
            password=password,
            scope=scope,
            client_id=client_id,
            client_secret=client_secret,
        )


@router.post("/auth/token", responses=problems(401, 422, 429))
async def issue_token(
    form: Annotated[LoginForm, Depends()], request: Request, service: UserServiceDep, response: Response
) -> TokenOut:
    address = request.client.host if request.client else None  # the proxy's client only if trusted (uvicorn)
    return _token_out(await service.login(form.username, form.password, address), response)


@router.post("/auth/refresh", responses=problems(401, 422), openapi_extra=_REFRESH_BODY)
async def refresh_token(body: RefreshBody, service: UserServiceDep, response: Response) -> TokenOut:
    return _token_out(await service.refresh(body.refresh_token), response)


@router.post(
    "/auth/logout", status_code=status.HTTP_204_NO_CONTENT, responses=problems(422), openapi_extra=_REFRESH_BODY
)
async def logout(body: RefreshBody, service: UserServiceDep) -> Response:
    await service.logout(body.refresh_token)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.get("/.well-known/jwks.json", tags=["keys"])
async def jwks(users: UsersDep, response: Response) -> dict[str, list[dict[str, str]]]:
    """The public keys access tokens are verified with (RFC 7517), the new one ahead of a rotation."""
    response.headers["Cache-Control"] = "public, max-age=300"
    document: dict[str, list[dict[str, str]]] = users.jwks
    return document


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
