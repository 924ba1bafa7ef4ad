"""What an operation refuses, by whose fault: the API turns each into a status
(404, 409, 422, 503), the console into a message.  The message is for people
and never contains a secret."""

from __future__ import annotations


class OperationError(Exception):
    """An operation could not be done; `message` says why."""

    #: a stable code the API answers with (`not_found`, `conflict`, ...)
    code = "refused"

    def __init__(self, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        #: the input field at fault, when one is (validation)
        self.field = field


class NotFound(OperationError):
    """The account, session, invitation ... named does not exist (404)."""

    code = "not_found"


class Conflict(OperationError):
    """The change collides with the present state: a name taken, already done (409)."""

    code = "conflict"


class Invalid(OperationError):
    """The input breaks a rule the request model could not express (422)."""

    code = "invalid"


class Unavailable(OperationError):
    """The feature is not configured (`[streams]` off, no internal accounts) (404)."""

    code = "not_configured"
