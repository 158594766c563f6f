"""How the daemon's state grows with session length: 1, 10 and 60 fast-forwarded minutes.

The probe runs the daemon on a microphone replayed at 50 times real time (a spoken request
every 5.4 s of audio; every frame is processed, none dropped) against a stand-in streaming
replies flat out; every turn calls ``set_output`` and every 60th ends its connection with
``goAway``. At each checkpoint
the probe reports the size of what could grow — the uplink queue, the pending calls and their
start times, running tools, closure reports, the speaker queue, Python objects, RSS — and
this side adds the stand-in's trace and handle table.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench import plans
from bench.probe_runner import child
from bench.standin import standin

TURNS_PER_MINUTE = 14  # one request per 5.4 s of audio is 11, and a margin
GO_AWAY_EVERY = 60
# Fast enough for an hour in about a minute, slow enough that a turn's wall-clock parts (the
# tool call's round trip, the reply) take a plausible share of audio time.
SPEED = 50.0
LIMIT_S = 1200.0


@dataclass(frozen=True)
class ScalingResult:
    """Sizes at each checkpoint, and the wall time the fast-forwarded run took."""

    checkpoints: list[dict[str, float]]
    wall_s: float


async def measure(workdir: Path, checkpoints_min: tuple[float, ...]) -> ScalingResult:
    """Run the scaling probe to the last checkpoint."""
    turns = int(TURNS_PER_MINUTE * max(checkpoints_min)) + 10
    scenario = plans.scaling_scenario(turns, GO_AWAY_EVERY)
    sizes: list[dict[str, float]] = []
    async with standin(scenario, workdir, pace=0.0) as em:
        plan = plans.ScalingPlan(
            endpoint=plans.Endpoint(em.base_url, str(em.settings.cert_out)),
            checkpoints_min=checkpoints_min,
            speed=SPEED,
        )
        plan_path = workdir / "scaling-plan.json"
        out_path = workdir / "scaling-result.json"
        plans.write_plan(plan, plan_path)
        async with (
            child("-m", "bench.probe", str(plan_path), str(out_path), stdout_pipe=True) as probe,
            asyncio.timeout(LIMIT_S),
        ):
            assert probe.stdout is not None
            while line := await probe.stdout.readline():
                point: dict[str, Any] = json.loads(line).get("checkpoint", {})
                if point:
                    sizes.append(
                        {
                            **point,
                            "standin_trace_records": len(em.trace.records),
                            "standin_handles": len(em.handles),
                        }
                    )
            status = await probe.wait()
    if status != 0:
        raise RuntimeError(f"the scaling probe exited with {status}")
    result = json.loads(out_path.read_text(encoding="utf-8"))
    return ScalingResult(sizes, float(result["wall_s"]))
