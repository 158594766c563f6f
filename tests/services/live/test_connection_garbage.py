"""A closed connection's TLS objects are freed when it ends, not whenever the oldest GC
generation is next collected: each holds 256 KiB buffers, and left to pile up they fragment
the heap (the soak's RSS grew in 0.25 MiB steps, one per few reconnects)."""

from __future__ import annotations

import gc
from asyncio import sslproto

from tests.conftest import EmulatorFactory
from tests.services.live.harness import Recorder, new_session, running, speak

ROTATIONS = 12


def tls_protocols() -> int:
    """Live asyncio TLS protocols in this process (the stand-in's server side included)."""
    return sum(1 for o in gc.get_objects() if type(o) is sslproto.SSLProtocol)


async def test_rotations_leave_no_tls_garbage_behind(emulator_factory: EmulatorFactory) -> None:
    scenario = {
        "turns": [
            {"reply": "ok", "faults": [{"kind": "go_away", "at": "reply", "time_left_ms": 3000}]}
            for _ in range(ROTATIONS + 2)
        ]
    }
    async with emulator_factory(scenario) as em:
        rec = Recorder()
        session = new_session(em, [], rec)
        # Without automatic collection, what a connection leaves behind stays countable.
        gc.disable()
        try:
            async with running(session):
                for n in range(1, ROTATIONS + 1):
                    await speak(session)
                    await rec.wait_turns(n)
                    await rec.wait_for(lambda: len(session.closures) >= n and session.connected)  # noqa: B023
                    left = tls_protocols()
        finally:
            gc.enable()
    assert [r.context.local_cause for r in session.closures] == ["go-away"] * ROTATIONS
    # The open connection (client and stand-in side), and at most the one just closed.
    assert left <= 4, left
