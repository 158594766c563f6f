"""Every rule of the stand-in, driven through the real google-genai SDK."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
import websockets
from google.genai import errors, types
from google.genai.live import AsyncSession

from services.emulator import rules
from services.emulator.server import Emulator
from services.emulator.trace import read_trace
from tests.conftest import (
    SILENCE_20MS,
    EmulatorFactory,
    audio_blob,
    live_config,
    loud_20ms,
    sdk_client,
)

TOOL_TURN = {
    "turns": [{"tool_calls": [{"name": "set_output", "args": {"on": True}}], "reply": "ok"}]
}
MODEL = "gemini-live-test"


async def next_message(session: AsyncSession, want: str) -> types.LiveServerMessage:
    """Receive until a message whose ``want`` field is set (bounded in time)."""
    async with asyncio.timeout(10):
        while True:
            async for message in session.receive():
                if getattr(message, want) is not None:
                    return message


async def finish_turn(session: AsyncSession) -> None:
    """Read the rest of the model's turn, so the connection closes without unread frames."""
    async with asyncio.timeout(10):
        async for _ in session.receive():
            pass


async def expect_close(session: AsyncSession) -> errors.APIError:
    """Receive until the server closes; return the SDK's error for it."""
    with pytest.raises(errors.APIError) as info:
        async with asyncio.timeout(10):
            while True:
                async for _ in session.receive():
                    pass
    return info.value


def violations(em: Emulator) -> list[dict[str, Any]]:
    return em.trace.select("violation")


async def user_turn(session: AsyncSession, frames: int = 5) -> None:
    await session.send_realtime_input(activity_start=types.ActivityStart())
    for _ in range(frames):
        await session.send_realtime_input(audio=audio_blob(SILENCE_20MS))
    await session.send_realtime_input(activity_end=types.ActivityEnd())


async def test_a_full_turn_answers_the_tool_call_and_speaks(
    emulator_factory: EmulatorFactory,
) -> None:
    async with emulator_factory(TOOL_TURN) as em:
        client = sdk_client(em)
        async with client.aio.live.connect(model=MODEL, config=live_config()) as session:
            await user_turn(session)
            call = await next_message(session, "tool_call")
            assert call.tool_call is not None
            calls = call.tool_call.function_calls or []
            assert [(c.name, c.args) for c in calls] == [("set_output", {"on": True})]
            await session.send_tool_response(
                function_responses=[
                    types.FunctionResponse(id=c.id, name=c.name, response={"output": "on"})
                    for c in calls
                ]
            )
            audio = bytearray()
            async with asyncio.timeout(10):
                async for message in session.receive():
                    audio += message.data or b""
            assert len(audio) > 24000 * 2 * 0.2
    assert violations(em) == []
    records = read_trace(em.settings.trace_path)  # type: ignore[arg-type]
    kinds = [r.get("kind") for r in records]
    assert "toolCall" in kinds
    assert "toolResponse" in kinds
    assert kinds[-1] is None or "serverContent.turnComplete" in kinds
    # The trace holds sizes, never audio payloads.
    assert all("data" not in r for r in records)
    assert any(r.get("audio_bytes") == 640 for r in records)


async def test_wrong_api_key_closes_1007(emulator_factory: EmulatorFactory) -> None:
    async with emulator_factory(TOOL_TURN) as em:
        client = sdk_client(em, api_key="wrong")
        with pytest.raises(errors.APIError) as info:
            async with client.aio.live.connect(model=MODEL, config=live_config()):
                pass
    assert (info.value.code, info.value.details) == (1007, rules.REASON_BAD_KEY)
    assert [v["rule"] for v in violations(em)] == ["bad-api-key"]


async def test_unknown_path_is_refused_at_the_handshake(emulator_factory: EmulatorFactory) -> None:
    async with emulator_factory(TOOL_TURN) as em:
        client = sdk_client(em)
        client._api_client._http_options.api_version = "v1"
        with pytest.raises(websockets.exceptions.InvalidStatus):
            async with client.aio.live.connect(model=MODEL, config=live_config()):
                pass
    assert em.trace.select("reject")[0]["status"] == 404


@pytest.mark.parametrize("kind", ["audio", "activityStart", "activityEnd", "audioStreamEnd"])
async def test_realtime_input_while_a_call_is_pending_closes_1008(
    emulator_factory: EmulatorFactory, kind: str
) -> None:
    manual = kind != "audioStreamEnd"
    async with emulator_factory(TOOL_TURN, grace_ms=0) as em:
        client = sdk_client(em)
        async with client.aio.live.connect(model=MODEL, config=live_config(manual)) as session:
            if manual:
                await user_turn(session)
            else:
                for _ in range(10):
                    await session.send_realtime_input(audio=audio_blob(loud_20ms()))
                await session.send_realtime_input(audio_stream_end=True)
            await next_message(session, "tool_call")
            signals: dict[str, dict[str, Any]] = {
                "audio": {"audio": audio_blob(SILENCE_20MS)},
                "activityStart": {"activity_start": types.ActivityStart()},
                "activityEnd": {"activity_end": types.ActivityEnd()},
                "audioStreamEnd": {"audio_stream_end": True},
            }
            await session.send_realtime_input(**signals[kind])
            error = await expect_close(session)
    assert (error.code, error.details) == (1008, rules.REASON_NOT_SUPPORTED)
    [violation] = violations(em)
    assert violation["rule"] == "realtime-input-while-tool-call-pending"
    assert kind in violation["detail"]


async def test_input_in_flight_within_grace_is_tolerated(
    emulator_factory: EmulatorFactory,
) -> None:
    async with emulator_factory(TOOL_TURN, grace_ms=5000) as em:
        client = sdk_client(em)
        async with client.aio.live.connect(model=MODEL, config=live_config()) as session:
            await user_turn(session)
            call = await next_message(session, "tool_call")
            await session.send_realtime_input(audio=audio_blob(SILENCE_20MS))
            calls = call.tool_call.function_calls or []  # type: ignore[union-attr]
            await session.send_tool_response(
                function_responses=[
                    types.FunctionResponse(id=c.id, name=c.name, response={}) for c in calls
                ]
            )
            await finish_turn(session)
    assert violations(em) == []
    assert [r for r in em.trace.select("in", kind="audio") if r["in_flight"]]


async def test_activity_signals_in_automatic_mode_close_1007(
    emulator_factory: EmulatorFactory,
) -> None:
    async with emulator_factory(TOOL_TURN) as em:
        client = sdk_client(em)
        async with client.aio.live.connect(model=MODEL, config=live_config(False)) as session:
            await session.send_realtime_input(activity_start=types.ActivityStart())
            error = await expect_close(session)
    assert (error.code, error.details) == (1007, rules.REASON_EXPLICIT_ACTIVITY)
    assert violations(em)[0]["rule"] == "activity-without-manual-mode"


async def test_audio_stream_end_in_manual_mode_closes_1007(
    emulator_factory: EmulatorFactory,
) -> None:
    async with emulator_factory(TOOL_TURN) as em:
        client = sdk_client(em)
        async with client.aio.live.connect(model=MODEL, config=live_config()) as session:
            await session.send_realtime_input(audio_stream_end=True)
            error = await expect_close(session)
    assert error.code == 1007
    assert violations(em)[0]["rule"] == "audio-stream-end-in-manual-mode"


@pytest.mark.parametrize(
    ("mangle", "rule"),
    [
        ({"id": "function-call-1"}, "tool-response-unknown-id"),
        ({"name": None}, "tool-response-without-name"),
    ],
)
async def test_bad_tool_response_closes_1008_not_found(
    emulator_factory: EmulatorFactory, mangle: dict[str, Any], rule: str
) -> None:
    async with emulator_factory(TOOL_TURN) as em:
        client = sdk_client(em)
        async with client.aio.live.connect(model=MODEL, config=live_config()) as session:
            await user_turn(session)
            call = await next_message(session, "tool_call")
            [fc] = call.tool_call.function_calls or []  # type: ignore[union-attr]
            fields: dict[str, Any] = {"id": fc.id, "name": fc.name, "response": {}} | mangle
            await session.send_tool_response(function_responses=[types.FunctionResponse(**fields)])
            error = await expect_close(session)
    assert (error.code, error.details) == (1008, rules.REASON_NOT_FOUND)
    assert violations(em)[0]["rule"] == rule


async def test_stale_handle_closes_1008_session_not_found(
    emulator_factory: EmulatorFactory,
) -> None:
    async with emulator_factory(TOOL_TURN) as em:
        client = sdk_client(em)
        config = live_config()
        config.session_resumption = types.SessionResumptionConfig(handle="no-such-handle")
        with pytest.raises(errors.APIError) as info:
            async with client.aio.live.connect(model=MODEL, config=config):
                pass
    assert (info.value.code, info.value.details) == (1008, rules.REASON_SESSION_NOT_FOUND)
    assert violations(em)[0]["rule"] == "stale-resumption-handle"


async def test_expired_handles_are_stale(emulator_factory: EmulatorFactory) -> None:
    scenario = {"turns": [{"reply": "hi", "faults": [{"kind": "expire_handles", "at": "reply"}]}]}
    async with emulator_factory(scenario) as em:
        client = sdk_client(em)
        async with client.aio.live.connect(model=MODEL, config=live_config()) as session:
            update = await next_message(session, "session_resumption_update")
            handle = update.session_resumption_update.new_handle  # type: ignore[union-attr]
            await user_turn(session)
            await next_message(session, "server_content")
        config = live_config()
        config.session_resumption = types.SessionResumptionConfig(handle=handle)
        with pytest.raises(errors.APIError) as info:
            async with client.aio.live.connect(model=MODEL, config=config):
                pass
    assert info.value.code == 1008


async def test_automatic_mode_detects_a_spoken_turn(emulator_factory: EmulatorFactory) -> None:
    async with emulator_factory({"turns": [{"reply": "hello there"}]}) as em:
        client = sdk_client(em)
        async with client.aio.live.connect(model=MODEL, config=live_config(False)) as session:
            for pcm in [loud_20ms()] * 15 + [SILENCE_20MS] * 25:
                await session.send_realtime_input(audio=audio_blob(pcm))
            texts = []
            async with asyncio.timeout(10):
                async for message in session.receive():
                    sc = message.server_content
                    if sc and sc.output_transcription and sc.output_transcription.text:
                        texts.append(sc.output_transcription.text)
    assert "".join(texts).split() == ["hello", "there"]
    assert violations(em) == []


async def test_cancellation_then_a_late_response_closes_1008(
    emulator_factory: EmulatorFactory,
) -> None:
    scenario = {"turns": [{"tool_calls": [{"name": "slow"}], "cancel_after_ms": 50, "reply": "x"}]}
    async with emulator_factory(scenario) as em:
        client = sdk_client(em)
        async with client.aio.live.connect(model=MODEL, config=live_config()) as session:
            await user_turn(session)
            call = await next_message(session, "tool_call")
            cancel = await next_message(session, "tool_call_cancellation")
            [fc] = call.tool_call.function_calls or []  # type: ignore[union-attr]
            assert cancel.tool_call_cancellation.ids == [fc.id]  # type: ignore[union-attr]
            await session.send_tool_response(
                function_responses=[types.FunctionResponse(id=fc.id, name=fc.name, response={})]
            )
            error = await expect_close(session)
    assert (error.code, error.details) == (1008, rules.REASON_NOT_FOUND)


async def test_go_away_is_followed_by_a_deadline_close(emulator_factory: EmulatorFactory) -> None:
    scenario = {
        "turns": [
            {
                "reply": "a long reply " * 5,
                "faults": [{"kind": "go_away", "at": "reply", "time_left_ms": 100}],
            }
        ]
    }
    async with emulator_factory(scenario, pace=1.0) as em:
        client = sdk_client(em)
        async with client.aio.live.connect(model=MODEL, config=live_config()) as session:
            await user_turn(session)
            message = await next_message(session, "go_away")
            assert message.go_away is not None
            error = await expect_close(session)
    assert (error.code, error.details) == (1011, rules.REASON_DEADLINE)


async def test_a_session_resumes_after_1011_and_finishes_the_turn(
    emulator_factory: EmulatorFactory,
) -> None:
    scenario = {
        "turns": [
            {
                "tool_calls": [{"name": "set_output", "args": {"on": True}}],
                "reply": "It is on.",
                "faults": [{"kind": "close", "code": 1011, "at": "tool_pending"}],
            }
        ]
    }
    async with emulator_factory(scenario) as em:
        client = sdk_client(em)
        handle = None
        async with client.aio.live.connect(model=MODEL, config=live_config()) as session:
            await user_turn(session)
            with pytest.raises(errors.APIError) as info:
                async with asyncio.timeout(10):
                    while True:
                        async for message in session.receive():
                            update = message.session_resumption_update
                            if update and update.new_handle:
                                handle = update.new_handle
        assert (info.value.code, info.value.details) == (1011, rules.REASON_INTERNAL)
        assert handle is not None
        config = live_config()
        config.session_resumption = types.SessionResumptionConfig(handle=handle)
        async with client.aio.live.connect(model=MODEL, config=config) as session:
            call = await next_message(session, "tool_call")
            calls = call.tool_call.function_calls or []  # type: ignore[union-attr]
            await session.send_tool_response(
                function_responses=[
                    types.FunctionResponse(id=c.id, name=c.name, response={"output": "on"})
                    for c in calls
                ]
            )
            said = []
            async with asyncio.timeout(10):
                async for message in session.receive():
                    sc = message.server_content
                    if sc and sc.output_transcription and sc.output_transcription.text:
                        said.append(sc.output_transcription.text)
    assert "".join(said).split() == ["It", "is", "on."]
    assert violations(em) == []
    setups = em.trace.select("in", kind="setup")
    assert len(setups) == 2
    assert setups[0]["conv"] == setups[1]["conv"]
    assert setups[1]["resumed"] is True
    assert setups[0]["conn"] != setups[1]["conn"]
