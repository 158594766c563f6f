"""What each Gemini Live model family does with a setup and with its tool calls, for the stand-in.

The stand-in keeps its own table, written from the service's public record rather than from
the client's profiles, so a test against it checks the client instead of agreeing with it.
Each entry says where it comes from and whether it was observed (reported by users or Google)
or is assumed (the nearest reading where nobody has published what happens).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

THINKING_BUDGET = "generationConfig.thinkingConfig.thinkingBudget"
THINKING_LEVEL = "generationConfig.thinkingConfig.thinkingLevel"
AFFECTIVE_DIALOG = "generationConfig.enableAffectiveDialog"
PROACTIVITY = "proactivity"
PROACTIVE_AUDIO_OFF = "proactivity.proactiveAudio=false"
BLOCKING_DECLARATION = "functionDeclarations[].behavior=BLOCKING"


@dataclass(frozen=True)
class ModelRules:
    """One family: the setup fields that keep ``setupComplete`` from arriving, and its calls."""

    family: str
    # A function declared without ``behavior`` is non-blocking by default.
    non_blocking_default: bool = False
    # A ``NON_BLOCKING`` declaration is honoured; otherwise every call blocks input.
    non_blocking: bool = False
    rejects: frozenset[str] = frozenset()


# The 2025 previews and unknown names: every call blocks, any setup is taken (the stand-in's
# behaviour before profiles existed; observed on the native-audio previews, live-protocol.md).
LEGACY = ModelRules(family="legacy")
# 2.5 native audio: blocking and NON_BLOCKING calls, thinkingBudget (observed: Google's docs
# and their async-function example). thinkingLevel rejected: assumed, it is a 3.x field.
NATIVE_AUDIO_25 = ModelRules(
    family="gemini-2.5-flash-native-audio", non_blocking=True, rejects=frozenset({THINKING_LEVEL})
)
# 3.1 Flash Live: blocking only (observed: public docs); proactivity and affective dialog in
# setup mean setupComplete never arrives (observed: client projects' issues); thinkingBudget
# rejected the same way: assumed, 3.1 documents thinkingLevel instead. A NON_BLOCKING
# declaration is not honoured, its calls block: assumed.
FLASH_LIVE_31 = ModelRules(
    family="gemini-3.1-flash-live",
    rejects=frozenset({PROACTIVITY, AFFECTIVE_DIALOG, THINKING_BUDGET}),
)
# 3.8 Live (GA, Sept 2026): NON_BLOCKING by default, BLOCKING opt-in, proactive audio always on
# and false an error, no thinking level (observed: public docs). That those errors look like
# 3.1's (no setupComplete) is assumed.
LIVE_38 = ModelRules(
    family="gemini-3.8-live",
    non_blocking_default=True,
    non_blocking=True,
    rejects=frozenset({THINKING_LEVEL, PROACTIVE_AUDIO_OFF}),
)
# 3.8 extended thinking: non-blocking tools only (observed: public docs); a BLOCKING
# declaration treated as a rejected setup field: assumed.
LIVE_38_EXTENDED = ModelRules(
    family="gemini-3.8-live-extended-thinking",
    non_blocking_default=True,
    non_blocking=True,
    rejects=frozenset({THINKING_LEVEL, PROACTIVE_AUDIO_OFF, BLOCKING_DECLARATION}),
)


def rules_for(model: object) -> ModelRules:
    """The rules for the ``model`` named in a setup (``models/…``)."""
    name = str(model or "").removeprefix("models/")
    if name == "gemini-3.8-live-extended-thinking":
        return LIVE_38_EXTENDED
    if name == "gemini-3.8-live":
        return LIVE_38
    if name == "gemini-3.1-flash-live-preview":
        return FLASH_LIVE_31
    if name.startswith("gemini-2.5-flash-native-audio-"):
        return NATIVE_AUDIO_25
    return LEGACY


def declared_behaviors(setup: Mapping[str, Any]) -> dict[str, str | None]:
    """Each declared function's ``behavior`` as written in the setup (None if absent)."""
    declared: dict[str, str | None] = {}
    tools = setup.get("tools")
    for tool in tools if isinstance(tools, list) else []:
        functions = tool.get("functionDeclarations") if isinstance(tool, dict) else None
        for function in functions if isinstance(functions, list) else []:
            if isinstance(function, dict) and isinstance(function.get("name"), str):
                behavior = function.get("behavior")
                declared[function["name"]] = behavior if isinstance(behavior, str) else None
    return declared


def present_fields(setup: Mapping[str, Any]) -> list[str]:
    """The optional setup fields ``setup`` carries, named as in :data:`ModelRules.rejects`."""
    generation = setup.get("generationConfig") or {}
    thinking = generation.get("thinkingConfig") or {}
    found = []
    if thinking.get("thinkingBudget") is not None:
        found.append(THINKING_BUDGET)
    if thinking.get("thinkingLevel") is not None:
        found.append(THINKING_LEVEL)
    if generation.get("enableAffectiveDialog") is not None:
        found.append(AFFECTIVE_DIALOG)
    proactivity = setup.get("proactivity")
    if proactivity is not None:
        found.append(PROACTIVITY)
        if isinstance(proactivity, dict) and proactivity.get("proactiveAudio") is False:
            found.append(PROACTIVE_AUDIO_OFF)
    if any(b == "BLOCKING" for b in declared_behaviors(setup).values()):
        found.append(BLOCKING_DECLARATION)
    return found


def rejected_fields(rules: ModelRules, setup: Mapping[str, Any]) -> list[str]:
    """The fields of ``setup`` that ``rules``' model does not take."""
    return [f for f in present_fields(setup) if f in rules.rejects]


def call_blocks(rules: ModelRules, declared: str | None) -> bool:
    """Does a call of a function declared with ``declared`` behaviour block realtime input?"""
    if not rules.non_blocking:
        return True
    if declared == "NON_BLOCKING":
        return False
    if declared == "BLOCKING":
        return True
    return not rules.non_blocking_default
