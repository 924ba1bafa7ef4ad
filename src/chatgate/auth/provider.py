"""The credential-provider protocol: what authentication may ask of an identity source.

A provider declares the `Capability` values it offers; a SASL mechanism
declares those it needs; the offered mechanism list is computed from both
(never from a function that knows every mechanism by name).

The errors a provider raises when it cannot answer live here too, beside the
protocol they belong to: providers import this module, never the registry
that builds them (`auth/registry.py` imports the providers).
"""

from __future__ import annotations

import enum
from typing import Final, Literal, Protocol

from chatgate.auth.credentials import ScramKeys


class ProviderError(Exception):
    """A provider could not answer.  Never means "wrong password" (that is a False answer).

    The SASL driver turns any provider exception into temporary-auth-failure
    (RFC 6120 §6.5.11), so a client is never told its password is wrong
    because a backend was down.  Messages never contain a password.
    """


class ProviderUnavailable(ProviderError):
    """The backend is down, too slow, or answered something that is not an answer."""


class UnsupportedQuestion(ProviderError):
    """The provider, as configured, has no way to answer this question
    (e.g. `user_exists` on the http provider without ``exists_url``)."""


class Capability(enum.Enum):
    VERIFY_PASSWORD = "verify-password"
    SCRAM_SHA_1_KEYS = "scram-sha-1-keys"
    SCRAM_SHA_256_KEYS = "scram-sha-256-keys"
    SCRAM_SHA_512_KEYS = "scram-sha-512-keys"
    CERT_IDENTITY = "cert-identity"
    ANONYMOUS = "anonymous"
    #: H(user:realm:password) for DIGEST-MD5 (RFC 2831); plaintext-equivalent, opt-in
    DIGEST_MD5_HA1 = "digest-md5-ha1"


#: hashlib name -> the capability that serves SCRAM keys for it.
SCRAM_CAPABILITY: dict[str, Capability] = {
    "sha1": Capability.SCRAM_SHA_1_KEYS,
    "sha256": Capability.SCRAM_SHA_256_KEYS,
    "sha512": Capability.SCRAM_SHA_512_KEYS,
}


class CacheAnswer(enum.Enum):
    #: the provider's memory holds every account: this one has no keys for the hash
    NO_SUCH_KEYS = "no-such-keys"


NO_SUCH_KEYS: Final = CacheAnswer.NO_SUCH_KEYS

#: What a provider's synchronous ``cached_scram_keys(username, domain, hash_name)``
#: answers: the keys, `NO_SUCH_KEYS` when it knows there are none (answered as fast
#: as a known user, so timing does not reveal which usernames exist), or None when
#: only the asynchronous `scram_keys` can tell.
CachedKeysAnswer = ScramKeys | Literal[CacheAnswer.NO_SUCH_KEYS] | None


class CredentialProvider(Protocol):
    """An identity source for one virtual host.

    Every method answers for ``username@domain`` where `username` is already a
    PRECIS-enforced localpart.  "Unknown user" and "wrong password" are not
    distinguished to callers that face the network.
    """

    offers: frozenset[Capability]

    async def scram_keys(self, username: str, domain: str, hash_name: str) -> ScramKeys | None:
        """The stored SCRAM keys for `hash_name`, or None when the user is unknown."""
        ...

    async def verify_password(self, username: str, domain: str, password: str) -> bool:
        """True when `password` is this user's password."""
        ...

    async def user_exists(self, username: str, domain: str) -> bool: ...
