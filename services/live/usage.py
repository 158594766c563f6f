"""The usage meter: tokens per turn, per session and per day, and what they cost.

Live is billed per token, and the whole context (audio included) is billed again every turn,
so a device's cost grows with the length of its conversations, silence included. The service
reports each turn's tokens in ``usageMetadata``; this module only adds them up. Pure: the
caller says which day it is.

Tokens are split by direction (prompt, response, thoughts) and, where the service gives the
per-modality details, into audio and text. The details may fall short of the total (seen on
3.8 by 25 to 51 tokens): the rest is counted, and priced, as text.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, fields
from typing import Any


@dataclass(frozen=True)
class Prices:
    """US dollars per million tokens; thoughts are billed as text output."""

    input_text: float
    input_audio: float
    output_text: float
    output_audio: float


@dataclass
class Tally:
    """Tokens and estimated cost summed over some span (a turn, a session, a day)."""

    prompt_audio: int = 0
    prompt_text: int = 0
    response_audio: int = 0
    response_text: int = 0
    thoughts: int = 0
    cost: float = 0.0

    @property
    def tokens_in(self) -> int:
        """Every prompt token."""
        return self.prompt_audio + self.prompt_text

    @property
    def tokens_out(self) -> int:
        """Every response token, thoughts included."""
        return self.response_audio + self.response_text + self.thoughts

    def add(self, other: Tally) -> None:
        """Add ``other``'s counts and cost to this one."""
        for f in fields(self):
            setattr(self, f.name, getattr(self, f.name) + getattr(other, f.name))


def _count(value: Any) -> int:
    """A token count from the service: a non-negative integer, anything else 0."""
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else 0


def _audio_in(details: Any) -> int:
    """The audio share of a list of ``{modality, tokenCount}`` details."""
    if not isinstance(details, Iterable) or isinstance(details, (str, bytes, Mapping)):
        return 0
    total = 0
    for item in details:
        if isinstance(item, Mapping) and str(item.get("modality", "")).upper() == "AUDIO":
            total += _count(item.get("token_count", item.get("tokenCount")))
    return total


def tally_of(usage: Mapping[str, Any], prices: Prices | None) -> Tally:
    """One ``usageMetadata`` (snake_case or camelCase keys) as a :class:`Tally`."""

    def get(snake: str, camel: str) -> Any:
        return usage.get(snake, usage.get(camel))

    # Tool results the model read are prompt tokens too, billed as text.
    prompt = _count(get("prompt_token_count", "promptTokenCount")) + _count(
        get("tool_use_prompt_token_count", "toolUsePromptTokenCount")
    )
    response = _count(get("response_token_count", "responseTokenCount"))
    prompt_audio = min(prompt, _audio_in(get("prompt_tokens_details", "promptTokensDetails")))
    response_audio = min(
        response, _audio_in(get("response_tokens_details", "responseTokensDetails"))
    )
    tally = Tally(
        prompt_audio=prompt_audio,
        prompt_text=prompt - prompt_audio,
        response_audio=response_audio,
        response_text=response - response_audio,
        thoughts=_count(get("thoughts_token_count", "thoughtsTokenCount")),
    )
    if prices is not None:
        tally.cost = (
            tally.prompt_audio * prices.input_audio
            + tally.prompt_text * prices.input_text
            + tally.response_audio * prices.output_audio
            + (tally.response_text + tally.thoughts) * prices.output_text
        ) / 1e6
    return tally


@dataclass
class UsageMeter:
    """Sums per turn, per conversation and per day."""

    prices: Prices | None = None
    day: dt.date | None = None
    session: Tally = field(default_factory=Tally)
    today: Tally = field(default_factory=Tally)

    def record(self, usage: Mapping[str, Any], today: dt.date) -> Tally:
        """Count one turn's ``usageMetadata`` on ``today``; returns that turn's tally."""
        turn = tally_of(usage, self.prices)
        self.session.add(turn)
        self.on(today).add(turn)
        return turn

    def new_session(self) -> None:
        """A fresh conversation (not a resumption): the session tally starts again."""
        self.session = Tally()

    def on(self, today: dt.date) -> Tally:
        """The tally of ``today``: a new day starts from nothing, turn or no turn."""
        if self.day != today:
            self.day = today
            self.today = Tally()
        return self.today


@dataclass
class DailyBudget:
    """What a day may cost, in US dollars; a long press lets the rest of one day go past it."""

    limit: float
    overridden_on: dt.date | None = None

    def spent(self, today: Tally, day: dt.date) -> bool:
        """True once ``today``'s estimated cost reached the limit, unless ``day`` is overridden."""
        return today.cost >= self.limit and self.overridden_on != day

    def override(self, day: dt.date) -> None:
        """Open sessions for the rest of ``day`` whatever it costs."""
        self.overridden_on = day


def seconds_until_tomorrow(now: dt.datetime) -> float:
    """From ``now`` to the next midnight of its (local) calendar."""
    tomorrow = dt.datetime.combine(now.date() + dt.timedelta(days=1), dt.time(), now.tzinfo)
    return (tomorrow - now).total_seconds()
