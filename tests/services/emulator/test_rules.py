"""The protocol rule book, driven without sockets or clocks."""

from __future__ import annotations

import pytest

from services.emulator import rules


def pending_state(grace_s: float = 0.1) -> rules.ProtocolState:
    state = rules.ProtocolState(manual_activity=True, grace_s=grace_s)
    state.tool_call_sent([("c1", "set_output"), ("c2", "read_temp")], now=10.0)
    return state


@pytest.mark.parametrize("kind", ["audio", "activityStart", "activityEnd"])
def test_every_realtime_kind_is_refused_while_a_call_is_pending(kind: str) -> None:
    violation = pending_state().check_realtime(kind, now=10.5)
    assert violation is not None
    assert (violation.code, violation.reason) == (1008, rules.REASON_NOT_SUPPORTED)
    assert "set_output (c1)" in violation.detail
    assert "500 ms" in violation.detail


def test_input_in_flight_within_the_grace_window_is_tolerated() -> None:
    state = pending_state(grace_s=0.1)
    assert state.check_realtime("audio", now=10.05) is None
    assert state.check_realtime("audio", now=10.11) is not None


def test_answering_every_call_lifts_the_rule() -> None:
    state = pending_state()
    assert state.check_tool_response([{"id": "c1", "name": "set_output"}]) is None
    assert state.check_realtime("audio", now=11.0) is not None
    assert state.check_tool_response([{"id": "c2", "name": "read_temp"}]) is None
    assert state.check_realtime("audio", now=11.0) is None


@pytest.mark.parametrize(
    ("response", "rule"),
    [
        ({"id": "nope", "name": "set_output"}, "tool-response-unknown-id"),
        ({"id": "c1"}, "tool-response-without-name"),
        ({"id": "c1", "name": "read_temp"}, "tool-response-name-mismatch"),
    ],
)
def test_bad_tool_responses_close_with_not_found(response: dict[str, object], rule: str) -> None:
    violation = pending_state().check_tool_response([response])
    assert violation is not None
    assert (violation.rule, violation.code, violation.reason) == (
        rule,
        1008,
        rules.REASON_NOT_FOUND,
    )


def test_activity_signals_need_manual_mode_and_audio_stream_end_needs_automatic() -> None:
    auto = rules.ProtocolState(manual_activity=False)
    v = auto.check_realtime("activityStart", now=0)
    assert v is not None
    assert (v.code, v.reason) == (1007, rules.REASON_EXPLICIT_ACTIVITY)
    manual = rules.ProtocolState(manual_activity=True)
    v = manual.check_realtime("audioStreamEnd", now=0)
    assert v is not None
    assert v.code == 1007


def test_unpaired_activity_signals_are_flagged_without_closing() -> None:
    state = rules.ProtocolState(manual_activity=True)
    v = state.check_realtime("activityEnd", now=0)
    assert v is not None
    assert not v.fatal
    assert v.rule == "activity-end-without-start"
    assert state.check_realtime("activityStart", now=0) is None
    v = state.check_realtime("activityStart", now=0)
    assert v is not None
    assert v.rule == "activity-start-while-open"


def test_cancelled_calls_are_no_longer_pending() -> None:
    state = pending_state()
    state.cancel(["c1", "c2"])
    assert state.check_realtime("audio", now=20.0) is None
    v = state.check_tool_response([{"id": "c1", "name": "set_output"}])
    assert v is not None
    assert v.rule == "tool-response-unknown-id"
