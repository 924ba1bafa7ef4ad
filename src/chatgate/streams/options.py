"""`[streams]`: the stream authority's hooks, which media servers call on the HTTP
listener under `/hooks/ADAPTER/...` (nginx-rtmp, MediaMTX, SRS, Red5 Pro).

Off by default: a fresh install serves chat only.  The hooks answer only the
networks in `hook_networks` (loopback by default): a media server, not the
internet, calls them.
"""

from __future__ import annotations

import ipaddress

from pydantic import BaseModel, ConfigDict, field_validator

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
