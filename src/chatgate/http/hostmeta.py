"""XEP-0156 discovery: `/.well-known/host-meta` (XRD) and `host-meta.json`.

Web clients given only a domain look here for the BOSH and WebSocket URLs.  The
URLs are those of the listener that served the request (its scheme and the
`Host` the client used), so a page reached over HTTPS is told `wss://` and
`https://`, and one behind a reverse proxy is told the proxy's address when the
proxy forwards `Host` (see docs/web.md).  Every origin may read it: a web
client on another site discovers the endpoints before it knows whether it may
use them (BOSH then needs that site in `[http] cors_origins`).
"""

from __future__ import annotations

import json

from aiohttp import web

from chatgate.xml.serialize import escape_attr

#: Discovery is public and carries no credential: any page may read it (XEP-0156 §3
#: asks for CORS on host-meta), whatever `[http] cors_origins` allows for BOSH.
PUBLIC = {"Access-Control-Allow-Origin": "*"}

BOSH_REL = "urn:xmpp:alt-connections:xbosh"
WEBSOCKET_REL = "urn:xmpp:alt-connections:websocket"


def endpoints(request: web.Request, bosh: str | None, websocket: str | None) -> dict[str, str]:
    """rel -> URL of each enabled endpoint, as this request reached us."""
    host = request.host
    secure = request.secure
    found: dict[str, str] = {}
    if websocket is not None:
        found[WEBSOCKET_REL] = f"{'wss' if secure else 'ws'}://{host}{websocket}"
    if bosh is not None:
        found[BOSH_REL] = f"{'https' if secure else 'http'}://{host}{bosh}"
    return found


def xrd(links: dict[str, str]) -> str:
    lines = "".join(
        f'  <Link rel="{escape_attr(rel)}" href="{escape_attr(href)}"/>\n'
        for rel, href in links.items()
    )
    return (
        "<?xml version='1.0' encoding='utf-8'?>\n"
        "<XRD xmlns='http://docs.oasis-open.org/ns/xri/xrd-1.0'>\n"
        f"{lines}</XRD>\n"
    )


def jrd(links: dict[str, str]) -> str:
    return json.dumps({"links": [{"rel": rel, "href": href} for rel, href in links.items()]})
