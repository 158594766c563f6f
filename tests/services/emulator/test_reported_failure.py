"""The failure from the public reports, reproduced on the stand-in through the real SDK."""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator
from typing import Any

from services.emulator import rules
from services.emulator.reference_clients import close_code, run_cookbook
from tests.conftest import SILENCE_20MS, EmulatorFactory, live_config, loud_20ms, sdk_client

RUNS = 20


async def paced_mic(speech_ms: int, total_ms: int) -> AsyncIterator[bytes]:
    """A microphone: speech, then silence, one 20 ms frame every 20 ms."""
    for elapsed in range(0, total_ms, 20):
        yield loud_20ms() if elapsed < speech_ms else SILENCE_20MS
        await asyncio.sleep(0.02)


async def one_run(factory: EmulatorFactory, seed: int) -> tuple[int | None, str, list[Any]]:
    rng = random.Random(seed)
    during = rng.randrange(100, 500, 20)
    tool_s = rng.uniform(0.15, 0.4)
    scenario = {
        "grace_ms": 100,
        "turns": [
            {
                "tool_calls": [{"name": "get_time", "args": {}}],
                "during_speech_ms": during,
                "reply": "It is noon.",
            }
        ],
    }

    async def get_time() -> dict[str, Any]:
        await asyncio.sleep(tool_s)
        return {"output": "12:00"}

    async with factory(scenario, pace=1.0) as em:
        client = sdk_client(em)
        try:
            async with (
                asyncio.timeout(15),
                client.aio.live.connect(
                    model="m", config=live_config(manual=False, tools=("get_time",))
                ) as session,
            ):
                mic = paced_mic(speech_ms=during + 600, total_ms=4000)
                await run_cookbook(session, mic, {"get_time": get_time})
        except Exception as exc:
            code, reason = close_code(exc)
            return code, reason, em.trace.select("violation")
    return None, "finished", em.trace.select("violation")


async def test_cookbook_client_is_closed_with_1008_every_time(
    emulator_factory: EmulatorFactory,
) -> None:
    results = await asyncio.gather(*(one_run(emulator_factory, seed) for seed in range(RUNS)))
    for code, reason, violations in results:
        assert (code, reason) == (1008, rules.REASON_NOT_SUPPORTED)
        assert [v["rule"] for v in violations] == ["realtime-input-while-tool-call-pending"]
