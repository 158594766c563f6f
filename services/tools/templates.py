"""Safe templates: ``${name}`` placeholders filled from a tool's arguments, nothing evaluated.

The syntax is :class:`string.Template`'s (``${room}``, ``$room``, ``$$`` for a dollar sign), so
no expression, attribute or index can run. Topic templates are stricter: a value that fills a
placeholder must stay inside one topic level — no ``/``, no wildcard, no ``..``, no NUL, not
empty — so an argument can never reach a topic the declaration did not name. Structured
templates (a TOML table as payload or service data) are filled value by value and encoded
afterwards, so an argument cannot break out of its JSON string either.
"""

from __future__ import annotations

import json
import string
from collections.abc import Mapping
from typing import Any

# Longest value one placeholder may put into a topic level.
MAX_TOPIC_PART = 128
_FORBIDDEN_IN_TOPIC = ("/", "#", "+", "\x00")


class TemplateError(ValueError):
    """A template that cannot be declared, or arguments that cannot fill it safely."""


def placeholders(template: str) -> list[str]:
    """The names ``template`` refers to; :class:`TemplateError` if it is malformed."""
    parsed = string.Template(template)
    if not parsed.is_valid():
        raise TemplateError(
            f"{template!r} is not a valid template (use ${{name}}, and $$ for a dollar sign)"
        )
    return parsed.get_identifiers()


def check_text_payload(template: str) -> None:
    """Refuse a text payload that is JSON with placeholders in it: a text template fills
    arguments in verbatim, so ``hi", "cmd": "unlock_door`` would break out of its string. A
    table payload is filled value by value and encoded afterwards, which is safe."""
    if placeholders(template) and template.lstrip()[:1] in ("{", "[", '"'):
        raise TemplateError(
            "a text payload that is JSON cannot be filled safely (an argument could break out "
            "of its string); write the payload as a table instead, "
            'e.g. payload = { text = "${text}" }, which is encoded as JSON after filling'
        )


def structure_placeholders(value: Any) -> list[str]:
    """Every placeholder in a structured template (tables, arrays and strings)."""
    if isinstance(value, str):
        return placeholders(value)
    if isinstance(value, Mapping):
        return [name for item in value.values() for name in structure_placeholders(item)]
    if isinstance(value, list | tuple):
        return [name for item in value for name in structure_placeholders(item)]
    return []


def as_text(value: Any) -> str:
    """How an argument reads inside text: JSON spelling for everything but strings."""
    if isinstance(value, str):
        return value
    return json.dumps(value, separators=(",", ":"))


def _values(template: str, args: Mapping[str, Any], what: str) -> dict[str, Any]:
    missing = [name for name in placeholders(template) if name not in args]
    if missing:
        raise TemplateError(f"the {what} needs the argument {missing[0]!r}")
    return {name: args[name] for name in placeholders(template)}


def render_text(template: str, args: Mapping[str, Any], what: str = "template") -> str:
    """``template`` with each placeholder replaced by its argument as text."""
    values = _values(template, args, what)
    return string.Template(template).substitute({k: as_text(v) for k, v in values.items()})


def check_topic_part(name: str, value: Any) -> str:
    """``value`` as one topic level's worth of text, or :class:`TemplateError` saying why not."""
    if isinstance(value, dict | list):
        raise TemplateError(f"argument {name!r} must be a plain value to go into a topic")
    text = as_text(value)
    if not text:
        raise TemplateError(f"argument {name!r} is empty; it cannot name a topic")
    for bad in _FORBIDDEN_IN_TOPIC:
        if bad in text:
            shown = "NUL" if bad == "\x00" else repr(bad)
            raise TemplateError(f"argument {name!r} may not contain {shown} in a topic")
    if ".." in text or text.startswith("$"):
        raise TemplateError(f"argument {name!r} may not contain '..' or start with '$'")
    if len(text) > MAX_TOPIC_PART or not text.isprintable():
        raise TemplateError(f"argument {name!r} is not a short printable name")
    return text


def check_topic_template(template: str) -> list[str]:
    """Check a topic template's fixed parts; returns its placeholders."""
    names = placeholders(template)
    fixed = string.Template(template).safe_substitute(dict.fromkeys(names, "x"))
    if not fixed or fixed.startswith("$"):
        raise TemplateError(f"{template!r} is not a topic to publish or read")
    for bad in ("#", "+", "\x00"):
        if bad in fixed:
            raise TemplateError(f"{template!r} may not contain {bad!r}: name one topic")
    if "" in fixed.split("/"):
        raise TemplateError(f"{template!r} has an empty topic level")
    return names


def render_topic(template: str, args: Mapping[str, Any]) -> str:
    """The topic ``template`` names for ``args``; every filled part checked for injection."""
    values = _values(template, args, "topic")
    parts = {name: check_topic_part(name, value) for name, value in values.items()}
    return string.Template(template).substitute(parts)


def subscription_filter(template: str) -> str:
    """The MQTT filter matching every topic ``template`` can name (``+`` per filled level)."""
    # A placeholder cannot span a "/", so each level can be judged on its own.
    return "/".join("+" if placeholders(level) else level for level in template.split("/"))


def render_structure(value: Any, args: Mapping[str, Any]) -> Any:
    """Fill a structured template: a string that is exactly one placeholder takes the typed
    argument (so ``"${on}"`` stays a boolean); other strings are filled as text."""
    if isinstance(value, str):
        names = placeholders(value)
        if len(names) == 1 and value.strip() in (f"${names[0]}", f"${{{names[0]}}}"):
            return _values(value, args, "payload")[names[0]]
        return render_text(value, args, "payload")
    if isinstance(value, Mapping):
        return {key: render_structure(item, args) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [render_structure(item, args) for item in value]
    return value
