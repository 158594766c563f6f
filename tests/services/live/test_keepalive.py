"""Keepalive that matches the service: slow pongs within the tolerance do not end a session.

Scaled down from the service's 8 to 30 s pongs: the stand-in answers each ping 0.6 s late."""

from __future__ import annotations

import contextlib

from services.live.session import ConnectionState
from services.live.settings import LiveSettings
from tests.conftest import EmulatorFactory
from tests.services.live.harness import Recorder, new_session, running, speak

PONG_DELAY_MS = 600
SCENARIO = {"turns": [{"reply": "Still here."}]}


def test_the_default_tolerance_outlasts_the_slowest_reported_pong() -> None:
    settings = LiveSettings()
    # python-genai #2935: up to 30 s for a pong; websockets' own default gives up at 20 s.
    assert settings.ping_timeout_s > 30


async def test_slow_pongs_within_the_tolerance_keep_the_session(
    emulator_factory: EmulatorFactory,
) -> None:
    async with emulator_factory(SCENARIO, pong_delay_ms=PONG_DELAY_MS) as em:
        rec = Recorder()
        session = new_session(em, [], rec, ping_interval_s=0.2, ping_timeout_s=1.5)
        async with running(session):
            # Several ping rounds, each answered late: nothing may end the connection.
            lost = rec.wait_for(
                lambda: any(s.state is ConnectionState.RECONNECTING for s in rec.statuses),
                within=2.5,
            )
            with contextlib.suppress(TimeoutError):
                await lost
            await speak(session)
            await rec.wait_turns(1)
    assert list(session.closures) == []
    assert session.stats.reconnects == 0
    assert rec.reply_text() == "Still here."


async def test_slow_pongs_past_the_tolerance_end_it_from_our_side(
    emulator_factory: EmulatorFactory,
) -> None:
    async with emulator_factory(SCENARIO, pong_delay_ms=PONG_DELAY_MS) as em:
        rec = Recorder()
        session = new_session(em, [], rec, ping_interval_s=0.2, ping_timeout_s=0.3)
        async with running(session):
            await rec.wait_for(lambda: bool(session.closures), within=5)
    # websockets gave up on the pong (it sends 1011 "keepalive ping timeout" and drops the
    # socket); the stand-in itself closed nothing.
    assert session.closures[0].context.state == "idle"
    assert em.trace.select("close", by="server") == []
    assert em.trace.select("violation") == []
