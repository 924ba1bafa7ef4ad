"""Our own XMPP load generator: asyncio Protocols on uvloop, pre-built stanza bytes.

Runs as a separate process (`python -m bench.loadgen`), pinned to a different core than the
server under test, and reports its own CPU use with every figure so a reader can tell when the
generator, not the server, was the limit.
"""
