"""Model profiles: which model takes which setup field and which tool behaviour."""

from __future__ import annotations

import pytest

from services.live.profiles import (
    FLASH_LIVE_31,
    LIVE_38,
    LIVE_38_EXTENDED,
    NATIVE_AUDIO_25,
    SAFE_DEFAULT,
    ModelProfile,
    ProfileError,
    SetupRequest,
    check_request,
    plan_setup,
    profile_for,
)
from services.tools.registry import Behavior, Scheduling

EVERYTHING = SetupRequest(
    thinking_budget=512, thinking_level="low", proactive_audio=True, affective_dialog=True
)


@pytest.mark.parametrize(
    ("model", "profile"),
    [
        ("gemini-2.5-flash-native-audio-preview-12-2025", NATIVE_AUDIO_25),
        ("gemini-2.5-flash-native-audio-latest", NATIVE_AUDIO_25),
        ("models/gemini-2.5-flash-native-audio-latest", NATIVE_AUDIO_25),
        ("gemini-3.1-flash-live-preview", FLASH_LIVE_31),
        ("gemini-3.8-live", LIVE_38),
        ("gemini-3.8-live-extended-thinking", LIVE_38_EXTENDED),
        ("gemini-3.8-live-something-new", SAFE_DEFAULT),
        ("test", SAFE_DEFAULT),
    ],
)
def test_a_model_name_selects_its_family(model: str, profile: ModelProfile) -> None:
    assert profile_for(model) is profile


def test_each_profile_keeps_only_the_fields_it_takes() -> None:
    native = plan_setup(NATIVE_AUDIO_25, EVERYTHING)
    assert (native.thinking_budget, native.thinking_level) == (512, None)
    assert (native.proactive_audio, native.affective_dialog) == (True, True)
    assert [key for key, _ in native.left_out] == ["thinking_level"]

    flash = plan_setup(FLASH_LIVE_31, EVERYTHING)
    assert (flash.thinking_budget, flash.thinking_level) == (None, "low")
    assert (flash.proactive_audio, flash.affective_dialog) == (None, None)
    assert [key for key, _ in flash.left_out] == [
        "thinking_budget",
        "proactive_audio",
        "affective_dialog",
    ]

    live = plan_setup(LIVE_38, EVERYTHING)
    assert (live.thinking_budget, live.thinking_level, live.proactive_audio) == (None, None, None)
    # Proactive audio is always on there: asking for it is no warning, just nothing to send.
    assert "proactive_audio" not in [key for key, _ in live.left_out]

    default = plan_setup(SAFE_DEFAULT, EVERYTHING)
    assert default.thinking_budget is None
    assert default.thinking_level is None
    assert default.proactive_audio is default.affective_dialog is None
    assert len(default.left_out) == 4


def test_nothing_asked_is_nothing_sent_and_nothing_warned() -> None:
    for profile in (NATIVE_AUDIO_25, FLASH_LIVE_31, LIVE_38, LIVE_38_EXTENDED, SAFE_DEFAULT):
        plan = plan_setup(profile, SetupRequest())
        assert plan.left_out == ()
        assert plan.thinking_budget is None
        assert plan.proactive_audio is plan.affective_dialog is None


def test_proactive_audio_false_is_an_error_on_38() -> None:
    with pytest.raises(ProfileError) as caught:
        check_request(LIVE_38, SetupRequest(proactive_audio=False))
    assert caught.value.key == "proactive_audio"
    check_request(NATIVE_AUDIO_25, SetupRequest(proactive_audio=False))


def test_tool_behaviours_follow_the_profile() -> None:
    assert SAFE_DEFAULT.tool_behavior(None, None) == (Behavior.BLOCKING, None)
    assert LIVE_38.tool_behavior(None, None) == (Behavior.NON_BLOCKING, Scheduling.WHEN_IDLE)
    assert LIVE_38.tool_behavior(Behavior.BLOCKING, None) == (Behavior.BLOCKING, None)
    assert NATIVE_AUDIO_25.tool_behavior(Behavior.NON_BLOCKING, Scheduling.SILENT) == (
        Behavior.NON_BLOCKING,
        Scheduling.SILENT,
    )
    for profile, behavior in [
        (FLASH_LIVE_31, Behavior.NON_BLOCKING),
        (SAFE_DEFAULT, Behavior.NON_BLOCKING),
        (LIVE_38_EXTENDED, Behavior.BLOCKING),
    ]:
        with pytest.raises(ProfileError) as caught:
            profile.tool_behavior(behavior, None)
        assert caught.value.key == "behavior"
    with pytest.raises(ProfileError) as caught:
        NATIVE_AUDIO_25.tool_behavior(None, Scheduling.INTERRUPT)
    assert caught.value.key == "scheduling"


def test_a_declaration_names_its_behaviour_only_where_it_matters() -> None:
    # Where blocking is the default, a blocking declaration stays as it always was.
    assert NATIVE_AUDIO_25.declared_behavior(Behavior.BLOCKING) is None
    assert NATIVE_AUDIO_25.declared_behavior(Behavior.NON_BLOCKING) is Behavior.NON_BLOCKING
    # On 3.8 blocking is opt-in, so it must be said.
    assert LIVE_38.declared_behavior(Behavior.BLOCKING) is Behavior.BLOCKING
