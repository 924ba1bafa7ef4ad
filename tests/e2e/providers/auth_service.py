"""A small password-check service for the http provider's tests, run as its own process.

Usage: ``python auth_service.py [--secret S]``.  It listens on a free
127.0.0.1 port and prints ``PORT <n>`` on stdout once it accepts connections.

POST routes take the JSON the provider sends (``{"user", "server", "password"}``):

  /auth      200 {"result": true|false}
  /auth-401  200 {"result": true}, or 401 for a wrong password
  /exists    200 {"result": true|false} for {"user", "server"}
  /error     500
  /slow      answers after 30 s
  /empty     200 with an empty body
  /text      200 "OK" (text/plain)
  /redirect  307 to /auth
  /big       200 with 100 kB of JSON

GET /calls answers how many POSTs arrived; GET /last the last JSON body.
With --secret, a POST without ``Authorization: Bearer S`` gets 401.
"""

from __future__ import annotations

import argparse
import asyncio
import json

from aiohttp import web

ACCOUNTS = {
    ("alice", "localhost"): "correct horse",
    ("colon", "localhost"): "pa:ss:word",
    ("ünï", "localhost"): "pässwörd",
    ("carol", "ext.localhost"): "carol on a virtual host",  # tests/e2e/test_virtual_hosts.py
}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--secret")
    args = parser.parse_args()
    state = {"calls": 0, "last": None}

    @web.middleware
    async def count(request: web.Request, handler):  # type: ignore[no-untyped-def]
        if request.method == "POST":
            state["calls"] += 1
            state["last"] = await request.json()
            if args.secret and request.headers.get("Authorization") != f"Bearer {args.secret}":
                return web.Response(status=401)
        return await handler(request)

    def verdict(body: dict) -> bool:
        return ACCOUNTS.get((body.get("user"), body.get("server"))) == body.get("password")

    async def auth(request: web.Request) -> web.Response:
        return web.json_response({"result": verdict(await request.json())})

    async def auth_401(request: web.Request) -> web.Response:
        if verdict(await request.json()):
            return web.json_response({"result": True})
        return web.Response(status=401)

    async def exists(request: web.Request) -> web.Response:
        body = await request.json()
        return web.json_response({"result": (body.get("user"), body.get("server")) in ACCOUNTS})

    async def error(_request: web.Request) -> web.Response:
        return web.Response(status=500, text="database is down")

    async def slow(_request: web.Request) -> web.Response:
        await asyncio.sleep(30)
        return web.json_response({"result": True})

    async def empty(_request: web.Request) -> web.Response:
        return web.Response(status=200)

    async def text(_request: web.Request) -> web.Response:
        return web.Response(text="OK")

    async def redirect(_request: web.Request) -> web.Response:
        raise web.HTTPTemporaryRedirect("/auth")

    async def big(_request: web.Request) -> web.Response:
        return web.json_response({"result": True, "padding": "x" * 100_000})

    async def calls(_request: web.Request) -> web.Response:
        return web.json_response(state["calls"])

    async def last(_request: web.Request) -> web.Response:
        return web.Response(text=json.dumps(state["last"]), content_type="application/json")

    app = web.Application(middlewares=[count])
    app.add_routes(
        [
            web.post("/auth", auth),
            web.post("/auth-401", auth_401),
            web.post("/exists", exists),
            web.post("/error", error),
            web.post("/slow", slow),
            web.post("/empty", empty),
            web.post("/text", text),
            web.post("/redirect", redirect),
            web.post("/big", big),
            web.get("/calls", calls),
            web.get("/last", last),
        ]
    )

    async def serve() -> None:
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = runner.addresses[0][1]
        print(f"PORT {port}", flush=True)
        await asyncio.Event().wait()

    asyncio.run(serve())


if __name__ == "__main__":
    main()
