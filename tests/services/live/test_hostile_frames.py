"""Malformed server frames through the real SDK against the stand-in's hostile mode."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import pytest

from services.emulator.hostile import HOSTILE_FRAMES, KINDS, TOLERATED
from tests.conftest import EmulatorFactory
from tests.services.live.harness import Recorder, new_session, running, speak, tool
from tests.services.live.hostile import LIGHT, converse, judge


@pytest.mark.parametrize("kind", KINDS)
async def test_a_malformed_frame_is_met_with_a_reconnect_and_nothing_lost(
    emulator_factory: EmulatorFactory, caplog: pytest.LogCaptureFixture, kind: str
) -> None:
    caplog.set_level(logging.INFO, logger="services.live")
    # A low budget keeps the flood short; the replies stay far below it.
    fault = {"frame": kind, "count": 600} if kind == "flood" else {"frame": kind}
    outcome = await converse(emulator_factory, fault, max_frames_per_second=500)
    assert judge(outcome, tolerated=kind in TOLERATED) == []
    if kind in TOLERATED:
        return
    [report] = outcome.session.closures
    assert report.context.local_cause == "protocol-error"
    # Logged once, on one line, with the frame's size; never its audio or a handle.
    lines = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(lines) == 1, lines
    assert "\n" not in lines[0]
    assert " B, starts " in lines[0]
    assert "not base64!" not in lines[0]


def test_the_catalogue_is_what_the_issue_lists() -> None:
    assert {
        "invalid-json",
        "binary-not-json",
        "json-array",
        "json-scalar",
        "error-object",
        "unknown-field",
        "tool-call-wrong-types",
        "tool-call-args-not-object",
        "cancellation-wrong-type",
        "resumption-wrong-type",
        "go-away-wrong-type",
        "audio-bad-base64",
        "audio-odd-length",
    } <= set(HOSTILE_FRAMES)


@pytest.mark.parametrize(
    "setup_frame",
    [
        {"frame": "invalid-json"},
        {"frame": "binary-not-json"},
        {"frame": "json-array"},
        {"frame": "error-object"},
        {"frame": "content-wrong-type"},
        {"text": '{"serverContent": {"turnComplete": true}}'},
    ],
    ids=lambda f: f.get("frame", "not-setup-complete"),
)
async def test_a_malformed_first_frame_is_a_protocol_error_and_the_next_connect_works(
    emulator_factory: EmulatorFactory, setup_frame: dict[str, str]
) -> None:
    scenario = {"turns": [{"tool_calls": [LIGHT], "reply": "Done."}], "setup_frame": setup_frame}

    async def light(args: dict[str, Any]) -> bool:
        return True

    async with emulator_factory(scenario) as em:
        rec = Recorder()
        session = new_session(em, [tool("set_output", light)], rec)
        async with running(session) as task:
            async with asyncio.timeout(10):
                await session.wait_connected()
            await speak(session)
            await rec.wait_turns(1, within=15)
            assert not task.done()
    [report] = session.closures
    assert report.context.local_cause == "protocol-error"
    assert report.reason.startswith("bad-setup: ")
    assert session.stats.protocol_errors == {"bad-setup": 1}
    assert em.trace.select("violation") == []
    assert len(em.trace.select("in", kind="toolResponse")) == 1
