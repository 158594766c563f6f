"""Pure pieces of the session: reconnect back-off, response shaping, closure causes."""

from __future__ import annotations

import random

import pytest

from services.live import diagnostics as d
from services.live.diagnostics import Action, CloseContext, SentFrame, likely_cause
from services.live.reconnect import BackoffSettings, ReconnectPolicy
from services.live.shaping import shape_response


class FixedRandom(random.Random):
    def __init__(self, value: float) -> None:
        super().__init__()
        self.value = value

    def random(self) -> float:
        return self.value


def test_backoff_doubles_up_to_the_cap_with_bounded_jitter() -> None:
    settings = BackoffSettings(initial_s=1, factor=2, max_s=8, jitter=0.5)
    plain = ReconnectPolicy(settings, FixedRandom(0.0))
    assert [plain.next_delay(Action.RESUME) for _ in range(5)] == [1, 2, 4, 8, 8]
    jittered = ReconnectPolicy(settings, FixedRandom(1.0))
    assert [jittered.next_delay(Action.RESUME) for _ in range(3)] == [0.5, 1, 2]


def test_fatal_causes_give_up_after_the_set_attempts() -> None:
    policy = ReconnectPolicy(BackoffSettings(fatal_attempts=3), FixedRandom(0.0))
    delays = [policy.next_delay(Action.FATAL) for _ in range(3)]
    assert delays[0] is not None
    assert delays[1] is not None
    assert delays[1] > delays[0]
    assert delays[2] is None
    assert policy.next_delay(Action.STOP) is None


def test_a_healthy_connection_resets_the_back_off() -> None:
    policy = ReconnectPolicy(BackoffSettings(initial_s=1, healthy_after_s=30), FixedRandom(0.0))
    policy.next_delay(Action.RESUME)
    policy.next_delay(Action.RESUME)
    policy.connected_for(5)
    assert policy.next_delay(Action.RESUME) == 4
    policy.connected_for(31)
    assert policy.next_delay(Action.RESUME) == 1


def test_shaping_collapses_whitespace_and_keeps_json() -> None:
    shaped = shape_response({"output": {"text": "  a\n\n b\tc  ", "n": [1, 2]}}, cap_chars=1000)
    assert shaped.payload == {"output": {"text": "a b c", "n": [1, 2]}}
    assert not shaped.truncated


def test_shaping_turns_non_json_into_an_error() -> None:
    shaped = shape_response({"output": object()}, cap_chars=1000)
    assert "not JSON" in shaped.payload["error"]
    shaped = shape_response({"output": float("nan")}, cap_chars=1000)
    assert "not JSON" in shaped.payload["error"]


def test_shaping_caps_the_size_with_a_visible_marker() -> None:
    shaped = shape_response({"output": "x" * 10_000}, cap_chars=500)
    assert shaped.truncated
    assert shaped.size <= 500
    assert shaped.payload["truncated"] is True
    assert shaped.payload["output"].endswith("of 10000 characters]")


def ctx(**kw: object) -> CloseContext:
    return CloseContext(state="idle", **kw)  # type: ignore[arg-type]


RESPONSE = (SentFrame("toolResponse", 120, 0.0),)
PENDING = (("function-call-1", "set_output", 0.2),)


@pytest.mark.parametrize(
    ("code", "reason", "context", "cause", "action"),
    [
        (1008, d.REASON_NOT_SUPPORTED, ctx(pending=PENDING), d.GATING_BUG, Action.RESUME),
        (1008, d.REASON_NOT_FOUND, ctx(last_sent=RESPONSE), d.ID_MISMATCH, Action.RESUME),
        (1008, d.REASON_SESSION_NOT_FOUND, ctx(), d.STALE_HANDLE, Action.FRESH),
        (1007, "API key not valid. Please pass a valid API key.", ctx(), d.BAD_KEY, Action.FATAL),
        (
            1007,
            "Explicit activity control is not supported",
            ctx(),
            d.ACTIVITY_MISMATCH,
            Action.FATAL,
        ),
        (1007, "Request contains an invalid argument.", ctx(), d.INVALID, Action.FATAL),
        (1011, d.REASON_DEADLINE, ctx(go_away_seen=True), d.DEADLINE_AFTER_GO_AWAY, Action.RESUME),
        (1011, d.REASON_INTERNAL, ctx(pending=PENDING), d.INTERNAL_WHILE_PENDING, Action.RESUME),
        (None, "", ctx(local_cause="stall"), d.LOCAL_CAUSES["stall"][0], Action.RESUME),
        (None, "", ctx(local_cause="refused"), d.LOCAL_CAUSES["refused"][0], Action.FATAL),
    ],
)
def test_each_known_closure_has_its_likely_cause(
    code: int | None, reason: str, context: CloseContext, cause: str, action: Action
) -> None:
    assert likely_cause(code, reason, context) == (cause, action)


def test_internal_error_after_a_tool_response_names_its_size() -> None:
    cause, action = likely_cause(
        1011, d.REASON_INTERNAL, ctx(last_sent=RESPONSE, last_tool_response_size=120)
    )
    assert "120 B" in cause
    assert action is Action.RESUME


def test_an_internal_error_long_after_a_tool_response_is_not_blamed_on_it() -> None:
    # The response went out at 0 s, the model spoke its whole reply, the closure came at 3.4 s.
    late = ctx(last_sent=RESPONSE, last_tool_response_size=120, at=3.4, last_reply_at=3.0)
    cause, _ = likely_cause(1011, d.REASON_INTERNAL, late)
    assert "tool response" not in cause
    replied = ctx(last_sent=RESPONSE, last_tool_response_size=120, at=0.5, last_reply_at=0.2)
    assert "tool response" not in likely_cause(1011, d.REASON_INTERNAL, replied)[0]
    quiet_too_long = ctx(last_sent=RESPONSE, last_tool_response_size=120, at=3.4)
    assert "tool response" not in likely_cause(1011, d.REASON_INTERNAL, quiet_too_long)[0]
    right_after = ctx(last_sent=RESPONSE, last_tool_response_size=120, at=0.3)
    assert "tool response (120 B)" in likely_cause(1011, d.REASON_INTERNAL, right_after)[0]


def test_an_unknown_id_long_after_a_response_is_not_called_an_id_mismatch() -> None:
    late = ctx(last_sent=RESPONSE, at=3.4, last_reply_at=3.0)
    assert likely_cause(1008, d.REASON_NOT_FOUND, late)[0] != d.ID_MISMATCH


def test_the_go_away_deadline_is_not_called_a_safe_point() -> None:
    cause, action = likely_cause(None, "", ctx(local_cause="go-away-deadline"))
    assert "safe point" in cause
    assert "reconnected at a safe point" not in cause
    assert action is Action.RESUME


def test_a_missing_key_is_named_and_fatal() -> None:
    reason = "Method doesn't allow unregistered callers (callers without established identity)."
    assert likely_cause(1008, reason, ctx()) == (d.NO_KEY, Action.FATAL)


def test_an_invalid_session_handle_starts_a_fresh_session() -> None:
    assert likely_cause(1007, "Invalid session handle", ctx()) == (d.STALE_HANDLE, Action.FRESH)
