"""The account policy: what a new account's name and every new password must be.

One set of rules wherever an account is made or a password set: in-band
registration and an in-band password change (`modules/register.py`), and
``chatgate user add``, ``passwd`` and ``import`` and ``invite create --username``
(`cli/`).  The command line used to accept a one-character password and the
name ``admin`` that registration refuses; a rule kept in one place cannot drift
apart like that.

The values are configured in ``[modules.register]`` (`min_username_length`,
`max_username_length`, `min_password_length`, `reserved_usernames`), which
`RegisterOptions.account_policy()` turns into an `AccountPolicy`; they apply
whether or not registration is enabled.

Order of the password checks, cheapest first: present, at most 1,024 bytes
(`auth/passwords.py`, before anything prepares it), PRECIS OpaqueString
(RFC 8265), then the minimum length in characters of the prepared password.

Pure: nothing here awaits, logs or keeps state.  `AccountPolicy.password` costs
a PRECIS pass (up to a millisecond or so); a server calls it in a worker thread.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from chatgate.auth.passwords import TOO_LONG, prepare_password, too_long
from chatgate.jid import InvalidJID, prepare_username

__all__ = [
    "DEFAULT_RESERVED",
    "AccountPolicy",
    "NameUnavailable",
    "PolicyViolation",
]

#: Names that look official (RFC 2142 mailboxes and the like), reserved by default.
DEFAULT_RESERVED: tuple[str, ...] = (
    "admin",
    "administrator",
    "root",
    "postmaster",
    "hostmaster",
    "webmaster",
    "abuse",
    "security",
    "support",
    "noc",
)


class PolicyViolation(ValueError):
    """A name or password the policy refuses.  The message says why, in words fit for
    a client and an operator alike, and never quotes a password."""


class NameUnavailable(PolicyViolation):
    """A well-formed name nobody may take (`reserved_usernames`); registration answers
    it as a taken name (conflict), not as a malformed one."""


@dataclass(frozen=True, slots=True)
class AccountPolicy:
    """The rules; the defaults are `RegisterOptions`' defaults."""

    min_username_length: int = 1
    max_username_length: int = 64
    min_password_length: int = 8
    #: prepared (PRECIS UsernameCaseMapped) names
    reserved_usernames: frozenset[str] = field(default_factory=lambda: frozenset(DEFAULT_RESERVED))

    def username(self, text: str | None, *, allow_reserved: bool = False) -> str:
        """The prepared username; raises `PolicyViolation` for a missing or malformed
        name or one of the wrong length, `NameUnavailable` for a reserved one (unless
        `allow_reserved`: an operator making an account such as ``admin`` on purpose)."""
        if not text:
            raise PolicyViolation("a username is required")
        try:
            username = prepare_username(text)
        except InvalidJID as exc:
            raise PolicyViolation(f"invalid username: {exc}") from None
        if not self.min_username_length <= len(username) <= self.max_username_length:
            raise PolicyViolation(
                f"usernames have {self.min_username_length} to"
                f" {self.max_username_length} characters"
            )
        if username in self.reserved_usernames and not allow_reserved:
            raise NameUnavailable("this username is not available")
        return username

    def password_size(self, text: str | None) -> str:
        """The cheap checks, before anything prepares the password: present (an empty
        password is missing, XEP-0077 §3.1), and at most `MAX_PASSWORD_BYTES`."""
        if not text:
            raise PolicyViolation("a password is required")
        if too_long(text):
            raise PolicyViolation(TOO_LONG)
        return text

    def password(self, text: str | None) -> str:
        """`text` when it passes every rule (`password_size`, PRECIS OpaqueString, the
        minimum length of the prepared password); raises `PolicyViolation`."""
        text = self.password_size(text)
        try:
            prepared = prepare_password(text).decode("utf-8")
        except ValueError as exc:
            reason = getattr(exc, "reason", None)
            detail = f" (PRECIS OpaqueString: {reason})" if isinstance(reason, str) else ""
            raise PolicyViolation(f"the password has disallowed characters{detail}") from None
        if len(prepared) < self.min_password_length:
            raise PolicyViolation(f"passwords have at least {self.min_password_length} characters")
        return text
