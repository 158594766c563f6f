"""goAway with a malformed ``timeLeft`` on every turn: parsed strictly, rotated through the
back-off policy."""

from __future__ import annotations

import logging

import pytest

from services.live.inbound import GO_AWAY_DEFAULT_S
from services.live.session import ConnectionState
from tests.conftest import EmulatorFactory
from tests.services.live.harness import Recorder, new_session, running, speak

MALFORMED = ("-5s", "soon", "", "5", "1e3s")


async def test_malformed_go_aways_rotate_through_the_back_off(
    emulator_factory: EmulatorFactory, caplog: pytest.LogCaptureFixture
) -> None:
    scenario = {
        "turns": [
            {
                "reply": "Yes.",
                "faults": [
                    {"kind": "go_away", "at": "turn_start", "time_left": raw, "time_left_ms": 8000}
                ],
            }
            for raw in MALFORMED
        ]
    }
    caplog.set_level(logging.INFO, logger="services.live.session")
    async with emulator_factory(scenario, pace=0.0) as em:
        rec = Recorder()
        session = new_session(em, [], rec)
        async with running(session):
            for n in range(1, len(MALFORMED) + 1):
                await speak(session)
                await rec.wait_turns(n)
                await rec.wait_for(lambda: len(session.closures) == n and session.connected)  # noqa: B023
    assert em.trace.select("violation") == []
    assert [r.context.local_cause for r in session.closures] == ["go-away"] * len(MALFORMED)
    delays = [s.delay_s for s in rec.statuses if s.state is ConnectionState.RECONNECTING]
    assert len(delays) == len(MALFORMED)
    # Connections this short are a failing streak to the policy: the delays grow, none is 0.
    assert all(d is not None and d > 0 for d in delays), delays
    assert session.policy.attempt == len(MALFORMED)
    warnings = [r.getMessage() for r in caplog.records if "malformed timeLeft" in r.getMessage()]
    assert len(warnings) == len(MALFORMED), warnings
    assert f"assuming {GO_AWAY_DEFAULT_S:.0f} s" in warnings[0]
    assert "'-5s'" in warnings[0]
