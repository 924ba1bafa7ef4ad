"""XEP-0363 uploads on the HTTP listener: the PUT of a slot and the GET of its file.

PUT ``/upload/<token>/<filename>?e=<deadline>&s=<signature>``: accepted once,
before the deadline, with a Content-Length equal to the slot's size and the
slot's Content-Type, when the signature (`SlotSigner`, keyed by the
installation secret) matches all of them; the body is streamed to disk (never
held in memory, whatever `[http] max_request_size` says) and the file appears
only once complete.  Answers: 201 stored; 400 wrong size or type, or a body
that ended early; 408 a body that stopped coming for `IDLE_TIMEOUT`; 403 a
bad signature or a slot whose time is over; 404 no such slot; 409 a second
PUT; 411 no Content-Length.

GET (and HEAD) ``/upload/<token>/<filename>``: the stored file, 404 for
anything else (no slot, not yet stored, expired, another filename).  Served
with its type inline only for raster images, audio and video; everything else
is an attachment.  Every answer has ``nosniff`` (the listener's middleware) and
a sandboxing Content-Security-Policy, so an uploaded page or script never runs
in the listener's origin.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from typing import TYPE_CHECKING
from urllib.parse import quote

from aiohttp import hdrs, web

from chatgate.modules.upload.slots import PATH_PREFIX, TOKEN, media_type

if TYPE_CHECKING:
    from chatgate.context import ServerContext
    from chatgate.modules.upload import HttpUpload

log = logging.getLogger(__name__)

#: bytes read from the request per step of a PUT
CHUNK = 256 * 1024
#: seconds a PUT may send nothing before it is given up (408; the slot takes
#: another PUT until its deadline)
IDLE_TIMEOUT = 60.0
#: types a browser may show in place (no script can run in them)
INLINE_TYPES = frozenset(
    {"image/png", "image/jpeg", "image/gif", "image/webp", "image/avif", "image/bmp"}
)
INLINE_MAIN_TYPES = frozenset({"audio", "video"})
#: sent with every file: nothing it holds may run or load anything
FILE_HEADERS = {
    "Content-Security-Policy": "default-src 'none'; sandbox",
    "Cache-Control": "private, max-age=86400",
    "Cross-Origin-Resource-Policy": "cross-origin",
}
ROUTE = PATH_PREFIX + "{token}/{name}"


def add_upload_routes(app: web.Application, ctx: ServerContext) -> None:
    """The routes, when the upload module is on (it needs this listener)."""
    record = ctx.modules.get("upload")
    module: HttpUpload | None = record.module if record is not None else None  # type: ignore[assignment]
    if module is None or module.service is None or module.folder is None:
        return
    endpoint = UploadEndpoint(module)
    app.router.add_put(ROUTE, endpoint.put)
    app.router.add_get(ROUTE, endpoint.get)


def _text(status: int, text: str) -> web.Response:
    return web.Response(status=status, text=text + "\n")


class UploadEndpoint:
    def __init__(self, module: HttpUpload) -> None:
        assert module.service is not None and module.folder is not None
        self.service = module.service
        self.folder = module.folder
        self.repository = module.service.repository
        self.idle_timeout = IDLE_TIMEOUT

    async def put(self, request: web.Request) -> web.StreamResponse:
        token, name = request.match_info["token"], request.match_info["name"]
        if not TOKEN.fullmatch(token):
            return _text(404, "no such slot")
        if hdrs.TRANSFER_ENCODING in request.headers or request.content_length is None:
            return _text(411, "a PUT needs a Content-Length")
        slot = await self.repository.get(token)
        if slot is None or slot.filename != name:
            return _text(404, "no such slot")
        size = request.content_length
        if size != slot.size:
            return _text(400, f"Content-Length must be the slot's size, {slot.size}")
        content_type = request.headers.get(hdrs.CONTENT_TYPE, "")
        if content_type and media_type(content_type) != media_type(slot.content_type):
            return _text(400, f"Content-Type must be the slot's, {media_type(slot.content_type)}")
        signer = self.service.signer
        deadline = int(slot.put_before.timestamp())
        signature = request.query.get("s", "")
        expires = request.query.get("e", "")
        if (
            signer is None
            or expires != str(deadline)
            or not signer.check(signature, token, name, size, slot.content_type, deadline)
        ):
            return _text(403, "the URL's signature does not match this upload")
        now = self.service.clock()
        if slot.uploading is not None or slot.stored is not None:
            return _text(409, "this slot was used already")
        if now >= slot.put_before:
            return _text(403, "this slot's time for an upload is over")
        if not await self.repository.claim_put(token, now):
            return _text(409, "this slot was used already")
        return await self._store(request, token, size)

    async def _store(self, request: web.Request, token: str, size: int) -> web.StreamResponse:
        folder = self.folder
        try:
            fd = await asyncio.to_thread(folder.open_partial, token)
        except FileExistsError:
            # The PUT is ours (claimed in the database): the part is left from an
            # earlier one whose clean-up did not happen (a crash).
            folder.partial(token).unlink(missing_ok=True)
            fd = await asyncio.to_thread(folder.open_partial, token)
        done = False
        try:
            with os.fdopen(fd, "wb") as fh:
                written = 0
                while written < size:
                    try:
                        chunk = await asyncio.wait_for(
                            request.content.read(min(CHUNK, size - written)), self.idle_timeout
                        )
                    except TimeoutError:
                        return _text(408, f"no byte came for {self.idle_timeout:g} s")
                    if not chunk:
                        break
                    await asyncio.to_thread(fh.write, chunk)
                    written += len(chunk)
            if written != size:
                return _text(400, f"the body ended after {written} of {size} bytes")
            await asyncio.to_thread(os.replace, folder.partial(token), folder.path(token))
            await self.repository.stored(token, self.service.clock())
            done = True
        finally:
            if not done:
                with contextlib.suppress(FileNotFoundError):
                    folder.partial(token).unlink()
                # even when the client went away (the handler cancelled)
                await asyncio.shield(self.repository.release_put(token))
        log.info("upload %s stored: %d bytes", token, size)
        return _text(201, "stored")

    async def get(self, request: web.Request) -> web.StreamResponse:
        token, name = request.match_info["token"], request.match_info["name"]
        if not TOKEN.fullmatch(token):
            return _text(404, "no such file")
        slot = await self.repository.get(token)
        now = self.service.clock()
        if slot is None or slot.filename != name or slot.stored is None or slot.expires <= now:
            return _text(404, "no such file")
        path = self.folder.path(token)
        if not await asyncio.to_thread(path.is_file):
            return _text(404, "no such file")
        kind = media_type(slot.content_type)
        inline = kind in INLINE_TYPES or kind.split("/", 1)[0] in INLINE_MAIN_TYPES
        headers = {
            **FILE_HEADERS,
            hdrs.CONTENT_TYPE: kind,
            hdrs.CONTENT_DISPOSITION: disposition(slot.filename, inline),
        }
        return web.FileResponse(path, headers=headers)


def disposition(filename: str, inline: bool) -> str:
    """RFC 6266 Content-Disposition: an ASCII fallback and the UTF-8 name (RFC 8187)."""
    fallback = "".join(c if 32 <= ord(c) < 127 and c not in '"\\%' else "_" for c in filename)
    kind = "inline" if inline else "attachment"
    return f"{kind}; filename=\"{fallback}\"; filename*=UTF-8''{quote(filename, safe='')}"
