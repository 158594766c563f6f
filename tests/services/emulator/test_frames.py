"""Client frame parsing: both casings, payloads untouched, bad frames named."""

from __future__ import annotations

import base64
import json

import pytest

from services.emulator import frames


def test_snake_and_camel_frames_parse_to_the_same_kind() -> None:
    pcm = b"\x01\x00" * 160
    data = base64.urlsafe_b64encode(pcm).decode()
    snake = json.dumps({"realtime_input": {"audio": {"data": data, "mime_type": "audio/pcm"}}})
    camel = json.dumps({"realtimeInput": {"audio": {"data": data, "mimeType": "audio/pcm"}}})
    for raw in (snake, camel):
        frame = frames.parse_client_frame(raw)
        assert frame.kind == "audio"
        assert frame.is_realtime
        assert frame.audio == pcm
        assert frame.body["audio"]["mimeType"] == "audio/pcm"


def test_tool_response_payload_keys_are_not_rewritten() -> None:
    raw = json.dumps(
        {
            "tool_response": {
                "function_responses": [
                    {"id": "a", "name": "t", "response": {"snake_key": {"inner_key": 1}}}
                ]
            }
        }
    )
    frame = frames.parse_client_frame(raw)
    assert frame.kind == "toolResponse"
    assert frame.body["functionResponses"][0]["response"] == {"snake_key": {"inner_key": 1}}


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ("not json", "not JSON"),
        ("[]", "exactly one message"),
        ('{"a": {}, "b": {}}', "exactly one message"),
        ('{"bogus": {}}', "unknown client message"),
        ('{"realtimeInput": {"audio": {"data": "AA"}, "activityEnd": {}}}', "exactly one field"),
        ('{"realtimeInput": {"audio": {"data": "@@@"}}}', "not base64"),
    ],
)
def test_bad_frames_are_rejected_with_a_reason(raw: str, message: str) -> None:
    with pytest.raises(frames.FrameError, match=message):
        frames.parse_client_frame(raw)


def test_server_kind_names_server_content_by_its_field() -> None:
    assert frames.server_kind(frames.audio_chunk(b"\0\0")) == "serverContent.audio"
    assert frames.server_kind(frames.turn_complete()) == "serverContent.turnComplete"
    assert frames.server_kind(frames.tool_call([])) == "toolCall"
