"""Scenarios: what the stand-in's model does on each user turn, loaded from JSON.

A scenario is a list of turns. On each user turn the model may call tools (one ``toolCall``
with one or several calls, optionally while the user is still speaking), then speaks a reply.
Faults (a closure, ``goAway``, a silent stall, expired handles) fire at a chosen moment, once
per conversation, so that a resumed conversation carries on past them.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, Literal, cast

from services.emulator.hostile import KINDS

FaultKind = Literal["close", "go_away", "stall", "expire_handles", "hostile"]
FaultMoment = Literal["turn_start", "tool_pending", "reply"]
_FAULT_KINDS = ("close", "go_away", "stall", "expire_handles", "hostile")
_FAULT_MOMENTS = ("turn_start", "tool_pending", "reply")


class ScenarioError(ValueError):
    """A scenario file that does not describe a valid scenario; names the key at fault."""


@dataclass(frozen=True)
class ToolCallSpec:
    """One function call the model makes."""

    name: str
    args: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Fault:
    """Something the service does to the client at a moment of a turn."""

    kind: FaultKind
    at: FaultMoment = "tool_pending"
    after_ms: int = 0
    code: int = 1011
    reason: str | None = None
    time_left_ms: int = 500
    # The goAway's timeLeft as sent, verbatim, instead of time_left_ms rendered: for probing
    # clients with durations the protocol does not allow ("-5s", "soon").
    time_left: str | None = None
    stall_s: float = 60.0
    # hostile: a malformed frame of services.emulator.hostile by name, or a literal text frame.
    frame: str | None = None
    text: str | None = None
    # How many times the frame is sent (the flood's default: hostile.FLOOD_COUNT).
    count: int | None = None


@dataclass(frozen=True)
class Turn:
    """The model's behaviour on one user turn."""

    reply: str
    heard: str | None = None
    tool_calls: tuple[ToolCallSpec, ...] = ()
    # Emit the toolCall once this much of the user's speech has arrived, while the user is
    # still speaking (the race from the public reports); None: after the user's turn ends.
    during_speech_ms: int | None = None
    tool_delay_ms: int = 0
    # The server abandons the calls after this long (as on a barge-in) with toolCallCancellation.
    cancel_after_ms: int | None = None
    faults: tuple[Fault, ...] = ()


@dataclass(frozen=True)
class RandomFaults:
    """Seeded per-turn probabilities of service faults while a call is pending or replying."""

    seed: int = 0
    close_1011: float = 0.0
    go_away: float = 0.0
    stall: float = 0.0


@dataclass(frozen=True)
class Scenario:
    """A whole scripted conversation."""

    name: str
    turns: tuple[Turn, ...]
    grace_ms: int = 100
    fallback_reply: str = "I have nothing more to say."
    random_faults: RandomFaults | None = None
    # Automatic activity detection: a chunk is speech at this RMS or more, and noise_margin_db
    # above the room's floor (a low percentile of the last noise_window_ms); this much
    # silence ends it.
    speech_rms: int = 500
    silence_hangover_ms: int = 400
    noise_margin_db: float = 6.0
    noise_window_ms: int = 3000
    # Seeds the call ids; None: different ids in every run, as the service gives.
    seed: int | None = None
    # A hostile fault whose frame the first connection gets instead of setupComplete.
    setup_frame: Fault | None = None

    def turn(self, index: int) -> Turn:
        """The turn at ``index``, or a plain fallback reply once the script has run out."""
        if index < len(self.turns):
            return self.turns[index]
        return Turn(reply=self.fallback_reply)


def _expect(value: Any, kind: type | tuple[type, ...], where: str) -> Any:
    if isinstance(value, bool) and kind in (int, float, (int, float)):
        raise ScenarioError(f"{where}: expected a number, got {value!r}")
    if not isinstance(value, kind):
        raise ScenarioError(f"{where}: expected {getattr(kind, '__name__', kind)}, got {value!r}")
    return value


def _check_keys(data: dict[str, Any], allowed: set[str], where: str) -> None:
    unknown = sorted(set(data) - allowed)
    if unknown:
        raise ScenarioError(f"{where}: unknown key {unknown[0]!r}")


def _fault(data: Any, where: str) -> Fault:
    _expect(data, dict, where)
    _check_keys(
        data,
        {
            "kind",
            "at",
            "after_ms",
            "code",
            "reason",
            "time_left_ms",
            "time_left",
            "stall_s",
            "frame",
            "text",
            "count",
        },
        where,
    )
    kind = data.get("kind")
    if kind not in _FAULT_KINDS:
        raise ScenarioError(f"{where}.kind: one of {', '.join(_FAULT_KINDS)}, got {kind!r}")
    at = data.get("at", "tool_pending")
    if at not in _FAULT_MOMENTS:
        raise ScenarioError(f"{where}.at: one of {', '.join(_FAULT_MOMENTS)}, got {at!r}")
    reason = data.get("reason")
    if reason is not None:
        _expect(reason, str, f"{where}.reason")
    frame = data.get("frame")
    text = data.get("text")
    if kind == "hostile":
        if (frame is None) == (text is None):
            raise ScenarioError(f"{where}: a hostile fault takes frame or text")
        if frame is not None and frame not in KINDS:
            raise ScenarioError(f"{where}.frame: one of {', '.join(KINDS)}, got {frame!r}")
        if text is not None:
            _expect(text, str, f"{where}.text")
    count = data.get("count")
    if count is not None and not 1 <= _expect(count, int, f"{where}.count") <= 100_000:
        raise ScenarioError(f"{where}.count: between 1 and 100000, got {count!r}")
    time_left = data.get("time_left")
    if time_left is not None:
        _expect(time_left, str, f"{where}.time_left")
    return Fault(
        kind=cast(FaultKind, kind),
        at=cast(FaultMoment, at),
        after_ms=_expect(data.get("after_ms", 0), int, f"{where}.after_ms"),
        code=_expect(data.get("code", 1011), int, f"{where}.code"),
        reason=reason,
        time_left_ms=_expect(data.get("time_left_ms", 500), int, f"{where}.time_left_ms"),
        time_left=time_left,
        stall_s=float(_expect(data.get("stall_s", 60.0), (int, float), f"{where}.stall_s")),
        frame=frame,
        text=text,
        count=count,
    )


def _turn(data: Any, where: str) -> Turn:
    _expect(data, dict, where)
    _check_keys(
        data,
        {
            "reply",
            "heard",
            "tool_calls",
            "during_speech_ms",
            "tool_delay_ms",
            "cancel_after_ms",
            "faults",
        },
        where,
    )
    calls = []
    for i, call in enumerate(_expect(data.get("tool_calls", []), list, f"{where}.tool_calls")):
        cwhere = f"{where}.tool_calls[{i}]"
        _expect(call, dict, cwhere)
        _check_keys(call, {"name", "args"}, cwhere)
        calls.append(
            ToolCallSpec(
                name=_expect(call.get("name"), str, f"{cwhere}.name"),
                args=_expect(call.get("args", {}), dict, f"{cwhere}.args"),
            )
        )
    during = data.get("during_speech_ms")
    cancel = data.get("cancel_after_ms")
    heard = data.get("heard")
    return Turn(
        reply=_expect(data.get("reply", ""), str, f"{where}.reply"),
        heard=None if heard is None else _expect(heard, str, f"{where}.heard"),
        tool_calls=tuple(calls),
        during_speech_ms=None
        if during is None
        else _expect(during, int, f"{where}.during_speech_ms"),
        tool_delay_ms=_expect(data.get("tool_delay_ms", 0), int, f"{where}.tool_delay_ms"),
        cancel_after_ms=None
        if cancel is None
        else _expect(cancel, int, f"{where}.cancel_after_ms"),
        faults=tuple(
            _fault(f, f"{where}.faults[{i}]")
            for i, f in enumerate(_expect(data.get("faults", []), list, f"{where}.faults"))
        ),
    )


def scenario_from_dict(data: Any, name: str = "scenario") -> Scenario:
    """Build a :class:`Scenario` from decoded JSON, naming the key of the first error."""
    _expect(data, dict, name)
    _check_keys(
        data,
        {
            "name",
            "turns",
            "grace_ms",
            "fallback_reply",
            "random_faults",
            "speech_rms",
            "silence_hangover_ms",
            "noise_margin_db",
            "noise_window_ms",
            "seed",
            "setup_frame",
        },
        name,
    )
    turns = _expect(data.get("turns"), list, f"{name}.turns")
    random_faults = None
    if "random_faults" in data:
        rf = _expect(data["random_faults"], dict, f"{name}.random_faults")
        _check_keys(rf, {"seed", "close_1011", "go_away", "stall"}, f"{name}.random_faults")
        random_faults = RandomFaults(
            seed=_expect(rf.get("seed", 0), int, f"{name}.random_faults.seed"),
            **{
                key: float(_expect(rf.get(key, 0.0), (int, float), f"{name}.random_faults.{key}"))
                for key in ("close_1011", "go_away", "stall")
            },
        )
    return Scenario(
        name=_expect(data.get("name", name), str, f"{name}.name"),
        turns=tuple(_turn(t, f"{name}.turns[{i}]") for i, t in enumerate(turns)),
        grace_ms=_expect(data.get("grace_ms", 100), int, f"{name}.grace_ms"),
        fallback_reply=_expect(
            data.get("fallback_reply", Scenario.fallback_reply), str, f"{name}.fallback_reply"
        ),
        random_faults=random_faults,
        speech_rms=_expect(data.get("speech_rms", 500), int, f"{name}.speech_rms"),
        silence_hangover_ms=_expect(
            data.get("silence_hangover_ms", 400), int, f"{name}.silence_hangover_ms"
        ),
        noise_margin_db=float(
            _expect(data.get("noise_margin_db", 6.0), (int, float), f"{name}.noise_margin_db")
        ),
        noise_window_ms=_expect(data.get("noise_window_ms", 3000), int, f"{name}.noise_window_ms"),
        seed=None if data.get("seed") is None else _expect(data["seed"], int, f"{name}.seed"),
        setup_frame=None
        if "setup_frame" not in data
        else _fault(
            {"kind": "hostile", **_expect(data["setup_frame"], dict, f"{name}.setup_frame")},
            f"{name}.setup_frame",
        ),
    )


def load_scenario(path: Path) -> Scenario:
    """Read a scenario file; errors name the file and the key."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ScenarioError(f"{path}: cannot read: {exc.strerror}") from exc
    except json.JSONDecodeError as exc:
        raise ScenarioError(f"{path}: not JSON: {exc}") from exc
    try:
        return scenario_from_dict(data, name=path.stem)
    except ScenarioError as exc:
        raise ScenarioError(f"{path}: {exc}") from exc


def default_scenario() -> Scenario:
    """The built-in scenario: the user asks for the kitchen light, the model calls a tool."""
    text = resources.files("services.emulator").joinpath("scenarios/default.json").read_text()
    return scenario_from_dict(json.loads(text), name="default")
