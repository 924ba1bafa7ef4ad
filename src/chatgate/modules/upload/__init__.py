"""XEP-0363 HTTP file upload: a service on ``upload.<host>`` handing out slots,
whose PUT and GET the HTTP listener serves (`chatgate.http.upload`).

Wiring only: `[modules.upload]` (`options.py`), the slot service
(`service.py`), the folder on disk and its purge (`files.py`), the slots'
table (`storage/repositories/uploads.py`).  The service is registered on
every host with accounts (not on anonymous hosts: guests cannot upload), and
only when the HTTP listener is on; otherwise the module says why in the log
and registers nothing.

At start the module reads (or makes) the installation secret that signs PUT
URLs, creates ``data_dir/uploads`` (0700), and arms the purge: every
`purge_interval` seconds expired files and unused slots go.  The purge runs as
one short background task per turn, chained by a timer, so the server's stop
never waits for it beyond the turn under way.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, ClassVar

from pydantic import BaseModel

from chatgate.modules.base import OnStart, Registration, ServiceDomain, Spec
from chatgate.modules.upload.files import UploadFolder, purge
from chatgate.modules.upload.options import UploadOptions
from chatgate.modules.upload.service import UploadService
from chatgate.modules.upload.slots import SlotSigner
from chatgate.storage.repositories.uploads import UploadRepository

if TYPE_CHECKING:
    from chatgate.config import Config
    from chatgate.context import ServerContext
    from chatgate.http.options import HttpOptions

log = logging.getLogger(__name__)

#: the installation secret PUT URLs are signed with (`db.secrets`)
SECRET_NAME = "upload-slot-key-1"


def _now() -> datetime:
    return datetime.now(UTC)


def default_url(host: str, http: HttpOptions) -> str:
    """Where clients reach the listener when `url` is unset: HTTPS when it has a port."""
    if http.tls_port is not False:
        return f"https://{host}:{http.tls_port}"
    return f"http://{host}:{http.port}"


class HttpUpload:
    name: ClassVar[str] = "upload"
    depends: ClassVar[tuple[str, ...]] = ()
    implements: ClassVar[tuple[Spec, ...]] = (Spec("XEP-0363", "1.1.0"),)
    Options: ClassVar[type[BaseModel]] = UploadOptions

    @staticmethod
    def inactive_because(config: Config) -> str | None:
        """Why the module, though enabled, offers nothing (`chatgate check` says it)."""
        return None if config.http.enabled else "needs [http] enabled"

    def __init__(self) -> None:
        #: the slot service (None: the module is off); the HTTP listener reads it
        self.service: UploadService | None = None
        self.folder: UploadFolder | None = None
        self._timer: asyncio.TimerHandle | None = None

    def setup(self, ctx: ServerContext) -> Iterable[Registration]:
        options = ctx.options(self.name, UploadOptions)
        if not options.enabled:
            return
        if not ctx.config.http.enabled:
            log.warning("HTTP file upload is off: it needs the HTTP listener ([http] enabled)")
            return
        hosts = [d for d, h in ctx.hosts.items() if not h.anonymous]
        parents = {f"{options.subdomain}.{host}": host for host in hosts}
        base = options.url or default_url(ctx.domain, ctx.config.http)
        repository = UploadRepository(ctx.db.engine)
        service = self.service = UploadService(options, repository, base, parents, _now)
        folder = self.folder = UploadFolder(ctx.config.data_dir / "uploads")

        async def start() -> None:
            key = await ctx.db.secrets.get_or_create(SECRET_NAME, secrets.token_bytes(32))
            service.signer = SlotSigner(key)
            await asyncio.to_thread(folder.create)
            self._arm(ctx, repository, options.purge_interval, first=options.purge_interval)
            log.info("HTTP file upload on %s, files at %s", ", ".join(parents), base)

        yield OnStart(start)
        for domain, host in parents.items():
            yield ServiceDomain(domain, service.handle, host, "HTTP File Upload")

    def _arm(
        self, ctx: ServerContext, repository: UploadRepository, interval: float, first: float
    ) -> None:
        loop = asyncio.get_running_loop()

        async def run(folder: UploadFolder) -> None:
            await purge(folder, repository, _now())

        def turn() -> None:
            if self.folder is not None:
                ctx.spawn(run(self.folder))
            self._timer = loop.call_later(interval, turn)

        self._timer = loop.call_later(first, turn)
