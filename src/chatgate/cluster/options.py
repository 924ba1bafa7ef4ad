"""`[cluster]`: whether this process is one node of several, and how it finds the others."""

from __future__ import annotations

import os
import re
import socket
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

#: A node name: it is part of Redis keys and channels, so no spaces or separators.
_NODE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$")


def default_node_name() -> str:
    """The host name and process id: unique on a machine, readable in logs."""
    host = re.sub(r"[^A-Za-z0-9_.-]", "-", socket.gethostname())[:40] or "node"
    return f"{host}-{os.getpid()}"


class ClusterOptions(BaseModel):
    """`[cluster]`: off by default; `make run` is one process with no Redis."""

    model_config = ConfigDict(extra="forbid", frozen=True, use_attribute_docstrings=True)

    enabled: bool = False
    """Join a cluster: sessions, delivery, throttles and cache invalidation go through
    Redis, and `[storage] url` must name a database every node shares (PostgreSQL)."""
    redis_url: str = "redis://127.0.0.1:6379/0"
    """The Redis every node of the cluster uses (`redis://`, `rediss://` or `unix://`)."""
    node: str = ""
    """This node's name, unique in the cluster (empty: the host name and process id).
    A node restarted under the same name takes over what its previous run left."""
    key_prefix: str = "chatgate:"
    """Prefix of every Redis key and channel, so that clusters can share one Redis."""
    heartbeat_interval: Annotated[float, Field(gt=0, le=60)] = 1.0
    """Seconds between a node's heartbeats."""
    node_timeout: Annotated[float, Field(gt=0, le=600)] = 5.0
    """Seconds without a heartbeat after which a node is taken for dead: its sessions
    leave the directory, its users' contacts see them unavailable."""
    command_write_interval: Annotated[float, Field(ge=0, le=0.05)] = 0.005
    """Seconds a busy node leaves at least between two writes of its session changes
    to Redis (claims, releases, presence): each write wakes Redis, and at a few
    thousand logins a second the wake-ups cost the node more than the commands
    (measured: the cluster layer cost logins 6 % at 2 ms, nothing at 5 ms, on a VM
    where a wake-up is dear; docs/benchmarks.md).  A change after a quiet spell goes
    out at the end of the loop turn, and nothing else waits (forwarded stanzas,
    lookups).  0: every change at its turn's end."""
    forward_queue_bytes: Annotated[int, Field(ge=65536)] = 16 * 1024 * 1024
    """Serialized stanzas waiting to be forwarded to other nodes, in bytes; past it
    (Redis slow or gone) further cross-node deliveries are refused and logged."""

    @field_validator("node")
    @classmethod
    def _node_name(cls, value: str) -> str:
        if value and not _NODE_NAME.match(value):
            raise ValueError("a node name is 1-63 letters, digits, '_', '.' or '-'")
        return value

    @model_validator(mode="after")
    def _timeout_after_heartbeats(self) -> ClusterOptions:
        if self.node_timeout < 2 * self.heartbeat_interval:
            raise ValueError("node_timeout must be at least two heartbeat intervals")
        return self

    def node_name(self) -> str:
        return self.node or default_node_name()
