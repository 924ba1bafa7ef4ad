"""The extauth credential provider: ejabberd's external authentication program protocol.

Theory of operation
-------------------
The operator's program runs for as long as the server (ejabberd's
``extauth_program``; see https://docs.ejabberd.im/developer/guide/#external-authentication).
Every request is one frame on the program's stdin, every answer one frame on
its stdout; a frame is a 2-byte big-endian length followed by that many
bytes::

    request   LEN "auth:" User ":" Server ":" Password     check a password
              LEN "isuser:" User ":" Server                does the account exist
              LEN "setpass:" User ":" Server ":" Password  change a password
    answer    00 02 00 01   true
              00 02 00 00   false

The password is last and may contain ``:``; a program splits only on the
first colons (``line.split(":", 3)``).  User and Server cannot contain
``:``: a localpart never does (RFC 7622 §3.3.1), nor does a DNS domain (an
IPv6-literal domain cannot be served by this protocol), and `encode_request`
refuses them rather than send an ambiguous request.

The stream has no request ids, so one program instance answers one request
at a time: an instance is taken from an idle queue for the whole exchange.
Anything that leaves an exchange half done (the program exits, answers
something that is not a frame above, does not answer within the timeout, or
the waiting task is cancelled) makes the stream unusable: that instance's
process is killed, the request fails with `ProviderUnavailable` (the client
gets temporary-auth-failure, RFC 6120 §6.5.11), and the next request on that
instance starts a new process, after `restart_delay` doubled for every
consecutive failure (capped at `max_restart_delay`) so a program that dies
at once does not spin.  When that delay would outlast the request's own
timeout, the request fails at once instead of waiting.

The framing functions at the top are pure; the asyncio code below them only
moves frames.  The program's stderr is the server's stderr.  A password is
never logged nor put into an exception message.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections.abc import Sequence

from chatgate.auth.credentials import ScramKeys
from chatgate.auth.options import ExtauthProviderOptions
from chatgate.auth.provider import Capability, ProviderUnavailable
from chatgate.vocabulary.errors import ConfigError

__all__ = [
    "MAX_FRAME",
    "ExtauthProtocolError",
    "ExtauthProvider",
    "RequestTooLong",
    "decode_reply",
    "encode_request",
    "reply_length",
]

log = logging.getLogger(__name__)

#: The length prefix is two bytes.
MAX_FRAME = 0xFFFF

#: Seconds `close()` lets a program exit by itself after its stdin closes.
_EXIT_GRACE = 2.0


class ExtauthProtocolError(ProviderUnavailable):
    """The program wrote something that is not an answer frame."""


class RequestTooLong(ValueError):
    """The request does not fit in one frame (more than 65535 bytes of UTF-8)."""


def encode_request(op: str, user: str, server: str, password: str | None = None) -> bytes:
    """One request frame.  Raises `ValueError` for a ``:`` in `op`, `user` or `server`,
    and `RequestTooLong` when the UTF-8 payload exceeds `MAX_FRAME` bytes."""
    for name, value in (("op", op), ("user", user), ("server", server)):
        if ":" in value:
            raise ValueError(f"{name} contains ':'; the request would be ambiguous")
    fields = [op, user, server] if password is None else [op, user, server, password]
    payload = ":".join(fields).encode("utf-8")
    if len(payload) > MAX_FRAME:
        raise RequestTooLong(f"{op} request of {len(payload)} bytes exceeds {MAX_FRAME}")
    return len(payload).to_bytes(2, "big") + payload


def reply_length(header: bytes) -> int:
    """The length in an answer's 2-byte header; it must be 2.  Raises `ExtauthProtocolError`."""
    if len(header) != 2:
        raise ValueError("the header is two bytes")
    length = int.from_bytes(header, "big")
    if length != 2:
        raise ExtauthProtocolError(f"answer of length {length}, expected 2")
    return length


def decode_reply(body: bytes) -> bool:
    """The verdict in a 2-byte answer body: 1 true, 0 false.  Raises `ExtauthProtocolError`."""
    if body == b"\x00\x01":
        return True
    if body == b"\x00\x00":
        return False
    raise ExtauthProtocolError(f"answer {body.hex()} is neither 0001 nor 0000")


def _alive(process: asyncio.subprocess.Process) -> bool:
    """False once the loop has seen the program exit or close its stdout (whichever it
    notices first: a request written then would only meet end of file)."""
    stdout = process.stdout
    return process.returncode is None and not (stdout is not None and stdout.at_eof())


class _Instance:
    """One copy of the program: its process and its restart bookkeeping.

    Used by one request at a time (the provider's idle queue guarantees it).
    """

    def __init__(self, command: Sequence[str], options: ExtauthProviderOptions) -> None:
        self._command = list(command)
        self._options = options
        self._env = {**os.environ, **options.environment}
        self._process: asyncio.subprocess.Process | None = None
        self._failures = 0
        self._restart_at = 0.0  # loop time before which no new process starts
        self._reapers: set[asyncio.Task[int]] = set()

    @property
    def pid(self) -> int | None:
        process = self._process
        return process.pid if process is not None and _alive(process) else None

    async def spawn(self) -> None:
        self._process = await asyncio.create_subprocess_exec(
            *self._command,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            env=self._env,
        )

    async def exchange(self, request: bytes, deadline: float) -> bool:
        """Send one request frame and read its answer; `deadline` is loop time.

        The caller applies the timeout; whatever interrupts the exchange kills
        the process (its stream would be out of step otherwise).
        """
        process = await self._ready(deadline)
        stdin, stdout = process.stdin, process.stdout
        assert stdin is not None and stdout is not None
        finished = False
        try:
            stdin.write(request)
            await stdin.drain()
            length = reply_length(await stdout.readexactly(2))
            verdict = decode_reply(await stdout.readexactly(length))
            finished = True
        except (asyncio.IncompleteReadError, ConnectionError) as exc:
            raise ProviderUnavailable(
                f"the extauth program exited during a request ({type(exc).__name__})"
            ) from None
        finally:
            if not finished:
                self._discard(process, failed=True)
        self._failures = 0
        return verdict

    async def _ready(self, deadline: float) -> asyncio.subprocess.Process:
        process = self._process
        if process is not None and _alive(process):
            return process
        if process is not None:
            log.warning("extauth program (pid %d) exited (%s)", process.pid, process.returncode)
            self._discard(process, failed=True)
        loop = asyncio.get_running_loop()
        if self._restart_at > deadline:
            raise ProviderUnavailable(
                f"the extauth program is restarting in {self._restart_at - loop.time():.1f}s"
            )
        delay = self._restart_at - loop.time()
        if delay > 0:
            await asyncio.sleep(delay)
        try:
            await self.spawn()
        except OSError as exc:
            self._note_failure()
            raise ProviderUnavailable(f"cannot start the extauth program: {exc.strerror}") from None
        assert self._process is not None
        log.info("extauth program started (pid %d)", self._process.pid)
        return self._process

    def _note_failure(self) -> None:
        self._failures += 1
        exponent = min(self._failures - 1, 30)
        delay = min(self._options.restart_delay * 2**exponent, self._options.max_restart_delay)
        self._restart_at = asyncio.get_running_loop().time() + delay

    def _discard(self, process: asyncio.subprocess.Process, *, failed: bool) -> None:
        """Kill `process` now (no await: this runs while a task is being cancelled) and
        reap it in the background."""
        if self._process is process:
            self._process = None
        if failed:
            self._note_failure()
        if process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                process.kill()
        if process.stdin is not None:
            process.stdin.close()
        task = asyncio.get_running_loop().create_task(process.wait())
        self._reapers.add(task)
        task.add_done_callback(self._reapers.discard)

    async def stop(self) -> None:
        """Close the program's stdin (a well-behaved program exits), kill it after a grace."""
        process, self._process = self._process, None
        if process is not None and process.returncode is None:
            if process.stdin is not None:
                process.stdin.close()
            try:
                await asyncio.wait_for(process.wait(), _EXIT_GRACE)
            except TimeoutError:
                self._discard(process, failed=False)
        if self._reapers:
            await asyncio.gather(*self._reapers, return_exceptions=True)


class ExtauthProvider:
    """`CredentialProvider` backed by ejabberd-style external programs; see the module docstring.

    `start()` spawns `options.instances` programs (raising `ConfigError` when
    the command cannot be executed at all); `close()` stops them.
    """

    offers: frozenset[Capability] = frozenset({Capability.VERIFY_PASSWORD})

    def __init__(
        self, options: ExtauthProviderOptions, *, command: Sequence[str] | None = None
    ) -> None:
        """`command` is `options.command` with its program path resolved (default: as is)."""
        self._options = options
        self._command = list(options.command if command is None else command)
        self._instances = [_Instance(self._command, options) for _ in range(options.instances)]
        self._idle: asyncio.Queue[_Instance] | None = None

    @property
    def pids(self) -> list[int | None]:
        """Process id of each instance's running program (None when none runs)."""
        return [instance.pid for instance in self._instances]

    async def start(self) -> None:
        if self._idle is not None:
            return
        try:
            for instance in self._instances:
                await instance.spawn()
        except OSError as exc:
            await self._stop_all()
            raise ConfigError(
                f"auth.provider.extauth.command: cannot run {self._command[0]!r}: {exc.strerror}"
            ) from None
        idle: asyncio.Queue[_Instance] = asyncio.Queue()
        for instance in self._instances:
            idle.put_nowait(instance)
        self._idle = idle

    async def close(self) -> None:
        self._idle = None
        await self._stop_all()

    async def _stop_all(self) -> None:
        await asyncio.gather(*(instance.stop() for instance in self._instances))

    # ------------------------------------------------------- CredentialProvider

    async def scram_keys(self, username: str, domain: str, hash_name: str) -> ScramKeys | None:
        """Always None: the protocol only checks passwords."""
        return None

    async def verify_password(self, username: str, domain: str, password: str) -> bool:
        """``auth:``; raises `ProviderUnavailable` when the program cannot answer."""
        if not password:
            return False
        try:
            request = encode_request("auth", username, domain, password)
        except RequestTooLong:
            return False  # no password the program knows can be this long
        return await self._call(request)

    async def user_exists(self, username: str, domain: str) -> bool:
        """``isuser:``; raises `ProviderUnavailable` when the program cannot answer."""
        return await self._call(encode_request("isuser", username, domain))

    async def set_password(self, username: str, domain: str, password: str) -> bool:
        """``setpass:``; True when the program accepted the change.  Raises `ValueError` for
        an empty or too long password, `ProviderUnavailable` when the program cannot answer."""
        if not password:
            raise ValueError("empty password")
        return await self._call(encode_request("setpass", username, domain, password))

    # ---------------------------------------------------------------- internals

    async def _call(self, request: bytes) -> bool:
        idle = self._idle
        if idle is None:
            raise RuntimeError("ExtauthProvider.start() was not called")
        timeout = self._options.timeout
        try:
            async with asyncio.timeout(timeout) as scope:
                instance = await idle.get()
                try:
                    deadline = scope.when()
                    assert deadline is not None
                    return await instance.exchange(request, deadline)
                finally:
                    idle.put_nowait(instance)
        except TimeoutError:
            raise ProviderUnavailable(
                f"the extauth program did not answer within {timeout:g}s"
            ) from None
