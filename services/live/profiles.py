"""Model profiles: what each Gemini Live model family takes in setup and how its tools behave.

Pure tables, no I/O. The setup is built from the profile of the configured model: a field the
model rejects is left out (with a warning naming the config key), never sent — on 3.1 Flash
Live such a field means ``setupComplete`` never arrives. Sources: the shared protocol notes
(``live-protocol.md``, "What changed by late 2026"); an unknown model gets the safe default,
which takes blocking tools only and no optional field, exactly as the daemon behaved before.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum

from services.tools.registry import Behavior, Scheduling

THINKING_LEVELS = ("minimal", "low", "medium", "high")


class Support(StrEnum):
    """How a model treats an optional setup field."""

    TAKES = "takes"
    REJECTS = "rejects"
    # Always on: leaving the field out is the only safe choice; asking for "off" is an error.
    ALWAYS_ON = "always-on"


class ProfileError(ValueError):
    """A setting the model cannot honour: ``key`` names it (``behavior``, ``proactive_audio``)."""

    def __init__(self, key: str, reason: str) -> None:
        super().__init__(f"{key}: {reason}")
        self.key = key
        self.reason = reason


@dataclass(frozen=True)
class ModelProfile:
    """One model family: its optional setup fields and its tool behaviours."""

    name: str
    behaviors: frozenset[Behavior] = frozenset({Behavior.BLOCKING})
    default_behavior: Behavior = Behavior.BLOCKING
    thinking_budget: Support = Support.REJECTS
    thinking_level: Support = Support.REJECTS
    proactive_audio: Support = Support.REJECTS
    affective_dialog: Support = Support.REJECTS

    def tool_behavior(
        self, behavior: Behavior | None, scheduling: Scheduling | None
    ) -> tuple[Behavior, Scheduling | None]:
        """The effective behaviour of a tool (None: this model's default) and its scheduling.

        Raises :class:`ProfileError` keyed ``behavior`` or ``scheduling`` when the model cannot
        take them."""
        effective = self.default_behavior if behavior is None else behavior
        if effective not in self.behaviors:
            takes = " and ".join(sorted(b.value for b in self.behaviors))
            raise ProfileError("behavior", f"{self.name} takes only {takes} tools")
        if effective is Behavior.BLOCKING:
            if scheduling is not None:
                raise ProfileError(
                    "scheduling",
                    f"is only for non_blocking tools; this one is blocking on {self.name}",
                )
            return effective, None
        return effective, scheduling or Scheduling.WHEN_IDLE

    def declared_behavior(self, effective: Behavior) -> Behavior | None:
        """What a declaration must say for ``effective`` to hold: nothing for blocking where
        blocking is the default (as before profiles existed), the value otherwise."""
        if effective is Behavior.BLOCKING and self.default_behavior is Behavior.BLOCKING:
            return None
        return effective


@dataclass(frozen=True)
class SetupRequest:
    """The optional setup fields the config asks for (None: not asked)."""

    thinking_budget: int | None = None
    thinking_level: str | None = None
    proactive_audio: bool | None = None
    affective_dialog: bool | None = None


@dataclass(frozen=True)
class SetupPlan:
    """The optional fields to send, and the ones left out with the reason (key, reason)."""

    thinking_budget: int | None = None
    thinking_level: str | None = None
    proactive_audio: bool | None = None
    affective_dialog: bool | None = None
    left_out: tuple[tuple[str, str], ...] = ()


SAFE_DEFAULT = ModelProfile(name="default")
NATIVE_AUDIO_25 = ModelProfile(
    name="gemini-2.5-flash-native-audio",
    behaviors=frozenset({Behavior.BLOCKING, Behavior.NON_BLOCKING}),
    thinking_budget=Support.TAKES,
    proactive_audio=Support.TAKES,
    affective_dialog=Support.TAKES,
)
FLASH_LIVE_31 = ModelProfile(name="gemini-3.1-flash-live", thinking_level=Support.TAKES)
LIVE_38 = ModelProfile(
    name="gemini-3.8-live",
    behaviors=frozenset({Behavior.BLOCKING, Behavior.NON_BLOCKING}),
    default_behavior=Behavior.NON_BLOCKING,
    proactive_audio=Support.ALWAYS_ON,
)
LIVE_38_EXTENDED = ModelProfile(
    name="gemini-3.8-live-extended-thinking",
    behaviors=frozenset({Behavior.NON_BLOCKING}),
    default_behavior=Behavior.NON_BLOCKING,
    proactive_audio=Support.ALWAYS_ON,
)
# (exact name or prefix, profile); the first match wins, so longer names come first.
_TABLE: Sequence[tuple[str, bool, ModelProfile]] = (
    ("gemini-3.8-live-extended-thinking", False, LIVE_38_EXTENDED),
    ("gemini-3.8-live", False, LIVE_38),
    ("gemini-3.1-flash-live-preview", False, FLASH_LIVE_31),
    # The dated previews (…-12-2025) and the …-latest alias.
    ("gemini-2.5-flash-native-audio-", True, NATIVE_AUDIO_25),
)


def profile_for(model: str) -> ModelProfile:
    """The profile of ``model`` (a ``models/`` prefix is ignored); the safe default if unknown."""
    name = model.removeprefix("models/")
    for key, prefix, profile in _TABLE:
        if name == key or (prefix and name.startswith(key)):
            return profile
    return SAFE_DEFAULT


def check_request(profile: ModelProfile, request: SetupRequest) -> None:
    """Raise :class:`ProfileError` for a value the model cannot honour (not merely ignore)."""
    if profile.proactive_audio is Support.ALWAYS_ON and request.proactive_audio is False:
        raise ProfileError(
            "proactive_audio",
            f"{profile.name} always uses proactive audio; false is an error there",
        )


def plan_setup(profile: ModelProfile, request: SetupRequest) -> SetupPlan:
    """The optional fields of ``request`` that ``profile`` takes; the others are left out."""
    left_out: list[tuple[str, str]] = []

    def keep(key: str, support: Support, value: object) -> bool:
        if value is None:
            return False
        if support is Support.TAKES:
            return True
        if support is Support.ALWAYS_ON:
            if value is not True:
                left_out.append((key, f"{profile.name} always has it on"))
            return False
        left_out.append((key, f"{profile.name} rejects it in setup"))
        return False

    budget = request.thinking_budget
    level = request.thinking_level
    proactive = request.proactive_audio
    affective = request.affective_dialog
    return SetupPlan(
        thinking_budget=budget
        if keep("thinking_budget", profile.thinking_budget, budget)
        else None,
        thinking_level=level if keep("thinking_level", profile.thinking_level, level) else None,
        proactive_audio=(
            proactive if keep("proactive_audio", profile.proactive_audio, proactive) else None
        ),
        affective_dialog=(
            affective if keep("affective_dialog", profile.affective_dialog, affective) else None
        ),
        left_out=tuple(left_out),
    )
