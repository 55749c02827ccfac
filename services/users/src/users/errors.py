from __future__ import annotations

from fastmicro.errors import AuthenticationError, ConflictError


class EmailTaken(ConflictError):
    code = "email_taken"
    detail = "Email already registered"


class InvalidCredentials(AuthenticationError):
    code = "invalid_credentials"
    detail = "Incorrect email or password"
