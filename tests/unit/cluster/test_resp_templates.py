"""`CommandTemplate`: what it packs is byte for byte what hiredis packs, and the
directory's login commands say what its EVAL fallback says."""

from __future__ import annotations

import hiredis
import pytest

from chatgate.cluster.directory import _SCRIPTS, ClusterSessionDirectory
from chatgate.cluster.resp import CommandTemplate
from chatgate.xmpp.session import C2SSession
from tests.redis_server import RedisServer
from tests.unit.cluster.test_directory import make_node


@pytest.mark.parametrize(
    ("args", "values"),
    [
        (("PING",), ()),
        (("GET", None), ("k",)),
        ((None, "x", None, None, 7, None), ("SET", "", "é😀\r\n", "tail")),
        (("EVALSHA", "0" * 40, 3, None, "a", "b"), ("c" * 70000,)),
    ],
)
def test_a_template_packs_what_hiredis_packs(
    args: tuple[str | int | None, ...], values: tuple[str, ...]
) -> None:
    filled = iter(values)
    full = tuple(next(filled) if arg is None else arg for arg in args)
    assert CommandTemplate(*args).pack(*values) == hiredis.pack_command(full)


def test_a_template_refuses_the_wrong_number_of_values() -> None:
    with pytest.raises(ValueError, match="2 values expected"):
        CommandTemplate("SET", None, None).pack("only one")


async def test_the_login_commands_are_the_scripts_with_their_arguments(
    redis_server: RedisServer,
) -> None:
    node = await make_node(redis_server, "t")
    try:
        directory: ClusterSessionDirectory = node.directory
        session = C2SSession(
            username="ann", domain="example.net", resource="ph/one é", stream_id="s",
            write=lambda data: None, close=lambda condition, text: None, transport="tcp",
        )  # fmt: skip
        for chosen in (True, False):
            args = directory._claim_args(session, "sid7", chosen)
            assert directory._claim_packed(session, "sid7", chosen) == hiredis.pack_command(
                ("EVALSHA", _SCRIPTS["claim"].sha, 3, *args)
            )
        args = directory._release_args(session, "sid7")
        assert directory._release_packed(session, "sid7") == hiredis.pack_command(
            ("EVALSHA", _SCRIPTS["release"].sha, 3, *args)
        )
    finally:
        await node.node.close()
