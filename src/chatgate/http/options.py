"""`[http]`: the one HTTP(S) listener every web route of the server shares.

BOSH, WebSocket, XEP-0156 discovery and the bundled web chat live here today;
later the admin API, console and media-server hooks join the same listener.
Defaults are those of a fresh install (`make run`): loopback only, HTTP on 5280
and HTTPS on 5281 with the c2s certificate.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, use_attribute_docstrings=True)


class BoshOptions(_Model):
    """XEP-0124 and XEP-0206, at `/http-bind` (and `/http-bind/`)."""

    enabled: bool = True
    """Serve BOSH."""
    max_wait: Annotated[int, Field(ge=1, le=300)] = 60
    """Longest `wait` granted (seconds a request may be held without data)."""
    max_hold: Annotated[int, Field(ge=1, le=5)] = 1
    """Most requests a client may have held at once (`hold`); `requests` is one more."""
    inactivity: Annotated[int, Field(ge=5, le=600)] = 60
    """Seconds a session may have no request pending before it is ended."""
    max_pause: Annotated[int, Field(ge=0, le=3600)] = 120
    """Longest `pause` a client may ask for (0: pausing is not offered)."""
    polling: Annotated[int, Field(ge=0, le=60)] = 2
    """Shortest interval between two empty requests of a client that holds none."""
    max_sessions: Annotated[int, Field(ge=1)] = 50_000
    """Live BOSH sessions on this process; new ones are refused past it."""


class WebSocketOptions(_Model):
    """RFC 7395, at `/xmpp-websocket`, subprotocol `xmpp`."""

    enabled: bool = True
    """Serve XMPP over WebSocket."""
    ping_interval: Annotated[float, Field(ge=0)] = 30.0
    """Seconds between WebSocket pings (a peer that does not answer is closed); 0: off."""
    see_other_uri: str | None = None
    """Where clients should go instead (RFC 7395 §3.6.1): every `<open/>` is answered
    with `<close see-other-uri=.../>`.  For operators who move the endpoint."""


class WebChatOptions(_Model):
    """The bundled web chat (converse.js, served from local files) at `/chat/`."""

    enabled: bool = True
    """Serve the web chat."""
    assets_dir: Path | None = None
    """Where the fetched web assets are (`python -m chatgate.webassets fetch`); by
    default the folder `make run` fetches them into."""


class HttpOptions(_Model):
    enabled: bool = True
    """Run the HTTP(S) listener at all."""
    host: str = "127.0.0.1"
    """Address both ports bind to."""
    port: Annotated[int, Field(ge=0, le=65535)] | Literal[False] = 5280
    """Plain HTTP port; `false` for none.  0 picks a free port (tests)."""
    tls_port: Annotated[int, Field(ge=0, le=65535)] | Literal[False] = 5281
    """HTTPS port (the certificate of `[tls]`); `false` for none."""
    client_certificates: Literal["disabled", "wanted", "needed"] | None = None
    """Client certificates on the HTTPS port (SASL EXTERNAL over BOSH and WebSocket):
    unset follows `[tls] client_certificates`; the trust store and identity rules are
    always `[tls]`'s."""
    mechanisms: list[str] | None = None
    """SASL mechanisms for web sessions, in order; unset follows `[auth]` (and the
    hosts' own lists)."""
    cors_origins: list[str] = []
    """Origins (`https://chat.example.org`) whose pages may call BOSH and the other
    web routes; `"*"` allows every origin.  Empty: same-origin pages only."""
    trusted_proxies: list[str] = []
    """Addresses of reverse proxies whose `X-Forwarded-For` names the client (for
    brute-force protection and logs); from any other peer the header is ignored."""
    max_request_size: Annotated[int, Field(ge=4096)] = 1_048_576
    """Largest request body accepted (a BOSH body may carry several stanzas)."""
    max_connections_per_address: Annotated[int, Field(ge=1)] = 256
    """Open HTTP(S) connections one peer address may hold (both ports together);
    new ones past it are closed at once.  Behind a reverse proxy every connection
    comes from the proxy's address: raise this to what the proxy may open."""
    bosh: BoshOptions = BoshOptions()
    """BOSH at `/http-bind` (`[http.bosh]`)."""
    websocket: WebSocketOptions = WebSocketOptions()
    """XMPP over WebSocket at `/xmpp-websocket` (`[http.websocket]`)."""
    chat: WebChatOptions = WebChatOptions()
    """The web chat at `/chat/` (`[http.chat]`)."""

    @field_validator("cors_origins")
    @classmethod
    def _origins(cls, value: list[str]) -> list[str]:
        for origin in value:
            if origin != "*" and not origin.startswith(("http://", "https://")):
                raise ValueError(f"{origin!r} is not an origin (scheme://host[:port]) or '*'")
        return [origin.rstrip("/") for origin in value]
