"""The async edge of SASL: answer a mechanism's credential requests from a provider.

This module owns the only awaits in authentication.  Mechanisms stay sans-I/O:
they return `NeedCredentials`, this code asks the `CredentialProvider`, and the
answer goes back through `resume()`.  A provider that raises yields an answer
with ``temporary_failure`` set, which mechanisms turn into temporary-auth-failure
(RFC 6120 §6.5.11): a storage outage must not look like a wrong password.

A provider that also has ``scram_keys_or_held``, ``verify_password_or_held`` and
``user_exists_or_held`` (the internal one: registrations awaiting approval, locked
accounts) is asked those instead, and credentials it holds back reach the
mechanism as `CredentialAnswer.held`, never as keys or a verdict: a mechanism that
knows nothing of them fails as for an unknown user.  Its ``held_condition(text)``
says which SASL condition a right proof of them gets (`held_condition`).
"""

from __future__ import annotations

import logging

from chatgate.auth.provider import SCRAM_CAPABILITY, Capability, CredentialProvider
from chatgate.sasl.base import CredentialAnswer, Mechanism, NeedCredentials, Step
from chatgate.storage.errors import StorageUnavailable
from chatgate.storage.outage_log import OutageLog
from chatgate.vocabulary.errors import SaslFailureCondition

__all__ = ["advance", "answer_request"]

log = logging.getLogger(__name__)
#: lookups that failed because the database is out of reach
_OUTAGE = OutageLog(log, "SASL")

_SCRAM_HASH: dict[Capability, str] = {cap: name for name, cap in SCRAM_CAPABILITY.items()}
_OTHER_ANSWERS = frozenset(
    {Capability.VERIFY_PASSWORD, Capability.CERT_IDENTITY, Capability.DIGEST_MD5_HA1}
)


def _held_condition(provider: CredentialProvider, held: str) -> SaslFailureCondition:
    """The condition the provider gives a right proof it holds back with `held`."""
    condition = getattr(provider, "held_condition", None)
    return SaslFailureCondition.NOT_AUTHORIZED if condition is None else condition(held)


async def answer_request(
    request: NeedCredentials, provider: CredentialProvider, domain: str
) -> CredentialAnswer:
    """Ask `provider` what `request` needs, for ``request.username@domain``.

    Never raises for provider errors (they are logged and reported as
    ``temporary_failure``); raises `ValueError` for a capability this driver
    cannot serve, which is a programming error.
    """
    capability = request.capability
    hash_name = _SCRAM_HASH.get(capability)
    if hash_name is None and capability not in _OTHER_ANSWERS:
        raise ValueError(f"the SASL driver cannot answer {capability}")
    if capability is Capability.VERIFY_PASSWORD and request.password is None:
        raise ValueError("VERIFY_PASSWORD request without a password")
    try:
        if hash_name is not None:
            keys_or_held = getattr(provider, "scram_keys_or_held", None)
            if keys_or_held is None:
                keys = await provider.scram_keys(request.username, domain, hash_name)
            else:
                keys, held = await keys_or_held(request.username, domain, hash_name)
                if held is not None:
                    condition = _held_condition(provider, held)
                    return CredentialAnswer(held=held, held_keys=keys, held_condition=condition)
            return CredentialAnswer(scram_keys=keys, user_exists=keys is not None)
        if capability is Capability.VERIFY_PASSWORD:
            assert request.password is not None
            verify_or_held = getattr(provider, "verify_password_or_held", None)
            if verify_or_held is None:
                verified = await provider.verify_password(
                    request.username, domain, request.password
                )
                return CredentialAnswer(verified=verified)
            verified, held = await verify_or_held(request.username, domain, request.password)
            if held is None:
                return CredentialAnswer(verified=verified)
            condition = _held_condition(provider, held)
            return CredentialAnswer(verified=verified, held=held, held_condition=condition)
        if capability is Capability.DIGEST_MD5_HA1:
            # Only providers that store the plaintext-equivalent secret offer this.
            ha1 = await provider.digest_md5_ha1(request.username, domain)  # type: ignore[attr-defined]
            return CredentialAnswer(digest_md5_ha1=ha1, user_exists=ha1 is not None)
        # CERT_IDENTITY: the certificate already proved the identity; does the account exist?
        exists_or_held = getattr(provider, "user_exists_or_held", None)
        if exists_or_held is None:
            exists = await provider.user_exists(request.username, domain)
            return CredentialAnswer(user_exists=exists)
        exists, held = await exists_or_held(request.username, domain)
        if held is None:
            return CredentialAnswer(user_exists=exists)
        condition = _held_condition(provider, held)
        return CredentialAnswer(user_exists=True, held=held, held_condition=condition)
    except StorageUnavailable as exc:  # one line per 10 s, not a traceback per login
        what = f"credential lookup for {request.username}@{domain} ({capability.value})"
        _OUTAGE.failed(what, exc)
        return CredentialAnswer(temporary_failure=True)
    except Exception:
        log.exception(
            "credential provider failed for %s@%s (%s)", request.username, domain, capability.value
        )
        return CredentialAnswer(temporary_failure=True)


async def advance(mech: Mechanism, step: Step, provider: CredentialProvider, domain: str) -> Step:
    """Resolve credential requests until `mech` returns something for the peer."""
    while isinstance(step, NeedCredentials):
        step = mech.resume(await answer_request(step, provider, domain))
    return step
