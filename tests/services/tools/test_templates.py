"""Safe templates: nothing evaluated, nothing escapes a topic level or a JSON string."""

from __future__ import annotations

import json

import pytest

from services.tools.templates import (
    TemplateError,
    check_topic_template,
    placeholders,
    render_structure,
    render_text,
    render_topic,
    subscription_filter,
)


def test_placeholders_are_filled_as_text_and_nothing_is_evaluated() -> None:
    args = {"room": "kitchen", "level": 0.5, "on": True}
    assert render_text("${room} at ${level}, on=$on, $$5", args) == "kitchen at 0.5, on=true, $5"
    assert render_text("{room.__class__} ${room}", args) == "{room.__class__} kitchen"
    with pytest.raises(TemplateError, match="not a valid template"):
        placeholders("${room.__class__}")
    with pytest.raises(TemplateError, match="needs the argument 'colour'"):
        render_text("${colour}", args)


def test_a_structured_template_keeps_types_and_cannot_be_broken_out_of() -> None:
    template = {"state": "${on}", "label": "light in ${room}", "levels": ["${level}"]}
    args = {"on": False, "room": 'x", "admin": true, "y": "', "level": 3}
    rendered = render_structure(template, args)
    assert rendered == {"state": False, "label": f"light in {args['room']}", "levels": [3]}
    assert "admin" not in json.loads(json.dumps(rendered))


@pytest.mark.parametrize(
    "room", ["a/b", "../x", "..", "#", "+", "", "a\x00b", "$SYS", "x" * 200, "tab\there"]
)
def test_a_topic_part_cannot_leave_its_level(room: str) -> None:
    with pytest.raises(TemplateError):
        render_topic("home/${room}/light/set", {"room": room})


def test_a_topic_part_may_be_part_of_a_level() -> None:
    assert render_topic("z2m/${room}_light/set", {"room": "hall"}) == "z2m/hall_light/set"
    assert render_topic("dev/${n}", {"n": 3}) == "dev/3"
    assert subscription_filter("z2m/${room}_light/state") == "z2m/+/state"
    assert subscription_filter("a/$room/b/${x}") == "a/+/b/+"


@pytest.mark.parametrize("template", ["home/#", "home/+/set", "home//set", "", "$$SYS/x"])
def test_a_topic_template_names_one_topic(template: str) -> None:
    with pytest.raises(TemplateError):
        check_topic_template(template)
