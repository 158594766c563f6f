"""Every rule of the stand-in, driven through the real google-genai SDK."""

from __future__ import annotations

import asyncio
import base64
import json
import ssl
from typing import Any

import numpy as np
import pytest
import websockets
from google.genai import errors, types
from google.genai.live import AsyncSession
from websockets.asyncio.client import ClientConnection, connect

from services.emulator import rules
from services.emulator.server import Emulator
from services.emulator.trace import read_trace
from tests.conftest import (
    API_KEY,
    SILENCE_20MS,
    EmulatorFactory,
    audio_blob,
    live_config,
    loud_20ms,
    sdk_client,
)
from tests.speech_fixtures import pink_noise

TOOL_TURN = {
    "turns": [{"tool_calls": [{"name": "set_output", "args": {"on": True}}], "reply": "ok"}]
}
MODEL = "gemini-live-test"


def declared_config(manual: bool = True) -> types.LiveConnectConfig:
    """:func:`live_config` declaring the functions the scenarios here call: the stand-in's model
    calls only declared ones."""
    return live_config(manual, tools=("set_output", "slow"))


def resuming(handle: str | None) -> types.LiveConnectConfig:
    """:func:`declared_config` resuming the conversation ``handle`` names."""
    config = declared_config()
    config.session_resumption = types.SessionResumptionConfig(handle=handle)
    return config


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
        async with client.aio.live.connect(model=MODEL, config=declared_config()) as session:
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


async def test_functions_the_client_did_not_declare_are_never_called(
    emulator_factory: EmulatorFactory,
) -> None:
    scenario = {
        "turns": [{"tool_calls": [{"name": "set_output"}, {"name": "slow"}], "reply": "ok"}]
    }
    async with emulator_factory(scenario) as em:
        client = sdk_client(em)
        config = live_config(tools=("slow",))
        async with client.aio.live.connect(model=MODEL, config=config) as session:
            await user_turn(session)
            call = await next_message(session, "tool_call")
            [fc] = call.tool_call.function_calls or []  # type: ignore[union-attr]
            assert fc.name == "slow"
            await session.send_tool_response(
                function_responses=[types.FunctionResponse(id=fc.id, name=fc.name, response={})]
            )
            await finish_turn(session)
    assert violations(em) == []
    assert [r["names"] for r in em.trace.select("undeclared")] == [["set_output"]]


async def test_turn_complete_carries_usage_with_modality_details(
    emulator_factory: EmulatorFactory,
) -> None:
    usages: list[types.UsageMetadata] = []
    async with emulator_factory({"turns": [{"reply": "one two"}, {"reply": "three"}]}) as em:
        client = sdk_client(em)
        async with client.aio.live.connect(model=MODEL, config=declared_config()) as session:
            for _ in range(2):
                await user_turn(session, frames=50)  # one second of audio: 32 tokens
                async with asyncio.timeout(10):
                    async for message in session.receive():
                        if message.server_content and message.server_content.turn_complete:
                            assert message.usage_metadata is not None
                            usages.append(message.usage_metadata)
    first, second = usages
    assert first.prompt_token_count == 32
    assert first.response_token_count is not None
    assert first.response_token_count > 0
    assert first.total_token_count == 32 + first.response_token_count
    [detail] = first.response_tokens_details or []
    assert (detail.modality, detail.token_count) == (
        types.MediaModality.AUDIO,
        first.response_token_count,
    )
    # The whole context is billed again: the first turn, its reply and the new second.
    assert second.prompt_token_count == first.total_token_count + 32


async def first_call_id(factory: EmulatorFactory, **settings: Any) -> str:
    async with factory(TOOL_TURN, **settings) as em:
        client = sdk_client(em)
        async with client.aio.live.connect(model=MODEL, config=declared_config()) as session:
            await user_turn(session)
            call = await next_message(session, "tool_call")
    [fc] = call.tool_call.function_calls or []  # type: ignore[union-attr]
    assert fc.id is not None
    assert fc.id.startswith("function-call-")
    return fc.id


async def test_call_ids_differ_between_runs_unless_seeded(
    emulator_factory: EmulatorFactory,
) -> None:
    assert await first_call_id(emulator_factory) != await first_call_id(emulator_factory)
    seeded = [await first_call_id(emulator_factory, seed=7) for _ in range(2)]
    assert seeded[0] == seeded[1]


async def test_wrong_api_key_closes_1007(emulator_factory: EmulatorFactory) -> None:
    async with emulator_factory(TOOL_TURN) as em:
        client = sdk_client(em, api_key="wrong")
        with pytest.raises(errors.APIError) as info:
            async with client.aio.live.connect(model=MODEL, config=declared_config()):
                pass
    assert (info.value.code, info.value.details) == (1007, rules.REASON_BAD_KEY)
    assert [v["rule"] for v in violations(em)] == ["bad-api-key"]


async def raw_setup(em: Emulator, headers: dict[str, str]) -> ClientConnection:
    """A WebSocket to the stand-in without the SDK, its setup sent."""
    context = ssl.create_default_context(cafile=str(em.settings.cert_out))
    path = "/ws/google.ai.generativelanguage.v1beta.GenerativeService.BidiGenerateContent"
    ws = await connect(f"wss://127.0.0.1:{em.port}{path}", ssl=context, additional_headers=headers)
    await ws.send(json.dumps({"setup": {"model": f"models/{MODEL}"}}))
    return ws


async def test_a_missing_api_key_closes_1008_unregistered_callers(
    emulator_factory: EmulatorFactory,
) -> None:
    async with emulator_factory(TOOL_TURN) as em:
        async with asyncio.timeout(10):
            ws = await raw_setup(em, {})
            with pytest.raises(websockets.exceptions.ConnectionClosed) as info:
                await ws.recv()
    assert info.value.rcvd is not None
    assert (info.value.rcvd.code, info.value.rcvd.reason) == (1008, rules.REASON_NO_KEY)
    assert [v["rule"] for v in violations(em)] == ["missing-api-key"]


async def test_legacy_media_chunks_close_1007_deprecated(emulator_factory: EmulatorFactory) -> None:
    chunk = {"mimeType": "audio/pcm;rate=16000", "data": base64.b64encode(SILENCE_20MS).decode()}
    async with emulator_factory(TOOL_TURN) as em:
        async with asyncio.timeout(10):
            ws = await raw_setup(em, {"x-goog-api-key": API_KEY})
            assert "setupComplete" in json.loads(await ws.recv())
            await ws.send(json.dumps({"realtimeInput": {"mediaChunks": [chunk]}}))
            with pytest.raises(websockets.exceptions.ConnectionClosed) as info:
                while True:
                    await ws.recv()
    assert info.value.rcvd is not None
    assert info.value.rcvd.code == 1007
    assert "deprecated" in info.value.rcvd.reason
    assert [v["rule"] for v in violations(em)] == ["legacy-media-chunks"]


async def test_the_v1_path_of_google_genai_3_is_served(emulator_factory: EmulatorFactory) -> None:
    async with emulator_factory({"turns": [{"reply": "hello"}]}) as em:
        client = sdk_client(em)
        client._api_client._http_options.api_version = "v1"
        async with client.aio.live.connect(model=MODEL, config=declared_config()) as session:
            await user_turn(session)
            await finish_turn(session)
    assert em.trace.select("reject") == []
    assert violations(em) == []
    assert len(em.trace.select("out", kind="serverContent.turnComplete")) == 1


async def test_unknown_path_is_refused_at_the_handshake(emulator_factory: EmulatorFactory) -> None:
    async with emulator_factory(TOOL_TURN) as em:
        client = sdk_client(em)
        client._api_client._http_options.api_version = "v9"
        with pytest.raises(websockets.exceptions.InvalidStatus):
            async with client.aio.live.connect(model=MODEL, config=declared_config()):
                pass
    assert em.trace.select("reject")[0]["status"] == 404


@pytest.mark.parametrize("kind", ["audio", "activityStart", "activityEnd", "audioStreamEnd"])
async def test_realtime_input_while_a_call_is_pending_closes_1008(
    emulator_factory: EmulatorFactory, kind: str
) -> None:
    manual = kind != "audioStreamEnd"
    async with emulator_factory(TOOL_TURN, grace_ms=0) as em:
        client = sdk_client(em)
        async with client.aio.live.connect(model=MODEL, config=declared_config(manual)) as session:
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
        async with client.aio.live.connect(model=MODEL, config=declared_config()) as session:
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
        async with client.aio.live.connect(model=MODEL, config=declared_config(False)) as session:
            await session.send_realtime_input(activity_start=types.ActivityStart())
            error = await expect_close(session)
    assert (error.code, error.details) == (1007, rules.REASON_EXPLICIT_ACTIVITY)
    assert violations(em)[0]["rule"] == "activity-without-manual-mode"


async def test_audio_stream_end_in_manual_mode_closes_1007(
    emulator_factory: EmulatorFactory,
) -> None:
    async with emulator_factory(TOOL_TURN) as em:
        client = sdk_client(em)
        async with client.aio.live.connect(model=MODEL, config=declared_config()) as session:
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
        async with client.aio.live.connect(model=MODEL, config=declared_config()) as session:
            await user_turn(session)
            call = await next_message(session, "tool_call")
            [fc] = call.tool_call.function_calls or []  # type: ignore[union-attr]
            fields: dict[str, Any] = {"id": fc.id, "name": fc.name, "response": {}} | mangle
            await session.send_tool_response(function_responses=[types.FunctionResponse(**fields)])
            error = await expect_close(session)
    assert (error.code, error.details) == (1008, rules.REASON_NOT_FOUND)
    assert violations(em)[0]["rule"] == rule


async def test_a_never_issued_handle_closes_1007_invalid_session_handle(
    emulator_factory: EmulatorFactory,
) -> None:
    async with emulator_factory(TOOL_TURN) as em:
        client = sdk_client(em)
        config = resuming("no-such-handle")
        with pytest.raises(errors.APIError) as info:
            async with client.aio.live.connect(model=MODEL, config=config):
                pass
    assert (info.value.code, info.value.details) == (1007, rules.REASON_INVALID_HANDLE)
    assert violations(em)[0]["rule"] == "unknown-resumption-handle"


async def test_expired_handles_are_stale(emulator_factory: EmulatorFactory) -> None:
    scenario = {"turns": [{"reply": "hi", "faults": [{"kind": "expire_handles", "at": "reply"}]}]}
    async with emulator_factory(scenario) as em:
        client = sdk_client(em)
        async with client.aio.live.connect(model=MODEL, config=declared_config()) as session:
            update = await next_message(session, "session_resumption_update")
            handle = update.session_resumption_update.new_handle  # type: ignore[union-attr]
            await user_turn(session)
            await next_message(session, "server_content")
        config = resuming(handle)
        with pytest.raises(errors.APIError) as info:
            async with client.aio.live.connect(model=MODEL, config=config):
                pass
    assert info.value.code == 1008


async def test_resuming_over_a_still_open_socket_closes_1011_and_after_closing_it_works(
    emulator_factory: EmulatorFactory,
) -> None:
    async with emulator_factory(TOOL_TURN) as em:
        client = sdk_client(em)
        async with client.aio.live.connect(model=MODEL, config=declared_config()) as first:
            update = await next_message(first, "session_resumption_update")
            handle = update.session_resumption_update.new_handle  # type: ignore[union-attr]
            config = resuming(handle)
            with pytest.raises(errors.APIError) as info:
                async with client.aio.live.connect(model=MODEL, config=config) as second:
                    await expect_close(second)
        assert (info.value.code, info.value.details) == (1011, rules.REASON_INTERNAL)
        assert [v["rule"] for v in violations(em)] == ["resumed-over-open-socket"]
        # The first socket closed: the same handle resumes.
        async with client.aio.live.connect(model=MODEL, config=config) as third:
            await next_message(third, "session_resumption_update")
        resumed = [r for r in em.trace.select("in", kind="setup") if r["resumed"]]
        assert len(resumed) == 1


async def test_automatic_mode_detects_a_spoken_turn(emulator_factory: EmulatorFactory) -> None:
    async with emulator_factory({"turns": [{"reply": "hello there"}]}) as em:
        client = sdk_client(em)
        async with client.aio.live.connect(model=MODEL, config=declared_config(False)) as session:
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


async def test_a_turn_over_pink_room_tone_ends_within_the_hang_over(
    emulator_factory: EmulatorFactory,
) -> None:
    # Room tone at RMS 500 straddles a fixed speech threshold of 500: only a floor that has
    # learned the room ends the turn when the voice stops.
    room = pink_noise(8.0, 500.0, seed=11)
    voice = np.resize(np.frombuffer(loud_20ms(), dtype="<i2").astype(np.float64), 16000)
    room[64000:80000] += voice  # one second of speech after four of room tone
    pcm = np.clip(room, -32768, 32767).astype("<i2").tobytes()
    chunks = [pcm[i : i + 640] for i in range(0, len(pcm), 640)]
    scenario = {"turns": [], "fallback_reply": "", "silence_hangover_ms": 400}
    async with emulator_factory(scenario) as em:
        client = sdk_client(em)
        async with client.aio.live.connect(model=MODEL, config=declared_config(False)) as session:
            for chunk in chunks:
                await session.send_realtime_input(audio=audio_blob(chunk))
            heard = await asyncio.to_thread(
                em.trace.wait_for,
                lambda: len(em.trace.select("in", kind="audio")) == len(chunks),
                10,
            )
            assert heard
    changes = [(r["detected"], r["audio_ms"]) for r in em.trace.select("activity")]
    starts = [ms for change, ms in changes if change == "start" and ms >= 4000]
    ends = [ms for change, ms in changes if change == "end" and ms >= 4000]
    assert len(starts) == 1
    assert 4000 <= starts[0] <= 4100
    assert len(ends) == 1
    assert 5000 + 400 <= ends[0] <= 5000 + 400 + 20
    assert violations(em) == []


async def test_cancellation_then_a_late_response_closes_1008(
    emulator_factory: EmulatorFactory,
) -> None:
    scenario = {"turns": [{"tool_calls": [{"name": "slow"}], "cancel_after_ms": 50, "reply": "x"}]}
    async with emulator_factory(scenario) as em:
        client = sdk_client(em)
        async with client.aio.live.connect(model=MODEL, config=declared_config()) as session:
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
        async with client.aio.live.connect(model=MODEL, config=declared_config()) as session:
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
        async with client.aio.live.connect(model=MODEL, config=declared_config()) as session:
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
        config = resuming(handle)
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
