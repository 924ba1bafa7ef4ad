"""The fetched npm packages load in Debian's Chromium from a local server, with nothing
from the network: Strophe.js's UMD build defines ``window.Strophe``, converse.js (an ES
module) defines ``window.converse``, renders its login form with its own stylesheet and
fonts, and loads a locale chunk lazily from beside ``converse.min.js``.  The layout checked
here is the one ``/chat/`` serves."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path
from typing import Any

from .conftest import PageLog, StaticSite

#: No request may leave the page's origin: the policy the /chat/ page should send too.
#: converse's stylesheet loader injects <style> elements, hence 'unsafe-inline' for styles.
CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data: blob:; font-src 'self'; connect-src 'self' ws://127.0.0.1:9"
)

PAGE = f"""<!doctype html>
<html lang="de">
<head>
  <meta charset="utf-8">
  <meta http-equiv="Content-Security-Policy" content="{CSP}">
  <title>chatgate web assets</title>
  <link rel="stylesheet" href="/assets/converse.js/converse.min.css">
  <script src="/before.js"></script>
  <script src="/assets/strophe.js/strophe.umd.min.js"></script>
  <script type="module" src="/assets/converse.js/converse.min.js"></script>
  <script type="module" src="/init.js"></script>
</head>
<body></body>
</html>
"""

#: Runs first.  converse registers an element only when no element of that name exists,
#: so defining <converse-footer> here replaces its fullscreen footer, whose sponsor logos
#: come from conversejs.org.
BEFORE = """
window.cspViolations = [];
document.addEventListener("securitypolicyviolation", (e) => {
  window.cspViolations.push(e.violatedDirective + " " + e.blockedURI);
});
customElements.define("converse-footer", class extends HTMLElement {});
"""

#: Module scripts run in document order, so converse.min.js has run by now.
INIT = """
window.converse.initialize({
  assets_path: "/assets/converse.js/",
  i18n: "de",
  view_mode: "fullscreen",
  // a port nothing listens on: the page must render without any server
  websocket_url: "ws://127.0.0.1:9/xmpp-websocket",
  discover_connection_methods: false,
  auto_login: false,
  play_sounds: false,
});
"""


async def test_strophe_and_converse_load_from_the_local_server(
    page: Any,
    page_log: PageLog,
    web_assets: Path,
    tmp_path: Path,
    static_site: Callable[[Mapping[str, Path]], StaticSite],
    save_screenshot: Callable[[Any, str], Awaitable[Path]],
) -> None:
    for name, text in (("index.html", PAGE), ("before.js", BEFORE), ("init.js", INIT)):
        (tmp_path / name).write_text(text)
    site = static_site({"/": tmp_path, "/assets/": web_assets})
    requested: list[str] = []
    page.on("request", lambda r: requested.append(r.url))

    await page.goto(site.url("/index.html"))

    assert await page.evaluate("typeof window.Strophe.Connection") == "function"
    assert await page.evaluate("window.Strophe.VERSION")
    assert await page.evaluate("typeof window.converse.initialize") == "function"
    # the login form is converse's own rendering, in German from the lazily loaded chunk
    await page.wait_for_selector("converse-root form input[name=password]", state="visible")
    await page.wait_for_function(
        "document.querySelector('converse-root').innerText.includes('Anmelden')"
    )
    chunks = [u for u in requested if "/assets/converse.js/chunkjs/locales/" in u]
    assert any(u.endswith("/de-LC_MESSAGES-converse-po.js") for u in chunks), chunks
    # the stylesheet's webfonts resolve beside it
    assert await page.evaluate("document.fonts.check('16px Muli')")
    assert all(u.startswith(site.origin) or u.startswith(("data:", "blob:")) for u in requested), [
        u for u in requested if not u.startswith(site.origin)
    ]
    assert page_log.errors == []
    assert await page.evaluate("window.cspViolations") == []
    # converse's connection attempt to the closed port fails; no file may be missing
    assert [r for r in page_log.failed_requests if "/assets/" in r] == []

    shot = await save_screenshot(page, "converse-login")
    assert shot.stat().st_size > 10_000
