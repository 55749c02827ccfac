from __future__ import annotations

from fastmicro.errors import AuthenticationError, AuthorizationError, ConflictError


class EmailTaken(ConflictError):
    code = "email_taken"
    detail = "Email already registered"


class InvalidCredentials(AuthenticationError):
    code = "invalid_credentials"
    detail = "Incorrect email or password"


class InvalidCurrentPassword(AuthorizationError):
    code = "invalid_current_password"
    detail = "The current password is not correct"


class InvalidRefreshToken(AuthenticationError):
    code = "invalid_token"
    detail = "The refresh token is invalid, expired or revoked"
