"""The bundled web chat at `/chat/`: converse.js, served from local files.

`make run` fetches converse.js from the npm registry into `web/dist/` (see
`chatgate.webassets`); this module serves it with a page preconfigured for this
server: its domain, and the WebSocket and BOSH URLs of the listener the page
was loaded from (so it works over HTTP, HTTPS and behind a proxy alike).
Nothing is loaded from another host: converse's footer, which would fetch
sponsor logos, is replaced by an empty element before converse starts, and its
provider lists are switched off.  The page's Content-Security-Policy allows
only this origin (styles inline: converse injects `<style>` elements; WebAssembly
compilation, not `eval`, for its OMEMO library).
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import TYPE_CHECKING

from aiohttp import web

from chatgate.http.options import HttpOptions
from chatgate.modules.base import ServiceDomain
from chatgate.vocabulary.ns import REGISTER

if TYPE_CHECKING:
    from chatgate.context import ServerContext

log = logging.getLogger(__name__)

PREFIX = "/chat/"
#: where `make web-assets` unpacks the packages, relative to the checkout
_CHECKOUT_ASSETS = Path(__file__).resolve().parents[3] / "web" / "dist"

_INDEX = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{title}</title>
<link rel="icon" href="data:,">
<link rel="stylesheet" href="{prefix}dist/converse.min.css">
<script type="module" src="{prefix}boot.js"></script>
<script type="module" src="{prefix}dist/converse.min.js"></script>
<script type="module" src="{prefix}start.js"></script>
</head>
<body class="converse-fullscreen">
<noscript>The web chat needs JavaScript.</noscript>
</body>
</html>
"""

#: Runs before converse.min.js (module scripts run in document order): an empty
#: <converse-footer> keeps converse from fetching sponsor logos from its website.
_BOOT = """customElements.define("converse-footer", class extends HTMLElement {});
"""

_START = """const cfg = await (await fetch("{prefix}config.json", {{cache: "no-store"}})).json();
const here = new URL(location.href);
const ws = new URL(cfg.websocket_path, here);
ws.protocol = here.protocol === "https:" ? "wss:" : "ws:";
const options = {{
  view_mode: "fullscreen",
  assets_path: "{prefix}dist/",
  sounds_path: "{prefix}dist/sounds/",
  default_domain: cfg.domain,
  domain_placeholder: cfg.domain,
  auto_reconnect: true,
  discover_connection_methods: false,
  show_connection_url_input: false,
  allow_registration: cfg.registration,
  allow_non_roster_messaging: true,
  registration_domain: cfg.domain,
  // Room names typed in "Add groupchat" are searched on this server's own MUC
  // service, never on converse's default public directory (another host).
  muc_search_service: cfg.muc_service || "",
  xmpp_providers_url: "",
  use_system_emojis: true,
  play_sounds: false,
  loglevel: "warn",
  whitelisted_plugins: [],
}};
if (cfg.websocket_path) options.websocket_url = ws.href;
if (cfg.bosh_path) options.bosh_service_url = new URL(cfg.bosh_path, here).href;
window.converse.initialize(options);
"""


def assets_dir(options: HttpOptions) -> Path:
    """Where converse.js was unpacked (`web/dist/converse.js`)."""
    base = options.chat.assets_dir or _CHECKOUT_ASSETS
    return base / "converse.js"


def _muc_service(ctx: ServerContext) -> str | None:
    """The main host's XEP-0045 service, if the muc module runs."""
    record = ctx.modules.get("muc")
    if record is None:
        return None
    for registration in record.registrations:
        if isinstance(registration, ServiceDomain) and registration.parent == ctx.domain:
            return registration.domain
    return None


def add_chat_routes(
    app: web.Application,
    ctx: ServerContext,
    options: HttpOptions,
    websocket_path: str,
    bosh_path: str,
) -> None:
    """`/chat/` (the page), its scripts and configuration, and converse's files."""
    dist = assets_dir(options)
    title = f"Chat on {ctx.domain}"
    config = json.dumps(
        {
            "domain": ctx.domain,
            "websocket_path": websocket_path if options.websocket.enabled else None,
            "bosh_path": bosh_path if options.bosh.enabled else None,
            # in-band registration (XEP-0077) is open before authentication
            "registration": any(ns == REGISTER for ns, _type in ctx.pre_auth_handlers),
            # the main host's group chat service (XEP-0045), where room names are searched
            "muc_service": _muc_service(ctx),
        }
    )

    def page_headers(request: web.Request) -> dict[str, str]:
        host = request.host
        return {
            "Content-Security-Policy": (
                "default-src 'self'; script-src 'self' 'wasm-unsafe-eval'; "
                "style-src 'self' 'unsafe-inline'; img-src 'self' data: blob:; "
                "font-src 'self'; media-src 'self'; "
                f"connect-src 'self' ws://{host} wss://{host}; worker-src 'self' blob:; "
                "frame-ancestors 'none'; base-uri 'none'; form-action 'self'"
            ),
            "Cache-Control": "no-cache",
        }

    async def index(request: web.Request) -> web.Response:
        if not (dist / "converse.min.js").is_file():
            raise web.HTTPServiceUnavailable(
                text="The web chat's files are not installed: run `make web-assets` "
                "(python -m chatgate.webassets fetch web/dist).\n"
            )
        body = _INDEX.format(title=title, prefix=PREFIX)
        return web.Response(text=body, content_type="text/html", headers=page_headers(request))

    def script(text: str) -> web.Response:
        return web.Response(
            text=text, content_type="text/javascript", headers={"Cache-Control": "no-cache"}
        )

    async def boot(request: web.Request) -> web.Response:
        return script(_BOOT)

    async def start(request: web.Request) -> web.Response:
        return script(_START.format(prefix=PREFIX))

    async def configuration(request: web.Request) -> web.Response:
        return web.Response(
            text=config, content_type="application/json", headers={"Cache-Control": "no-store"}
        )

    async def to_index(request: web.Request) -> web.Response:
        raise web.HTTPFound(PREFIX)

    app.router.add_get("/", to_index)
    app.router.add_get("/chat", to_index)
    app.router.add_get(PREFIX, index)
    app.router.add_get(PREFIX + "boot.js", boot)
    app.router.add_get(PREFIX + "start.js", start)
    app.router.add_get(PREFIX + "config.json", configuration)
    if dist.is_dir():
        app.router.add_static(PREFIX + "dist/", dist, follow_symlinks=False)
    else:
        log.warning(
            "web chat: %s not found; /chat/ answers 503 until `make web-assets` is run", dist
        )
