"""What a handler's failure means for its message, and what may be said about it.

A handler's exception can carry the event's data: a database error's text holds the statement's
parameters (an email, a name, a body), and asyncpg quotes the argument it could not encode. So
the log and the dead-letter headers get the exception's type and SQLSTATE, never its text. The
exceptions a handler raises on purpose (`NonRetryable`, `RetryLater`) are the exception: their
message is written for the operator, and is kept.
"""

from __future__ import annotations

from fastmicro.db import is_data_error, sqlstate_of

_MESSAGE_LENGTH = 500


class NonRetryable(Exception):
    """Raised by a handler for a message that no retry can fix: it is dead-lettered at once.

    Its message goes to the log and to the dead letter's headers: keep personal data out of it.
    """


class RetryLater(Exception):
    """Raised by a handler when what it needs has not arrived yet (an event ahead of its cause).

    Its message goes to the log: keep personal data out of it.
    """


def is_permanent(error: BaseException) -> bool:
    """True when retrying cannot help: the handler said so, or the database refuses the data itself."""
    return isinstance(error, NonRetryable) or is_data_error(error)


def failure_fields(error: BaseException) -> dict[str, str]:
    """Log fields for `error`: its type, its SQLSTATE when it has one, and the message of our own kinds only."""
    fields = {"error_type": type(error).__name__}
    state = sqlstate_of(error)
    if state is not None:
        fields["sqlstate"] = state
    if isinstance(error, NonRetryable | RetryLater):
        fields["error"] = str(error)[:_MESSAGE_LENGTH]
    return fields


def failure_text(error: BaseException) -> str:
    """One line for a dead letter's headers, from the same fields as the log's."""
    fields = failure_fields(error)
    text = fields["error_type"]
    if "sqlstate" in fields:
        text += f" (SQLSTATE {fields['sqlstate']})"
    if "error" in fields:
        text += f": {fields['error']}"
    return text


def dead_reason(error: BaseException) -> str:
    """The `x-fastmicro-dead-reason` of a message whose handler failed for good."""
    if isinstance(error, NonRetryable):
        return f"non-retryable: {str(error)[:_MESSAGE_LENGTH]}"
    return f"non-retryable: the database refuses the data (SQLSTATE {sqlstate_of(error)})"
