"""ClusterNode against a real redis-server: messages, liveness, Redis going away."""

from __future__ import annotations

import asyncio

import pytest

from chatgate.cluster.node import ClusterNode, ClusterUnavailable
from chatgate.cluster.options import ClusterOptions
from tests.redis_server import RedisServer


def options(server: RedisServer, **extra: object) -> ClusterOptions:
    values: dict[str, object] = {
        "enabled": True,
        "redis_url": server.url,
        "heartbeat_interval": 0.1,
        "node_timeout": 0.5,
    }
    values.update(extra)
    return ClusterOptions.model_validate(values)


async def kill(node: ClusterNode) -> None:
    """As kill -9: no goodbye; the heartbeat key is left to expire."""
    node._stopping = True
    for task in node._tasks:
        task.cancel()
    node._tasks = []
    for connection in (node._commands, node._subscriber):
        if connection is not None:
            connection.close()
    await node.redis.aclose()


async def wait_for(condition, timeout: float = 5.0) -> None:  # type: ignore[no-untyped-def]
    deadline = asyncio.get_running_loop().time() + timeout
    while not condition():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.02)


async def test_a_message_published_to_a_nodes_inbox_reaches_its_handler(
    redis_server: RedisServer,
) -> None:
    a = ClusterNode(options(redis_server), name="a")
    b = ClusterNode(options(redis_server), name="b")
    got: list[bytes] = []
    b.subscribe(b.inbox, got.append)
    await a.start()
    await b.start()
    try:
        assert await a.publish(a.inbox_of("b"), b"hello") == 1
        await wait_for(lambda: got == [b"hello"])
        assert await a.publish(a.inbox_of("nobody"), b"x") == 0
        await wait_for(lambda: "b" in a.others)
    finally:
        await a.close()
        await b.close()


async def test_a_node_that_stops_beating_is_gone_for_the_others(redis_server: RedisServer) -> None:
    a = ClusterNode(options(redis_server), name="a")
    b = ClusterNode(options(redis_server), name="b")
    gone: list[str] = []
    a.on_node_gone(gone.append)
    await a.start()
    await b.start()
    try:
        await wait_for(lambda: "b" in a.others)
        # As kill -9 would: b stops, its heartbeat key is left to expire.
        await kill(b)
        try:
            await wait_for(lambda: gone == ["b"], timeout=3)
        except AssertionError:
            ttl = await a.redis.pttl(a.key("node", "b"))
            state = (gone, [t.done() for t in a._tasks], ttl, a._known, a.connected)
            raise AssertionError(f"b not judged gone: {state}") from None
        assert "b" not in a.others
    finally:
        await a.close()


async def test_a_node_restarted_under_its_name_counts_as_gone(redis_server: RedisServer) -> None:
    a = ClusterNode(options(redis_server), name="a")
    b = ClusterNode(options(redis_server), name="b")
    gone: list[str] = []
    a.on_node_gone(gone.append)
    await a.start()
    await b.start()
    try:
        await wait_for(lambda: "b" in a.others)
        await kill(b)
        b = ClusterNode(options(redis_server), name="b")
        await b.start()
        await wait_for(lambda: gone == ["b"], timeout=3)
        await wait_for(lambda: "b" in a.others)
    finally:
        await a.close()
        await b.close()


async def test_a_node_is_seen_by_the_others_only_once_it_announces(
    redis_server: RedisServer,
) -> None:
    """Between `connect` and `announce` (a server setting its modules up) the
    others neither count the node in nor send to it; it knows them already."""
    a = ClusterNode(options(redis_server), name="a")
    b = ClusterNode(options(redis_server), name="b")
    joined: list[str] = []
    a.on_node_joined(joined.append)
    await a.start()
    try:
        await b.connect()
        assert b.others == {"a"}
        assert b.connected
        await asyncio.sleep(0.5)  # five of a's heartbeats
        assert "b" not in a.others and joined == []
        await b.announce()
        await wait_for(lambda: joined == ["b"])
        assert "b" in a.others
    finally:
        await a.close()
        await b.close()


async def test_the_others_count_a_node_in_and_out_at_once_not_at_their_next_beat(
    redis_server: RedisServer,
) -> None:
    """With beats 5 s apart, a node is seen starting, counted in and gone within
    moments of doing so (its news on `members`): a client of a node that has just
    announced is not left out of the others' broadcasts for a heartbeat."""
    slow = {"heartbeat_interval": 5.0, "node_timeout": 15.0}
    a = ClusterNode(options(redis_server, **slow), name="a")
    b = ClusterNode(options(redis_server, **slow), name="b")
    joined: list[str] = []
    gone: list[str] = []
    a.on_node_joined(joined.append)
    a.on_node_gone(gone.append)
    await a.start()
    try:
        await asyncio.sleep(0.1)  # a's first look is done: the next is 5 s away
        await b.connect()
        await wait_for(lambda: a.joining == {"b"}, timeout=1.0)
        assert joined == []
        await b.announce()
        await wait_for(lambda: joined == ["b"], timeout=1.0)
        assert a.others == {"b"} and a.joining == frozenset()
        await b.close()
        await wait_for(lambda: gone == ["b"], timeout=1.0)
        assert a.others == frozenset()
    finally:
        await a.close()
        await b.close()


async def test_a_previous_run_killed_is_gone_before_the_new_run_announces(
    redis_server: RedisServer,
) -> None:
    """A killed run's heartbeat would make it look alive while its successor
    starts: the successor removes it as it connects, so the others drop the dead
    run's sessions at once, then see the new run join when it announces."""
    a = ClusterNode(options(redis_server, node_timeout=5.0), name="a")
    b = ClusterNode(options(redis_server, node_timeout=5.0), name="b")
    gone: list[str] = []
    joined: list[str] = []
    a.on_node_gone(gone.append)
    a.on_node_joined(joined.append)
    await a.start()
    await b.start()
    try:
        await wait_for(lambda: joined == ["b"])
        await kill(b)
        b = ClusterNode(options(redis_server, node_timeout=5.0), name="b")
        await b.connect()
        # well within the dead run's 5 s expiry
        await wait_for(lambda: gone == ["b"], timeout=1.0)
        assert "b" not in a.others and joined == ["b"]
        await b.announce()
        await wait_for(lambda: joined == ["b", "b"])
    finally:
        await a.close()
        await b.close()


async def test_a_node_that_dies_while_joining_leaves_the_set_of_names(
    redis_server: RedisServer,
) -> None:
    """Nobody counted it in, so nobody judges it gone: its expired heartbeat is
    enough for the set of names (what the session directory publishes to) to
    forget it."""
    a = ClusterNode(options(redis_server), name="a")
    b = ClusterNode(options(redis_server), name="b")
    gone: list[str] = []
    a.on_node_gone(gone.append)
    await a.start()
    try:
        await b.connect()
        assert await a.redis.sismember(a.key("nodes"), "b")
        await kill(b)
        deadline = asyncio.get_running_loop().time() + 3
        while await a.redis.sismember(a.key("nodes"), "b"):
            assert asyncio.get_running_loop().time() < deadline, "b still in the set"
            await asyncio.sleep(0.05)
        assert gone == [] and "b" not in a.others
    finally:
        await a.close()


async def test_redis_gone_and_back_resubscribes_and_calls_on_reconnect(
    redis_server: RedisServer,
) -> None:
    a = ClusterNode(options(redis_server), name="a")
    got: list[bytes] = []
    reconnected: list[bool] = []
    gone: list[str] = []
    a.subscribe(a.inbox, got.append)
    a.on_reconnect(lambda: reconnected.append(True))
    a.on_node_gone(gone.append)
    await a.start()
    try:
        redis_server.stop()
        await wait_for(lambda: not a.connected, timeout=5)
        with pytest.raises(ClusterUnavailable):
            await a.publish(a.inbox, b"lost")
        redis_server.start()
        await wait_for(lambda: a.connected and reconnected == [True], timeout=10)
        publisher = ClusterNode(options(redis_server), name="p")
        await publisher.start()
        try:
            await publisher.publish(publisher.inbox_of("a"), b"again")
            await wait_for(lambda: got == [b"again"])
        finally:
            await publisher.close()
        assert gone == []  # nobody was judged while Redis was away
    finally:
        await a.close()


async def test_an_unreachable_redis_stops_the_start_with_a_clear_error() -> None:
    node = ClusterNode(
        ClusterOptions(enabled=True, redis_url="redis://user:secret@127.0.0.1:1/0"), name="a"
    )
    with pytest.raises(ClusterUnavailable, match=r"redis://\*\*\*@127.0.0.1:1/0") as caught:
        await node.start()
    assert "secret" not in str(caught.value)
    await node.redis.aclose()


async def test_a_node_that_abandons_redis_writes_no_heartbeat_again(
    redis_server: RedisServer,
) -> None:
    """After a start failed on Redis (`abandon`), a Redis back during the stop must
    not see this node beat again: nobody would take that heartbeat back."""
    a = ClusterNode(options(redis_server), name="a")
    await a.start()
    try:
        assert await a.answers()
        a.abandon()
        assert not a.connected and not a.counted_in
        await a.redis.delete(a.key("node", "a"))
        await asyncio.sleep(0.4)  # four heartbeat intervals
        assert await a.redis.exists(a.key("node", "a")) == 0
    finally:
        await a.close()


async def test_answers_is_false_for_a_redis_that_is_not_there() -> None:
    from tests.ports import free_port

    closed = RedisServer.__new__(RedisServer)
    closed.port = free_port()
    a = ClusterNode(
        ClusterOptions.model_validate(
            {"enabled": True, "redis_url": f"redis://127.0.0.1:{closed.port}/0"}
        ),
        name="a",
    )
    try:
        began = asyncio.get_running_loop().time()
        assert not await a.answers(timeout=0.5)
        assert asyncio.get_running_loop().time() - began >= 0.4  # tried again meanwhile
    finally:
        await a.redis.aclose()
