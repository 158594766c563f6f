"""Each model profile against the stand-in, through the real SDK: which calls hold input back,
what their answers carry, and which setup fields ever leave the device."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from google.genai import types

from services.emulator import models
from services.emulator.server import Emulator
from services.live.session import LiveSession
from services.tools.registry import Behavior, Scheduling, ToolSpec
from tests.conftest import EmulatorFactory, live_config, sdk_client
from tests.services.live.harness import FRAME, Recorder, new_session, running

NATIVE = "gemini-2.5-flash-native-audio-preview-12-2025"
FLASH = "gemini-3.1-flash-live-preview"
LIVE = "gemini-3.8-live"
EXTENDED = "gemini-3.8-live-extended-thinking"
SLOW_S = 3.0


class Background(Recorder):
    """A recorder that also keeps the non-blocking calls reported as running."""

    def __init__(self) -> None:
        super().__init__()
        self.background: list[tuple[tuple[str, str], ...]] = []

    def on_background(self, calls: tuple[tuple[str, str], ...]) -> None:
        self.background.append(calls)
        self.changed.set()


def search_tool(
    behavior: Behavior | None, scheduling: Scheduling | None = None, delay_s: float = SLOW_S
) -> ToolSpec:
    async def search(args: dict[str, Any]) -> dict[str, Any]:
        await asyncio.sleep(delay_s)
        return {"found": "the manual"}

    return ToolSpec(
        name="search",
        description="Search the house's documents.",
        handler=search,
        timeout_s=delay_s + 5,
        behavior=behavior,
        scheduling=scheduling,
    )


async def keep_speaking(session: LiveSession, seconds: float) -> None:
    """One long utterance, paced like a microphone: 20 ms frames for ``seconds``."""
    await session.set_activity(True)
    loop = asyncio.get_running_loop()
    start = loop.time()
    for i in range(int(seconds / 0.02)):
        await session.send_audio(FRAME)
        # Pace against the clock so that a busy machine does not stretch the utterance.
        await asyncio.sleep(max(0.0, start + (i + 1) * 0.02 - loop.time()))
    await session.set_activity(False)


def audio_while(em: Emulator, key: str) -> list[dict[str, Any]]:
    """Audio frames that reached the stand-in while a call of ``key`` (pending/blocking) was
    outstanding."""
    return [r for r in em.trace.select("in", kind="audio") if r[key] > 0]


ONE_CALL = {
    "turns": [{"tool_calls": [{"name": "search"}], "during_speech_ms": 100, "reply": "Found it."}]
}


@pytest.mark.parametrize(
    ("model", "behavior", "scheduling", "wire"),
    [
        (NATIVE, Behavior.NON_BLOCKING, None, "WHEN_IDLE"),
        (LIVE, None, Scheduling.SILENT, "SILENT"),
        (EXTENDED, None, Scheduling.INTERRUPT, "INTERRUPT"),
    ],
)
async def test_a_slow_non_blocking_tool_runs_while_the_user_keeps_speaking(
    emulator_factory: EmulatorFactory,
    model: str,
    behavior: Behavior | None,
    scheduling: Scheduling | None,
    wire: str,
) -> None:
    async with emulator_factory(ONE_CALL, grace_ms=0) as em:
        rec = Background()
        session = new_session(em, [search_tool(behavior, scheduling)], rec, model=model)
        async with running(session):
            await keep_speaking(session, SLOW_S + 0.6)
            await rec.wait_turns(1, within=15)
    assert em.trace.select("violation") == []
    [call] = em.trace.select("out", kind="toolCall")
    assert call["blocking"] == [False]
    [answer] = em.trace.select("in", kind="toolResponse")
    assert answer["ids"] == call["ids"]
    assert answer["scheduling"] == [wire]
    # Input flowed the whole time the call ran: nothing held back, nothing dropped.
    during = audio_while(em, "pending")
    assert len(during) >= int(0.8 * SLOW_S / 0.02)
    assert rec.gate == []
    assert session.gate.dropped["audio"] == 0
    assert session.stats.sent_while_shut == 0
    assert [[name for _, name in calls] for calls in rec.background] == [["search"], []]
    assert rec.reply_text() == "Found it."


@pytest.mark.parametrize(
    ("model", "behavior"),
    [(NATIVE, None), (FLASH, None), (LIVE, Behavior.BLOCKING), ("gemini-live-test", None)],
)
async def test_a_blocking_tool_mid_speech_holds_all_input_back(
    emulator_factory: EmulatorFactory, model: str, behavior: Behavior | None
) -> None:
    async with emulator_factory(ONE_CALL, grace_ms=0) as em:
        rec = Background()
        tool = search_tool(behavior, delay_s=0.3)
        session = new_session(em, [tool], rec, model=model)
        async with running(session):
            await keep_speaking(session, 1.0)
            await rec.wait_turns(1)
    assert em.trace.select("violation") == []
    [call] = em.trace.select("out", kind="toolCall")
    assert call["blocking"] == [True]
    [answer] = em.trace.select("in", kind="toolResponse")
    assert answer["scheduling"] == [None]
    assert audio_while(em, "blocking") == []
    assert session.stats.sent_while_shut == 0
    assert session.gate.dropped["audio"] > 0
    assert [shut for shut, _ in rec.gate] == [True, False]
    assert rec.background == []
    # On 3.8 blocking is opt-in, so the declaration says so; elsewhere it says nothing.
    [setup] = em.trace.select("in", kind="setup")
    assert setup["behaviors"] == {"search": "BLOCKING" if model == LIVE else None}
    assert rec.reply_text() == "Found it."


async def test_a_mixed_message_shuts_the_gate_for_the_blocking_call_only(
    emulator_factory: EmulatorFactory,
) -> None:
    async def light(args: dict[str, Any]) -> str:
        await asyncio.sleep(0.2)
        return "on"

    scenario = {
        "turns": [
            {
                "tool_calls": [{"name": "light"}, {"name": "search"}],
                "during_speech_ms": 100,
                "reply": "Light on, manual found.",
            }
        ]
    }
    blocking = ToolSpec(
        name="light", description="The light.", handler=light, behavior=Behavior.BLOCKING
    )
    async with emulator_factory(scenario, grace_ms=0) as em:
        rec = Background()
        session = new_session(em, [blocking, search_tool(None, delay_s=1.5)], rec, model=LIVE)
        async with running(session):
            await keep_speaking(session, 2.2)
            await rec.wait_turns(1)
    assert em.trace.select("violation") == []
    [call] = em.trace.select("out", kind="toolCall")
    assert dict(zip(call["names"], call["blocking"], strict=True)) == {
        "light": True,
        "search": False,
    }
    assert [(shut, [n for _, n in calls]) for shut, calls in rec.gate] == [
        (True, ["light"]),
        (False, []),
    ]
    assert audio_while(em, "blocking") == []
    # Once the blocking call was answered, audio flowed while the other still ran.
    assert len(audio_while(em, "pending")) > 10
    answers = {
        r["names"][0]: r["scheduling"][0] for r in em.trace.select("in", kind="toolResponse")
    }
    assert answers == {"light": None, "search": "WHEN_IDLE"}


EVERY_FIELD: dict[str, Any] = {
    "thinking_budget": 256,
    "thinking_level": "low",
    "proactive_audio": True,
    "affective_dialog": True,
}


@pytest.mark.parametrize(
    ("model", "sent"),
    [
        (NATIVE, [models.THINKING_BUDGET, models.AFFECTIVE_DIALOG, models.PROACTIVITY]),
        (FLASH, [models.THINKING_LEVEL]),
        (LIVE, []),
        (EXTENDED, []),
        ("gemini-live-test", []),
    ],
)
async def test_a_setup_field_the_profile_rejects_is_never_sent(
    emulator_factory: EmulatorFactory, model: str, sent: list[str]
) -> None:
    async with emulator_factory({"turns": []}) as em:
        rec = Background()
        session = new_session(em, [search_tool(None, delay_s=0.1)], rec, model=model, **EVERY_FIELD)
        async with running(session):
            await asyncio.wait_for(session.wait_connected(), 5)
    assert em.trace.select("violation") == []
    [setup] = em.trace.select("in", kind="setup")
    assert sorted(setup["fields"]) == sorted(sent)
    assert em.trace.select("out", kind="setupComplete")


@pytest.mark.parametrize(
    ("model", "config"),
    [
        (FLASH, {"proactivity": types.ProactivityConfig(proactive_audio=True)}),
        (FLASH, {"enable_affective_dialog": True}),
        (LIVE, {"proactivity": types.ProactivityConfig(proactive_audio=False)}),
        (LIVE, {"thinking_config": types.ThinkingConfig(thinking_level=types.ThinkingLevel.LOW)}),
    ],
)
async def test_the_stand_in_withholds_setup_complete_for_a_rejected_field(
    emulator_factory: EmulatorFactory, model: str, config: dict[str, Any]
) -> None:
    async with emulator_factory({"turns": []}) as em:
        client = sdk_client(em)
        setup = live_config().model_copy(update=config)
        with pytest.raises(TimeoutError):
            async with asyncio.timeout(1.0):
                async with client.aio.live.connect(model=model, config=setup):
                    pass
    [violation] = em.trace.select("violation")
    assert violation["rule"] == "setup-field-rejected"
    assert em.trace.select("out", kind="setupComplete") == []
