"""Each known closure, provoked for real, leaves one log record that explains it."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from google.genai import types

from services.emulator import rules
from services.live import diagnostics as d
from services.live.session import LiveSession, LiveSessionFatal
from tests.conftest import EmulatorFactory
from tests.services.live.harness import FRAME, Recorder, new_session, running, speak, tool

SLOW_CALL = {"turns": [{"tool_calls": [{"name": "slow"}], "reply": "ok"}]}


async def slow(args: dict[str, Any]) -> str:
    await asyncio.sleep(0.3)
    return "done"


async def bypass_gate(session: LiveSession, rec: Recorder) -> None:
    """A gating bug on purpose: audio straight to the SDK while the call is pending."""
    await rec.wait_for(lambda: session.gate.shut)
    assert session._session is not None
    await session._session.send_realtime_input(
        audio=types.Blob(data=FRAME, mime_type="audio/pcm;rate=16000")
    )


async def answer_unknown_id(session: LiveSession, rec: Recorder) -> None:
    """A response for an id the service never issued, sent the way a buggy client would."""
    await rec.wait_for(lambda: session.gate.shut)
    await session._send_tool_response(
        types.FunctionResponse(id="function-call-0", name="slow", response={}), 2
    )


def closure_records(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if hasattr(r, "CLOSE_CODE")]


@pytest.mark.parametrize(
    ("misstep", "code", "reason", "cause"),
    [
        (bypass_gate, 1008, rules.REASON_NOT_SUPPORTED, d.GATING_BUG),
        (answer_unknown_id, 1008, rules.REASON_NOT_FOUND, d.ID_MISMATCH),
    ],
)
async def test_protocol_closures_are_explained(  # noqa: PLR0917 - fixtures and parameters
    emulator_factory: EmulatorFactory,
    caplog: pytest.LogCaptureFixture,
    misstep: Callable[[LiveSession, Recorder], Awaitable[None]],
    code: int,
    reason: str,
    cause: str,
) -> None:
    caplog.set_level(logging.INFO, logger="services.live")
    async with emulator_factory(SLOW_CALL, grace_ms=0) as em:
        rec = Recorder()
        session = new_session(em, [tool("slow", slow)], rec)
        async with running(session):
            await speak(session)
            await misstep(session, rec)
            await rec.wait_for(lambda: len(session.closures) == 1)
    [record] = closure_records(caplog)[:1]
    assert (code, reason) == (record.CLOSE_CODE, record.CLOSE_REASON)  # type: ignore[attr-defined]
    assert cause == record.LIKELY_CAUSE  # type: ignore[attr-defined]
    assert record.LIVE_STATE == "tool-pending: slow"  # type: ignore[attr-defined]
    assert record.PENDING_CALLS.startswith("slow:function-call-")  # type: ignore[attr-defined]
    message = record.getMessage()
    assert "activityEnd 0 B" in message
    assert "ms before" in message


async def test_stale_handle_record(
    emulator_factory: EmulatorFactory, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="services.live")
    scenario = {
        "turns": [
            {
                "reply": "x",
                "faults": [
                    {"kind": "expire_handles", "at": "reply"},
                    {"kind": "close", "code": 1011, "at": "reply"},
                ],
            }
        ]
    }
    async with emulator_factory(scenario) as em:
        rec = Recorder()
        session = new_session(em, [], rec)
        async with running(session):
            await speak(session)
            await rec.wait_for(lambda: len(session.closures) == 2)
    records = closure_records(caplog)
    assert [r.CLOSE_CODE for r in records[:2]] == [1011, 1008]  # type: ignore[attr-defined]
    stale = records[1]
    assert stale.CLOSE_REASON == rules.REASON_SESSION_NOT_FOUND  # type: ignore[attr-defined]
    assert stale.LIKELY_CAUSE == d.STALE_HANDLE  # type: ignore[attr-defined]
    assert any("conversation context is lost" in r.getMessage() for r in caplog.records)


async def test_bad_key_record(
    emulator_factory: EmulatorFactory, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="services.live")
    async with emulator_factory({"turns": []}) as em:
        session = new_session(em, [], Recorder(), api_key="nope")
        with pytest.raises(LiveSessionFatal):
            async with asyncio.timeout(10):
                await session.run()
    records = closure_records(caplog)
    assert len(records) == 3
    assert all(r.levelno == logging.ERROR for r in records)
    assert records[0].CLOSE_CODE == 1007  # type: ignore[attr-defined]
    assert records[0].LIKELY_CAUSE == d.BAD_KEY  # type: ignore[attr-defined]
    assert records[0].LIVE_STATE == "disconnected"  # type: ignore[attr-defined]


async def test_a_certificate_that_does_not_verify_is_named_as_such(
    emulator_factory: EmulatorFactory, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="services.live")
    rec = Recorder()
    async with emulator_factory({"turns": []}) as em, emulator_factory({"turns": []}) as other:
        # Trusting another stand-in's certificate: the one this endpoint presents fails.
        session = new_session(em, [], rec, ca_file=other.settings.cert_out)
        task = asyncio.create_task(session.run())
        try:
            await rec.wait_for(lambda: len(session.closures) >= 1)
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
    [report, *_] = session.closures
    assert report.reason.startswith(f"{em.base_url}: ")
    assert "certificate" in report.reason
    assert report.cause == d.LOCAL_CAUSES["tls"][0]
    assert "network down" not in report.summary()
