"""Browser fixtures: Debian's Chromium driven by Playwright, a static file server, artifacts.

Playwright drives ``/usr/bin/chromium`` (Debian's package, installed by
``tests/install-system-deps.sh``); it never downloads a browser of its own.  The machine
has no network, and a Chromium left to its defaults keeps trying Google's services and can
stall on refused connections, so it is started with those services off.  Each browser
launch gets a new, empty profile (Playwright makes a temporary user-data-dir).

The API is Playwright's async one, because the tests that use it also drive slixmpp
clients on the same event loop.  One browser serves the whole session (launching one costs
about a second), so every async test in this folder runs on the session's event loop (see
`pytest_collection_modifyitems`); each test gets a fresh context and page (`page`).

Without ``/usr/bin/chromium`` the tests are skipped on a developer's machine and fail in
CI (``CI=true``), where a missing browser is a broken install, not a reason to pass.
"""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import threading
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Mapping
from dataclasses import dataclass, field
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio

from chatgate import webassets

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = Path("/usr/bin/chromium")
#: where screenshots and browser logs are kept (gitignored); CI may collect the folder
ARTIFACTS = Path(os.environ.get("CHATGATE_TEST_ARTIFACTS", ROOT / "test-artifacts"))
#: the unpacked npm packages (`make web-assets`), served to test pages under /assets/
WEB_ASSETS = ROOT / webassets.DEFAULT_DEST
CHROMIUM_ARGS = (
    "--no-sandbox",  # CI runs as root, where Chromium's sandbox refuses to start
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-quic",
    "--no-first-run",
    "--no-default-browser-check",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-domain-reliability",
    "--disable-features=Translate,OptimizationHints,MediaRouter,DialMediaRouteProvider",
    "--mute-audio",
)
#: how long a Playwright action or expectation waits before failing (ms)
DEFAULT_TIMEOUT_MS = 15_000

_IN_CI = os.environ.get("CI", "").lower() == "true"


def _unavailable(reason: str) -> None:
    """Skip on a developer's machine; fail in CI, where the install must have worked."""
    if _IN_CI:
        pytest.fail(f"{reason} (CI=true: failing instead of skipping)", pytrace=False)
    pytest.skip(reason)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Run this folder's async tests on the session's event loop, the browser's loop."""
    here = Path(__file__).parent
    marker = pytest.mark.asyncio(loop_scope="session")
    for item in items:
        if here in Path(str(item.path)).parents and asyncio.iscoroutinefunction(
            getattr(item, "function", None)
        ):
            item.add_marker(marker, append=False)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    """Keep each phase's report on the item, so `page` knows at teardown if the test failed."""
    outcome = yield
    report = outcome.get_result()
    setattr(item, f"report_{report.when}", report)


# -- artifacts --------------------------------------------------------------------------


def artifact_dir(node: pytest.Item | pytest.Function) -> Path:
    """``test-artifacts/<module>/<test name>/`` for one test, created on demand; what an
    earlier run left there is removed the first time a test asks, so every file in it is
    from the latest run."""
    module = Path(str(node.path)).stem
    name = re.sub(r"[^A-Za-z0-9_.-]+", "_", node.name).strip("_")
    folder = ARTIFACTS / module / name
    if not getattr(node, "_artifacts_fresh", False):
        shutil.rmtree(folder, ignore_errors=True)
        setattr(node, "_artifacts_fresh", True)  # noqa: B010 - pytest nodes take attributes
    folder.mkdir(parents=True, exist_ok=True)
    return folder


@pytest.fixture
def artifacts(request: pytest.FixtureRequest) -> Path:
    """This test's artifact folder (``test-artifacts/<module>/<test>/``)."""
    return artifact_dir(request.node)


@pytest.fixture
def save_screenshot(artifacts: Path) -> Callable[[Any, str], Awaitable[Path]]:
    """``await save_screenshot(page, "logged-in")`` keeps a full-page PNG as
    ``test-artifacts/<module>/<test>/logged-in.png`` and returns its path."""

    async def save(page: Any, name: str) -> Path:
        path = artifacts / f"{name}.png"
        # animations="disabled" ends fade-ins first: a mid-animation shot is half faded
        await page.screenshot(path=str(path), full_page=True, animations="disabled")
        return path

    return save


# -- static files -----------------------------------------------------------------------


class _MountHandler(SimpleHTTPRequestHandler):
    """Serves files from several folders, each under a URL prefix, without caching."""

    mounts: Mapping[str, Path] = {}

    def translate_path(self, path: str) -> str:
        plain = path.split("?", 1)[0].split("#", 1)[0]
        for prefix in sorted(self.mounts, key=len, reverse=True):
            if plain.startswith(prefix):
                # the base class resolves against self.directory and drops "..", "." parts
                self.directory = str(self.mounts[prefix])
                return super().translate_path("/" + plain[len(prefix) :])
        return "/nonexistent/unmounted"

    def end_headers(self) -> None:
        self.send_header("Cache-Control", "no-store")
        super().end_headers()

    def log_message(self, format: str, *args: Any) -> None:
        """Requests are not logged: Playwright's own events show what the page fetched."""


_MountHandler.extensions_map = {
    **SimpleHTTPRequestHandler.extensions_map,
    ".js": "text/javascript",  # module scripts must have a JavaScript type
    ".mjs": "text/javascript",
    ".wasm": "application/wasm",
    ".json": "application/json",
}


@dataclass
class StaticSite:
    """A running static server: ``site.url("/page.html")`` gives an absolute URL."""

    host: str
    port: int
    mounts: Mapping[str, Path]
    _server: ThreadingHTTPServer = field(repr=False)
    _thread: threading.Thread = field(repr=False)

    @property
    def origin(self) -> str:
        return f"http://{self.host}:{self.port}"

    def url(self, path: str = "/") -> str:
        return self.origin + (path if path.startswith("/") else "/" + path)

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)


def serve_static(mounts: Mapping[str, Path], host: str = "127.0.0.1") -> StaticSite:
    """Serve `mounts` ({URL prefix: folder}, prefixes end in "/") on a free port of
    `host`, from a thread; call ``.stop()`` when done (the fixture does)."""
    for prefix, folder in mounts.items():
        if not prefix.startswith("/") or not prefix.endswith("/"):
            raise ValueError(f"mount prefix {prefix!r} must start and end with '/'")
        if not Path(folder).is_dir():
            raise FileNotFoundError(folder)
    handler = type("Handler", (_MountHandler,), {"mounts": {p: Path(f) for p, f in mounts.items()}})
    server = ThreadingHTTPServer((host, 0), partial(handler))
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, name="static-site", daemon=True)
    thread.start()
    return StaticSite(host, server.server_address[1], dict(mounts), server, thread)


@pytest.fixture(scope="session")
def web_assets() -> Path:
    """The unpacked converse.js and Strophe.js (``web/dist``), fetched if missing:
    ``web_assets / "strophe.js" / "strophe.umd.min.js"``."""
    packages = webassets.load_lock(ROOT / webassets.DEFAULT_LOCK)
    if not all(webassets.is_current(p, WEB_ASSETS) for p in packages):
        try:
            webassets.fetch_all(packages, WEB_ASSETS)
        except webassets.AssetError as exc:
            pytest.fail(f"web assets unavailable ({exc}); run `make web-assets`", pytrace=False)
    return WEB_ASSETS


@pytest.fixture
def static_site() -> Iterator[Callable[[Mapping[str, Path]], StaticSite]]:
    """A factory: ``site = static_site({"/": tmp_path, "/assets/": web_assets})`` serves
    those folders on 127.0.0.1 and a free port until the test ends."""
    started: list[StaticSite] = []

    def start(mounts: Mapping[str, Path]) -> StaticSite:
        site = serve_static(mounts)
        started.append(site)
        return site

    yield start
    for site in started:
        site.stop()


# -- the browser ------------------------------------------------------------------------


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def browser() -> AsyncIterator[Any]:
    """One headless Chromium (Playwright's async `Browser`) for the whole session."""
    if not CHROMIUM.exists():
        _unavailable(f"{CHROMIUM} is missing: run `bash tests/install-system-deps.sh` as root")
    try:
        from playwright.async_api import async_playwright
    except ImportError:
        _unavailable("playwright is not installed: run `make install-test`")
    async with async_playwright() as playwright:
        launched = await playwright.chromium.launch(
            executable_path=str(CHROMIUM), headless=True, args=list(CHROMIUM_ARGS)
        )
        try:
            yield launched
        finally:
            await launched.close()


@dataclass
class PageLog:
    """What the page said: console lines, uncaught errors and failed requests."""

    console: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    failed_requests: list[str] = field(default_factory=list)

    def text(self) -> str:
        parts = [
            ("console", self.console),
            ("page errors", self.errors),
            ("failed requests", self.failed_requests),
        ]
        return "\n".join(f"== {title}\n" + "\n".join(lines) for title, lines in parts) + "\n"


@pytest.fixture
def page_log() -> PageLog:
    """What this test's `page` logged (console, uncaught errors, failed requests)."""
    return PageLog()


@pytest_asyncio.fixture(loop_scope="session")
async def page(
    browser: Any, page_log: PageLog, request: pytest.FixtureRequest
) -> AsyncIterator[Any]:
    """A fresh context and page per test (no shared cookies or storage), recording into
    `page_log`; when the test fails, a screenshot and the log are kept as artifacts."""
    artifact_dir(request.node)  # clears what an earlier run of this test left
    context = await browser.new_context(viewport={"width": 1280, "height": 800})
    context.set_default_timeout(DEFAULT_TIMEOUT_MS)
    new_page = await context.new_page()
    log = page_log
    new_page.on("console", lambda m: log.console.append(f"{m.type}: {m.text}"))
    new_page.on("pageerror", lambda e: log.errors.append(str(e)))
    new_page.on("requestfailed", lambda r: log.failed_requests.append(f"{r.url}: {r.failure}"))

    def bad_status(response: Any) -> None:
        if response.status >= 400:
            log.failed_requests.append(f"{response.url}: HTTP {response.status}")

    new_page.on("response", bad_status)
    try:
        yield new_page
    finally:
        report = getattr(request.node, "report_call", None)
        if report is not None and report.failed:
            folder = artifact_dir(request.node)
            (folder / "browser.log").write_text(log.text())
            try:
                await new_page.screenshot(path=str(folder / "failure.png"), full_page=True)
            except Exception as exc:  # the page may be gone; the log is still kept
                (folder / "failure-screenshot-error.txt").write_text(repr(exc))
        await context.close()
