"""The server-frame boundary, sans I/O: generated frames, and the shapes the daemon uses."""

from __future__ import annotations

import base64
import json

import pytest
from hypothesis import HealthCheck, given, settings

from services.emulator.hostile import HOSTILE_FRAMES, TOLERATED
from services.live.inbound import FrameBudget, ProtocolError, parse_server_frame
from tests.conftest import EmulatorFactory
from tests.services.live.hostile import converse, judge
from tests.strategies import malformed_frames, mistyped_frames


@settings(max_examples=300, deadline=None)
@given(malformed_frames())
def test_every_malformed_frame_is_a_protocol_error_in_one_short_line(frame: str | bytes) -> None:
    with pytest.raises(ProtocolError) as caught:
        parse_server_frame(frame)
    text = str(caught.value)
    assert "\n" not in text
    assert len(text) < 300
    assert caught.value.size == len(frame if isinstance(frame, bytes) else frame.encode())


@pytest.mark.parametrize("kind", sorted(set(HOSTILE_FRAMES) - TOLERATED))
def test_each_catalogue_frame_is_a_protocol_error(kind: str) -> None:
    with pytest.raises(ProtocolError):
        parse_server_frame(HOSTILE_FRAMES[kind])


def test_a_good_frame_comes_out_typed() -> None:
    pcm = b"\x01\x00\x02\x00"
    frame = json.dumps(
        {
            "serverContent": {
                "modelTurn": {
                    "parts": [
                        {
                            "inlineData": {
                                "mimeType": "audio/pcm;rate=24000",
                                "data": base64.b64encode(pcm).decode(),
                            }
                        }
                    ]
                },
                "outputTranscription": {"text": "hi"},
                "turnComplete": True,
            },
            "toolCall": {
                "functionCalls": [{"id": "c1", "name": "set_output", "args": {"on": True}}]
            },
            "sessionResumptionUpdate": {"newHandle": "h1", "resumable": True},
            "goAway": {"timeLeft": "0.5s"},
            "voiceActivity": {"type": "START"},
        }
    ).encode()
    message = parse_server_frame(frame)
    assert message.content is not None
    assert message.content.audio == (pcm,)
    assert message.content.output_text == "hi"
    assert message.content.turn_complete
    assert message.tool_calls is not None
    assert [(c.id, c.name, dict(c.args)) for c in message.tool_calls] == [
        ("c1", "set_output", {"on": True})
    ]
    assert message.resumption is not None
    assert message.resumption.new_handle == "h1"
    assert message.go_away_s == 0.5
    assert message.unknown == ("voiceActivity",)


def test_the_excerpt_never_shows_audio_or_a_handle() -> None:
    for frame in (
        '{"serverContent": {"modelTurn": {"parts": [{"inlineData": {"data": "SECRETAUDIO!"}}]}}}',
        '{"sessionResumptionUpdate": {"newHandle": "SECRETHANDLE", "resumable": "x"}}',
    ):
        with pytest.raises(ProtocolError) as caught:
            parse_server_frame(frame)
        assert "SECRET" not in str(caught.value)


def test_the_frame_budget_bounds_any_one_second() -> None:
    budget = FrameBudget(per_second=3)
    assert [budget.admit(t) for t in (0.0, 0.1, 0.2, 0.3)] == [True, True, True, False]
    assert budget.admit(1.05)


@settings(
    max_examples=6, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(frame=mistyped_frames())
async def test_generated_frames_through_the_sdk_leave_the_daemon_up_and_gated(
    emulator_factory: EmulatorFactory, frame: str
) -> None:
    outcome = await converse(emulator_factory, {"text": frame})
    assert judge(outcome, tolerated=False) == []
