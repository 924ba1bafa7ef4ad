"""The steps of the connection driver that a resumption from another node repeats:
the session's write path (`rewire`), nonzas out, and ending a session whose
queue overflowed or whose client did not come back.

They live apart from the driver (`sm_driver.py`) because both the driver and
the takeover of a session from another node (`sm_takeover.py`) take them, and
the driver starts that takeover: each importing the other would be an import
cycle.  The driver's module docstring describes the write path and hibernation.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from chatgate.vocabulary.errors import StreamErrorCondition

if TYPE_CHECKING:
    from chatgate.xmpp.session import C2SSession
    from chatgate.xmpp.sm_connection import SmConnection as C2SConnection
    from chatgate.xmpp.sm_queue import HandledCountTooHigh

#: the driver's logger: these are its steps, and log filters that name it still apply
log = logging.getLogger("chatgate.xmpp.sm_driver")


def send_nonza(conn: C2SConnection, xml: str) -> None:
    conn.output.element(xml.encode())


def rewire(conn: C2SConnection, session: C2SSession) -> None:
    """Set the session's write path from the connection's state (module docstring)."""
    write = None if conn.closed else conn.output.element
    sm = conn.sm
    if sm is not None:
        sm.forward = write
        write = sm.write
    csi = conn.csi
    if csi is not None and write is not None:
        csi.forward = write
        write = csi.write
    if write is not None:
        session.write = write


def count_too_high(conn: C2SConnection, exc: HandledCountTooHigh) -> None:
    """XEP-0198 §4: "the receiving entity ... MUST close the stream with an
    undefined-condition error" (with `<handled-count-too-high h send-count/>`, which
    this server's stream errors carry as text)."""
    log.info("%s: %s", conn.session.full if conn.session else "-", exc)
    conn.close_stream(
        StreamErrorCondition.UNDEFINED_CONDITION,
        f"handled-count-too-high: h={exc.h} send-count={exc.sent}",
    )


def overflowed(conn: C2SConnection) -> None:
    """The unacknowledged queue went over a bound: the session ends (its stanzas
    are rerouted, nothing is lost).  Prosody answers the same way."""
    session = conn.session
    if session is None:
        return
    log.info("%s: too many unacknowledged stanzas, session closed", session.full)
    if conn.resume_timer is not None:
        end_hibernated(conn)
    else:
        conn.close_stream(
            StreamErrorCondition.RESOURCE_CONSTRAINT, "too many unacknowledged stanzas"
        )


def end_hibernated(conn: C2SConnection) -> None:
    """A hibernated session ends for good."""
    timer, conn.resume_timer = conn.resume_timer, None
    if timer is None:
        return
    timer.cancel()
    conn.ctx.connections.discard(conn)
    session = conn.session
    if session is not None:
        log.info("%s was not resumed: ended", session.full)
        conn._end_session(session)
