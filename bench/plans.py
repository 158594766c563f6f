"""What the bench asks of the daemon probe, shared by both sides of the process boundary.

The parent builds a plan, derives the stand-in's scenario from it, and hands the plan to the
probe process as JSON; the probe drives the daemon through the same plan.
"""

from __future__ import annotations

import json
import random
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

LIGHT = "kitchen_light"
LIGHT_PIN = 5
BUTTON_PIN = 17
STATUS_PIN = 22
TOOL_PIN = 27
SLOW_TOOL = "slow_switch"
MQTT_TOOL = "set_light"
# The MQTT tool as a user declares it: a publish to the light's command topic, acknowledged by
# the broker (QoS 1); the round's figure is the daemon's and the broker's work, no light's.
MQTT_TOOL_DECLARATION: dict[str, Any] = {
    "name": MQTT_TOOL,
    "description": "Switch the light of a room on or off.",
    "action": "mqtt_publish",
    "parameters": {
        "type": "object",
        "properties": {"room": {"enum": ["kitchen", "hall"]}, "on": {"type": "boolean"}},
        "required": ["room", "on"],
    },
    "topic": "home/${room}/light/set",
    "payload": {"state": "${on}"},
    "timeout_s": 4,
}
# The session counts a connection as healthy after 30 s, and only then starts its back-off
# over: 1011s closer together than that are a failing streak, met with growing delays. The
# probe keeps its faults further apart, so each one is met as an isolated 1011 would be.
FAULT_EVERY = 30
FAULT_SPACING_S = 35.0
SHORT_REPLY = "Done."
LONG_REPLY = (
    "The kitchen light is on, the hall light is off, the heating is set to twenty one "
    "degrees, and the front door is locked, so everything looks fine for the night."
)
UTTERANCES = (
    ("Turn on the kitchen light, please.", "en-us", 160),
    ("What time is it?", "en-gb", 150),
    ("Switch off the fan in the bedroom.", "en-gb-scotland", 170),
    ("Is the front door locked?", "en-us", 140),
)


@dataclass(frozen=True)
class Endpoint:
    """Where a stand-in serves, and the certificate to trust."""

    url: str
    ca_file: str


@dataclass(frozen=True)
class ButtonRound:
    """One push-to-talk round: ``gpio`` (set_output), ``mqtt`` (set_light, published to a
    real broker), ``fault`` (a slow tool, then a 1011 while it is pending) or ``barge`` (a
    long reply, interrupted ``barge_after_s`` into it)."""

    kind: str
    hold_s: float
    during_speech_ms: int | None
    barge_after_s: float
    fault_after_ms: int

    @property
    def turns(self) -> int:
        """Model turns the round takes: a barge-in adds the interrupting turn's answer."""
        return 2 if self.kind == "barge" else 1


@dataclass(frozen=True)
class LatencyPlan:
    """The probe's latency run: push-to-talk rounds, then spoken utterances."""

    button: Endpoint
    rounds: tuple[ButtonRound, ...]
    speech: Endpoint
    utterances: int
    hangover_ms: int
    mqtt_port: int  # the broker the MQTT tool publishes to, on 127.0.0.1


@dataclass(frozen=True)
class ScalingPlan:
    """The probe's scaling run: a fast-forwarded conversation, sized at each checkpoint."""

    endpoint: Endpoint
    checkpoints_min: tuple[float, ...]
    speed: float  # simulated seconds per second


def _kind(n: int) -> str:
    if n % FAULT_EVERY == 2:
        return "fault"
    if n % 3 == 1:
        return "barge"
    return "mqtt" if n // 3 % 2 else "gpio"


def button_rounds(count: int, seed: int = 9) -> tuple[ButtonRound, ...]:
    """``count`` rounds, seeded: two tool rounds (GPIO and MQTT in turn) to each barge-in,
    and a fault every ``FAULT_EVERY`` rounds (the first four rounds hold one of each)."""
    rng = random.Random(seed)
    rounds = []
    for n in range(count):
        hold = rng.uniform(0.15, 0.5)
        during = rng.randrange(40, int(hold * 1000) - 60, 20) if rng.random() < 0.5 else None
        rounds.append(
            ButtonRound(
                kind=_kind(n),
                hold_s=hold,
                during_speech_ms=during,
                barge_after_s=rng.uniform(0.2, 1.0),
                fault_after_ms=rng.randrange(0, 40),
            )
        )
    return tuple(rounds)


def button_scenario(rounds: tuple[ButtonRound, ...]) -> dict[str, Any]:
    """The stand-in's side of the push-to-talk rounds."""
    turns: list[dict[str, Any]] = []
    for n, r in enumerate(rounds):
        if r.kind == "barge":
            turns += [{"reply": LONG_REPLY}, {"reply": "Sorry, go on."}]
            continue
        name, args = {
            "fault": (SLOW_TOOL, {}),
            "mqtt": (MQTT_TOOL, {"room": "kitchen", "on": n % 2 == 0}),
        }.get(r.kind, ("set_output", {"name": LIGHT, "on": n % 2 == 0}))
        turn: dict[str, Any] = {"tool_calls": [{"name": name, "args": args}], "reply": SHORT_REPLY}
        if r.during_speech_ms is not None and r.kind in ("gpio", "mqtt"):
            turn["during_speech_ms"] = r.during_speech_ms
        if r.kind == "fault":
            turn["faults"] = [{"kind": "close", "code": 1011, "after_ms": r.fault_after_ms}]
        turns.append(turn)
    return {"name": "bench-button", "turns": turns}


def speech_scenario(count: int) -> dict[str, Any]:
    """The stand-in's side of the spoken utterances: a short answer to each."""
    return {"name": "bench-speech", "turns": [{"reply": SHORT_REPLY} for _ in range(count)]}


def scaling_scenario(turns: int, go_away_every: int) -> dict[str, Any]:
    """Every turn calls set_output; every ``go_away_every``-th ends its connection."""
    script: list[dict[str, Any]] = []
    for n in range(turns):
        turn: dict[str, Any] = {
            "tool_calls": [{"name": "set_output", "args": {"name": LIGHT, "on": n % 2 == 0}}],
            "reply": "OK.",
        }
        if n % go_away_every == go_away_every - 1:
            turn["faults"] = [{"kind": "go_away", "at": "reply", "time_left_ms": 500}]
        script.append(turn)
    return {"name": "bench-scaling", "turns": script}


def write_plan(plan: LatencyPlan | ScalingPlan, path: Path) -> None:
    """Hand a plan to the probe."""
    kind = "latency" if isinstance(plan, LatencyPlan) else "scaling"
    path.write_text(json.dumps({"kind": kind, "plan": asdict(plan)}), encoding="utf-8")


def read_plan(path: Path) -> LatencyPlan | ScalingPlan:
    """The plan the parent wrote."""
    data = json.loads(path.read_text(encoding="utf-8"))
    plan = data["plan"]
    if data["kind"] == "latency":
        return LatencyPlan(
            button=Endpoint(**plan["button"]),
            rounds=tuple(ButtonRound(**r) for r in plan["rounds"]),
            speech=Endpoint(**plan["speech"]),
            utterances=int(plan["utterances"]),
            hangover_ms=int(plan["hangover_ms"]),
            mqtt_port=int(plan["mqtt_port"]),
        )
    return ScalingPlan(
        endpoint=Endpoint(**plan["endpoint"]),
        checkpoints_min=tuple(float(m) for m in plan["checkpoints_min"]),
        speed=float(plan["speed"]),
    )
