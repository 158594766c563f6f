"""Malformed server frames through the real SDK against the stand-in's hostile mode."""

from __future__ import annotations

import logging

import pytest

from services.emulator.hostile import HOSTILE_FRAMES, KINDS, TOLERATED
from tests.conftest import EmulatorFactory
from tests.services.live.hostile import converse, judge


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
