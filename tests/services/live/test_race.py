"""Randomised races: a mic streaming while tool calls arrive at random moments.

Each seeded run is a two-turn conversation through the real SDK against the stand-in with
its default 100 ms grace window. The mic keeps offering 20 ms frames and activity signals
whatever happens; tool calls come mid-utterance or after it, one to three per message, from
fast, slow and failing tools. No run may break a rule, and every conversation must finish.
"""

from __future__ import annotations

import asyncio
import random
from dataclasses import dataclass
from typing import Any

from tests.conftest import EmulatorFactory
from tests.services.live.harness import FRAME, Recorder, new_session, running, tool

RUNS = 300
CONCURRENCY = 3
TOOL_NAMES = ("fast", "slow", "failing")


@dataclass
class RunResult:
    seed: int
    turns: int
    violations: list[dict[str, Any]]
    sent_while_shut: int
    gated: int
    early_calls: int


def random_scenario(rng: random.Random) -> dict[str, Any]:
    turns = []
    for _ in range(2):
        calls = [{"name": rng.choice(TOOL_NAMES)} for _ in range(rng.choice((0, 1, 1, 2, 3)))]
        turn: dict[str, Any] = {
            "tool_calls": calls,
            "reply": "ok",
            "tool_delay_ms": rng.randrange(0, 40),
        }
        if calls and rng.random() < 0.6:
            turn["during_speech_ms"] = rng.randrange(20, 300, 20)
        turns.append(turn)
    return {"turns": turns}


async def one_run(factory: EmulatorFactory, seed: int) -> RunResult:
    rng = random.Random(seed)
    scenario = random_scenario(rng)

    async def fast(args: dict[str, Any]) -> str:
        return "done"

    async def slow(args: dict[str, Any]) -> str:
        await asyncio.sleep(rng.uniform(0.02, 0.15))
        return "done slowly"

    async def failing(args: dict[str, Any]) -> None:
        raise RuntimeError("device offline")

    tools = [tool("fast", fast), tool("slow", slow), tool("failing", failing)]
    async with factory(scenario) as em:
        rec = Recorder()
        session = new_session(em, tools, rec, seed=seed)
        async with running(session):
            for turn in range(2):
                await session.set_activity(True)
                for _ in range(rng.randrange(10, 40)):
                    await session.send_audio(FRAME)
                    await asyncio.sleep(0.005)
                await session.set_activity(False)
                for _ in range(rng.randrange(0, 10)):
                    await session.send_audio(FRAME)
                    await asyncio.sleep(0.005)
                await rec.wait_turns(turn + 1, within=15)
        early = sum(1 for t in scenario["turns"] if "during_speech_ms" in t)
        return RunResult(
            seed,
            rec.turns,
            em.trace.select("violation"),
            session.stats.sent_while_shut,
            sum(session.gate.dropped.values()),
            early,
        )


async def test_no_rule_is_ever_broken_across_seeded_races(
    emulator_factory: EmulatorFactory,
) -> None:
    limit = asyncio.Semaphore(CONCURRENCY)

    async def bounded(seed: int) -> RunResult:
        async with limit:
            return await one_run(emulator_factory, seed)

    results = await asyncio.gather(*(bounded(seed) for seed in range(RUNS)))
    broken = [r for r in results if r.violations or r.sent_while_shut or r.turns != 2]
    assert broken == [], [(r.seed, r.turns, [v["detail"] for v in r.violations]) for r in broken]
    # The races really happened: input was offered while calls were pending, mid-utterance.
    assert sum(r.gated for r in results) > RUNS
    assert sum(r.early_calls for r in results) > RUNS // 2
