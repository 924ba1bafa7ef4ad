"""XEP-0198 resumption tokens that say which cluster node issued them.

In a cluster a `<resume previd/>` may reach any node.  The node that holds the
session must be found without a shared table, so the token (the SM-ID, §5) names
it, authenticated::

    base64url(node) "." base64url(16 random bytes) "." base64url(HMAC-SHA256[:16])

The MAC is over the node name, the random part and the bare JID of the account
the token was issued to, keyed by the installation secret every node reads from
the database (``sm-resumption``).  So a token is unguessable (128 random bits,
beside the 128-bit MAC), cannot be made to name another node, and another
account's token is refused where it arrives, with no question to any node.

Why not a Redis key ``sm:TOKEN -> node``: the token must keep working while the
session is attached (a phone whose old TCP connection is not yet known dead), so
the key would live as long as the session and outlive a killed node unless
swept; and while Redis is away a node could not even tell its own tokens from
others'.  Here nothing is written anywhere when a token is issued, and a node's
own tokens are always recognized.

Never awaits, never reads the clock.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import secrets

#: the installation secret that keys the tokens' MACs (`db.secrets`)
SECRET_NAME = "sm-resumption"
_RANDOM_BYTES = 16
_MAC_BYTES = 16
#: a token longer than this is no token of ours (node names are short)
MAX_TOKEN = 512


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _mac(key: bytes, node: bytes, nonce: bytes, owner: str) -> bytes:
    message = b"\0".join((node, nonce, owner.encode()))
    return hmac.new(key, message, hashlib.sha256).digest()[:_MAC_BYTES]


class TokenSigner:
    """Issues and reads the tokens of one installation (see the module docstring)."""

    __slots__ = ("_key", "node")

    def __init__(self, key: bytes, node: str) -> None:
        if not key:
            raise ValueError("the token key must not be empty")
        self._key = key
        #: the node this process is: the tokens it issues name it
        self.node = node

    def issue(self, owner: str) -> str:
        """A new token for a session of `owner` (a bare JID) on this node."""
        node = self.node.encode()
        nonce = secrets.token_bytes(_RANDOM_BYTES)
        return ".".join((_b64(node), _b64(nonce), _b64(_mac(self._key, node, nonce, owner))))

    def node_of(self, token: str, owner: str) -> str | None:
        """The node that issued `token` to `owner`, or None when it is no token of
        this installation for that account (malformed, forged, another account's)."""
        if len(token) > MAX_TOKEN or token.count(".") != 2:
            return None
        encoded_node, encoded_nonce, encoded_mac = token.split(".")
        try:
            node = _unb64(encoded_node)
            nonce = _unb64(encoded_nonce)
            mac = _unb64(encoded_mac)
        except (binascii.Error, ValueError):
            return None
        if len(nonce) != _RANDOM_BYTES or not node:
            return None
        if not hmac.compare_digest(mac, _mac(self._key, node, nonce, owner)):
            return None
        try:
            return node.decode()
        except UnicodeDecodeError:
            return None
