"""An ejabberd-style external authentication program for the extauth provider's tests.

Reads 2-byte big-endian length-prefixed requests on stdin and answers each
with 2-byte length 2 + 2-byte result (1 true, 0 false), exactly as ejabberd's
protocol says.  Splits only on the first colons, so passwords may contain ":".

Users that misbehave on purpose (any request naming them):
  crash    the program exits (status 3) without answering
  slow     the answer comes after 30 s
  garbage  the answer is a frame of length 5
Exits 0 at EOF on stdin.  ``--log FILE`` appends one line per request
(operation, user, server: never the password) so tests can see what arrived.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

ACCOUNTS = {
    ("alice", "localhost"): "correct horse",
    ("colon", "localhost"): "pa:ss:word",
    ("ünï", "localhost"): "pässwörd",
}


def read_exactly(stream, n: int) -> bytes | None:  # type: ignore[no-untyped-def]
    data = b""
    while len(data) < n:
        chunk = stream.read(n - len(data))
        if not chunk:
            return None
        data += chunk
    return data


def answer(ok: bool) -> None:
    sys.stdout.buffer.write(b"\x00\x02" + (b"\x00\x01" if ok else b"\x00\x00"))
    sys.stdout.buffer.flush()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--log")
    args = parser.parse_args()
    accounts = dict(ACCOUNTS)
    stdin = sys.stdin.buffer
    while True:
        header = read_exactly(stdin, 2)
        if header is None:
            return
        body = read_exactly(stdin, int.from_bytes(header, "big"))
        if body is None:
            return
        op, _, rest = body.decode("utf-8").partition(":")
        if op in ("auth", "setpass"):
            user, server, password = rest.split(":", 2)
        else:
            user, server = rest.split(":", 1)
            password = None
        if args.log:
            with open(args.log, "a", encoding="utf-8") as fh:
                fh.write(f"{os.getpid()} {op} {user} {server}\n")
        if user == "crash":
            os._exit(3)
        if user == "slow":
            time.sleep(30)
        if user == "garbage":
            sys.stdout.buffer.write(b"\x00\x05hello")
            sys.stdout.buffer.flush()
            continue
        if op == "auth":
            answer(accounts.get((user, server)) == password)
        elif op == "isuser":
            answer((user, server) in accounts)
        elif op == "setpass":
            if (user, server) in accounts:
                accounts[(user, server)] = password  # type: ignore[assignment]
            answer((user, server) in accounts)
        else:
            answer(False)


if __name__ == "__main__":
    main()
