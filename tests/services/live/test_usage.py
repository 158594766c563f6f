"""The usage meter, pure: tokens by direction and modality, cost, days and the budget."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from google.genai import types

from services.live.usage import (
    DailyBudget,
    Prices,
    Tally,
    UsageMeter,
    seconds_until_tomorrow,
    tally_of,
)

PRICES = Prices(input_text=0.5, input_audio=3.0, output_text=2.0, output_audio=12.0)
DAY = dt.date(2026, 12, 2)


def turn(
    prompt: int, audio_in: int, response: int, audio_out: int, thoughts: int = 0
) -> dict[str, Any]:
    """A usageMetadata as the SDK's model_dump(mode="json") gives it."""
    return types.UsageMetadata(
        prompt_token_count=prompt,
        response_token_count=response,
        thoughts_token_count=thoughts,
        prompt_tokens_details=[
            types.ModalityTokenCount(modality=types.MediaModality.AUDIO, token_count=audio_in),
            types.ModalityTokenCount(
                modality=types.MediaModality.TEXT, token_count=prompt - audio_in
            ),
        ],
        response_tokens_details=[
            types.ModalityTokenCount(modality=types.MediaModality.AUDIO, token_count=audio_out)
        ],
    ).model_dump(mode="json", exclude_none=True)


def test_a_turn_is_split_by_direction_and_modality_and_priced() -> None:
    tally = tally_of(turn(1000, 800, 500, 450, thoughts=20), PRICES)
    assert (tally.prompt_audio, tally.prompt_text) == (800, 200)
    assert (tally.response_audio, tally.response_text, tally.thoughts) == (450, 50, 20)
    assert (tally.tokens_in, tally.tokens_out) == (1000, 520)
    expected = (800 * 3.0 + 200 * 0.5 + 450 * 12.0 + (50 + 20) * 2.0) / 1e6
    assert tally.cost == pytest.approx(expected)


def test_details_that_fall_short_count_the_rest_as_text() -> None:
    usage = turn(1000, 800, 500, 450)
    usage["prompt_tokens_details"] = usage["prompt_tokens_details"][:1]  # audio only
    tally = tally_of(usage, None)
    assert (tally.prompt_audio, tally.prompt_text, tally.cost) == (800, 200, 0.0)


def test_camel_case_and_garbage_values_are_read_safely() -> None:
    tally = tally_of(
        {
            "promptTokenCount": 10,
            "responseTokenCount": "lots",
            "thoughtsTokenCount": -5,
            "promptTokensDetails": [{"modality": "AUDIO", "tokenCount": 99}, "junk"],
            "responseTokensDetails": {"modality": "AUDIO"},
        },
        PRICES,
    )
    assert (tally.prompt_audio, tally.prompt_text, tally.tokens_out) == (10, 0, 0)
    assert tally.cost == pytest.approx(10 * 3.0 / 1e6)


def test_sessions_and_days_are_summed_apart() -> None:
    meter = UsageMeter(prices=PRICES)
    first = meter.record(turn(1000, 1000, 500, 500), DAY)
    meter.record(turn(1000, 1000, 500, 500), DAY)
    assert meter.session.tokens_in == meter.today.tokens_in == 2000
    assert meter.today.cost == pytest.approx(2 * first.cost)
    meter.new_session()
    assert meter.session == Tally()
    assert meter.on(DAY).tokens_in == 2000
    # The next day starts from nothing even before its first turn.
    assert meter.on(DAY + dt.timedelta(days=1)) == Tally()


def test_tool_results_the_model_read_count_as_text_input() -> None:
    usage = turn(1000, 800, 0, 0)
    usage["tool_use_prompt_token_count"] = 50
    tally = tally_of(usage, None)
    assert (tally.prompt_audio, tally.prompt_text) == (800, 250)


def test_a_budget_is_spent_at_its_limit_unless_the_day_is_overridden() -> None:
    day = dt.date(2026, 12, 4)
    budget = DailyBudget(0.5)
    assert not budget.spent(Tally(cost=0.49), day)
    assert budget.spent(Tally(cost=0.5), day)
    budget.override(day)
    assert not budget.spent(Tally(cost=9.0), day)
    # An override lasts the day it was made on.
    assert budget.spent(Tally(cost=0.5), day + dt.timedelta(days=1))


@pytest.mark.parametrize(
    ("now", "seconds"),
    [
        (dt.datetime(2026, 12, 4, 23, 59, 59), 1.0),
        (dt.datetime(2026, 12, 4, 0, 0, 0), 86_400.0),
        (dt.datetime(2026, 12, 31, 12, 0, 0, 500_000), 43_199.5),
        (dt.datetime(2026, 12, 4, 23, 0, tzinfo=dt.UTC), 3_600.0),
    ],
)
def test_seconds_until_tomorrow_reach_the_next_midnight(now: dt.datetime, seconds: float) -> None:
    assert seconds_until_tomorrow(now) == pytest.approx(seconds)
