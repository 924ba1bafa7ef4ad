"""`[streams]`: the stream authority's hooks, which media servers call on the HTTP
listener under `/hooks/ADAPTER/...` (nginx-rtmp, MediaMTX, SRS, Red5 Pro, and
Wowza's token provider once `wowza_shared_secret` is set).

Off by default: a fresh install serves chat only.  The hooks answer only the
networks in `hook_networks` (loopback by default): a media server, not the
internet, calls them.
"""

from __future__ import annotations

import ipaddress

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator

from chatgate.streams.policy import InvalidPattern, Rule


class StreamsOptions(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, use_attribute_docstrings=True)

    enabled: bool = False
    """Answer media servers' hooks under `/hooks/` on the HTTP listener."""
    rules: list[str] = []
    """Who may publish and play what: `"publish,play live/* group:staff"`,
    `"play public/* anonymous"`, `"publish live/alice user:alice@example.org"`;
    no rule for a stream denies it (docs/streaming.md)."""
    hook_networks: list[str] = ["127.0.0.0/8", "::1/128"]
    """Addresses the hooks answer (the media servers'); others get 403."""
    groups: dict[str, list[str]] = {}
    """Groups for `group:NAME` rules: ``staff = ["alice@example.org"]``."""
    takeover: bool = False
    """A user publishing a stream they already publish ends the old publication
    (a reconnecting encoder) instead of being refused."""
    update_interval: float | None = Field(default=None, gt=0, le=86_400)
    """Seconds between the media server's renewals (nginx-rtmp's
    `notify_update_timeout`), when it sends them: a session without one for
    three intervals is forgotten.  None: sessions end only by their done hooks."""
    token_max_ttl: int = Field(default=86_400, ge=60, le=30 * 86_400)
    """Longest lifetime of a token issued over XMPP (seconds)."""
    token_default_ttl: int = Field(default=3_600, ge=60, le=30 * 86_400)
    """Lifetime of a token issued over XMPP when the client names none."""
    red5_application: str = Field(default="live", pattern=r"^[A-Za-z0-9_.~+:@-]{1,64}$")
    """The application Red5 Pro's `streamID`s are in: the stream is
    `<red5_application>/<streamID>`."""
    red5_client_token_required: bool = False
    """Refuse Red5 subscribers that bring no token (Red5's `clientTokenRequired`)."""
    wowza_shared_secret: SecretStr | None = None
    """The `sharedSecret` of Wowza's token-provider module: enables
    `/hooks/wowza/tea-token`, which reveals stream keys (not passwords) to it.
    At least 16 latin-1 characters; Wowza's TEA uses the first 16."""

    @field_validator("rules")
    @classmethod
    def _rules_parse(cls, rules: list[str]) -> list[str]:
        for text in rules:
            try:
                Rule.parse(text)
            except (InvalidPattern, ValueError) as exc:
                raise ValueError(f"rule {text!r}: {exc}") from None
        return rules

    @field_validator("hook_networks")
    @classmethod
    def _networks_parse(cls, networks: list[str]) -> list[str]:
        for text in networks:
            ipaddress.ip_network(text, strict=False)  # ValueError names the bad one
        return networks

    @field_validator("wowza_shared_secret")
    @classmethod
    def _wowza_secret_usable(cls, secret: SecretStr | None) -> SecretStr | None:
        if secret is None:
            return None
        text = secret.get_secret_value()
        try:
            encoded = text.encode("latin-1")
        except UnicodeEncodeError:
            raise ValueError("must be latin-1 text (Wowza's TEA key)") from None
        if len(encoded) < 16:
            raise ValueError("must have at least 16 characters (Wowza's TEA key)")
        return secret

    @model_validator(mode="after")
    def _default_within_max(self) -> StreamsOptions:
        if self.token_default_ttl > self.token_max_ttl:
            raise ValueError("token_default_ttl cannot exceed token_max_ttl")
        return self

    @field_validator("groups")
    @classmethod
    def _groups_valid(cls, groups: dict[str, list[str]]) -> dict[str, list[str]]:
        from chatgate.jid import JID, InvalidJID
        from chatgate.streams.policy import Grantee

        for name, members in groups.items():
            Grantee.group(name)  # ValueError names what is wrong
            for member in members:
                try:
                    jid = JID.parse(member)
                except InvalidJID as exc:
                    raise ValueError(f"group {name!r}: {member!r} is not a JID: {exc}") from None
                if not jid.local or jid.resource:
                    raise ValueError(f"group {name!r}: {member!r} is not an account (a bare JID)")
        return groups
