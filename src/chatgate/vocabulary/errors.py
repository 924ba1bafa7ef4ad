"""Stream and stanza error conditions (RFC 6120 §4.9.3 and §8.3.3), and who is at fault.

`PeerProtocolError` is raised by the protocol cores when the *peer* broke the
protocol; the session turns it into a stream error.  Our own misuse raises
ordinary `TypeError`/`ValueError`.
"""

from __future__ import annotations

import enum


class StreamErrorCondition(enum.Enum):
    """RFC 6120 §4.9.3: the defined stream error conditions."""

    BAD_FORMAT = "bad-format"
    BAD_NAMESPACE_PREFIX = "bad-namespace-prefix"
    CONFLICT = "conflict"
    CONNECTION_TIMEOUT = "connection-timeout"
    HOST_GONE = "host-gone"
    HOST_UNKNOWN = "host-unknown"
    IMPROPER_ADDRESSING = "improper-addressing"
    INTERNAL_SERVER_ERROR = "internal-server-error"
    INVALID_FROM = "invalid-from"
    INVALID_NAMESPACE = "invalid-namespace"
    INVALID_XML = "invalid-xml"
    NOT_AUTHORIZED = "not-authorized"
    NOT_WELL_FORMED = "not-well-formed"
    POLICY_VIOLATION = "policy-violation"
    REMOTE_CONNECTION_FAILED = "remote-connection-failed"
    RESET = "reset"
    RESOURCE_CONSTRAINT = "resource-constraint"
    RESTRICTED_XML = "restricted-xml"
    SEE_OTHER_HOST = "see-other-host"
    SYSTEM_SHUTDOWN = "system-shutdown"
    UNDEFINED_CONDITION = "undefined-condition"
    UNSUPPORTED_ENCODING = "unsupported-encoding"
    UNSUPPORTED_FEATURE = "unsupported-feature"
    UNSUPPORTED_STANZA_TYPE = "unsupported-stanza-type"
    UNSUPPORTED_VERSION = "unsupported-version"


class StanzaErrorCondition(enum.Enum):
    """RFC 6120 §8.3.3: the defined stanza error conditions, with their default error type."""

    BAD_REQUEST = "bad-request"
    CONFLICT = "conflict"
    FEATURE_NOT_IMPLEMENTED = "feature-not-implemented"
    FORBIDDEN = "forbidden"
    GONE = "gone"
    INTERNAL_SERVER_ERROR = "internal-server-error"
    ITEM_NOT_FOUND = "item-not-found"
    JID_MALFORMED = "jid-malformed"
    NOT_ACCEPTABLE = "not-acceptable"
    NOT_ALLOWED = "not-allowed"
    NOT_AUTHORIZED = "not-authorized"
    POLICY_VIOLATION = "policy-violation"
    RECIPIENT_UNAVAILABLE = "recipient-unavailable"
    REDIRECT = "redirect"
    REGISTRATION_REQUIRED = "registration-required"
    REMOTE_SERVER_NOT_FOUND = "remote-server-not-found"
    REMOTE_SERVER_TIMEOUT = "remote-server-timeout"
    RESOURCE_CONSTRAINT = "resource-constraint"
    SERVICE_UNAVAILABLE = "service-unavailable"
    SUBSCRIPTION_REQUIRED = "subscription-required"
    UNDEFINED_CONDITION = "undefined-condition"
    UNEXPECTED_REQUEST = "unexpected-request"

    @property
    def default_type(self) -> str:
        """The error `type` RFC 6120 §8.3.3 gives for this condition."""
        return _DEFAULT_TYPES.get(self, "cancel")


_DEFAULT_TYPES = {
    StanzaErrorCondition.BAD_REQUEST: "modify",
    StanzaErrorCondition.FORBIDDEN: "auth",
    StanzaErrorCondition.GONE: "cancel",
    StanzaErrorCondition.JID_MALFORMED: "modify",
    StanzaErrorCondition.NOT_ACCEPTABLE: "modify",
    StanzaErrorCondition.NOT_AUTHORIZED: "auth",
    StanzaErrorCondition.POLICY_VIOLATION: "modify",
    StanzaErrorCondition.RECIPIENT_UNAVAILABLE: "wait",
    StanzaErrorCondition.REDIRECT: "modify",
    StanzaErrorCondition.REGISTRATION_REQUIRED: "auth",
    StanzaErrorCondition.RESOURCE_CONSTRAINT: "wait",
    StanzaErrorCondition.SUBSCRIPTION_REQUIRED: "auth",
    StanzaErrorCondition.UNEXPECTED_REQUEST: "wait",
    StanzaErrorCondition.INTERNAL_SERVER_ERROR: "cancel",
}


class SaslFailureCondition(enum.Enum):
    """RFC 6120 §6.5: SASL failure conditions."""

    ABORTED = "aborted"
    ACCOUNT_DISABLED = "account-disabled"
    CREDENTIALS_EXPIRED = "credentials-expired"
    ENCRYPTION_REQUIRED = "encryption-required"
    INCORRECT_ENCODING = "incorrect-encoding"
    INVALID_AUTHZID = "invalid-authzid"
    INVALID_MECHANISM = "invalid-mechanism"
    MALFORMED_REQUEST = "malformed-request"
    MECHANISM_TOO_WEAK = "mechanism-too-weak"
    NOT_AUTHORIZED = "not-authorized"
    TEMPORARY_AUTH_FAILURE = "temporary-auth-failure"


class PeerProtocolError(Exception):
    """The peer broke the stream protocol; the stream closes with `condition`."""

    def __init__(self, condition: StreamErrorCondition, text: str = "") -> None:
        super().__init__(f"{condition.value}: {text}" if text else condition.value)
        self.condition = condition
        self.text = text


class StanzaError(Exception):
    """A stanza cannot be processed; the sender gets an error stanza with `condition`."""

    def __init__(
        self, condition: StanzaErrorCondition, text: str = "", error_type: str | None = None
    ) -> None:
        super().__init__(f"{condition.value}: {text}" if text else condition.value)
        self.condition = condition
        self.text = text
        self.error_type = error_type or condition.default_type


class ConfigError(Exception):
    """The operator's configuration is invalid; the message names the option."""
