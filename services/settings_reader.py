"""The one reader of config tables, for every section. Standard library only.

A :class:`Table` reads one TOML table: each key is read with its kind and its rule (or, for a
key without one, :func:`~services.settings_rules.default_rule`), so no value reaches the
daemon unchecked; :meth:`Table.done` refuses the keys nobody asked for. Every fault is a
:class:`SettingError` naming the key (``tools[0].parameters``) and the reason; the config
loader adds the file's name. Secret values (keys naming a password or token) are never
echoed.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from services.settings_rules import (
    FileProblem,
    Rule,
    between,
    default_rule,
    excerpt,
    regular_file,
)

T = TypeVar("T")
_WORDS = {
    bool: "true or false",
    int: "an integer",
    float: "a number",
    str: "a string",
    dict: "a table",
    list: "an array",
}


class SettingError(ValueError):
    """A setting that cannot be used: ``key`` names it, ``reason`` says why."""

    def __init__(self, key: str, reason: str) -> None:
        super().__init__(f"{key}: {reason}" if key else reason)
        self.key = key
        self.reason = reason


def kinds_words(kinds: tuple[type, ...]) -> str:
    """``(int, float)`` as ``an integer or a number``."""
    return " or ".join(_WORDS.get(k, k.__name__) for k in kinds)


class Table:
    """Reads one table, remembering which keys were asked for (to reject the others)."""

    def __init__(self, name: str, data: Any) -> None:
        if not isinstance(data, dict):
            raise SettingError(name, f"must be a table, got {type(data).__name__}")
        self.name = name
        self.data: dict[str, Any] = data
        self.seen: set[str] = set()

    def key(self, key: str) -> str:
        """The full name of ``key`` (``live.model``)."""
        return f"{self.name}.{key}" if self.name else key

    def fail(self, key: str, reason: str) -> SettingError:
        """The error for ``key``, to raise."""
        return SettingError(self.key(key), reason)

    def get(
        self,
        key: str,
        kind: type[T] | tuple[type, ...],
        default: T,
        check: Rule | None = None,
    ) -> T:
        """``key``'s value, of one of the ``kind`` types and meeting ``check`` (or the
        default rule); ``default`` when absent."""
        self.seen.add(key)
        if key not in self.data:
            return default
        value = self.data[key]
        kinds = kind if isinstance(kind, tuple) else (kind,)
        secret = "password" in key or "token" in key
        if (isinstance(value, bool) and bool not in kinds) or not isinstance(value, kinds):
            shown = "" if secret else f", got {excerpt(value)}"
            raise self.fail(key, f"expected {kinds_words(kinds)}{shown}")
        if (problem := (check or default_rule)(value)) is not None:
            raise self.fail(key, "is not usable (the value is not shown)" if secret else problem)
        return value  # type: ignore[return-value]

    def optional(self, key: str, kind: type[T], check: Rule | None = None) -> T | None:
        """``key``'s value, or None when absent."""
        value: T | None = self.get(key, (kind,), None, check)
        return value

    def text(self, key: str, default: str | None = None, rule: Rule | None = None) -> str:
        """A string that must be there (or defaulted) and not blank."""
        value = self.get(key, (str,), default, rule)
        if value is None or not value.strip():
            raise self.fail(key, "is required" if value is None else "must not be empty")
        return value

    def number(self, key: str, default: float, low: float, high: float) -> float:
        """A finite number between ``low`` and ``high``."""
        value = self.get(key, (int, float), default, between(low, high))
        return float(value)

    def integer(self, key: str, default: int, low: int, high: int) -> int:
        """An integer (not a fraction) between ``low`` and ``high``."""
        value: int = self.get(key, (int,), default, between(low, high))
        return value

    def path(self, key: str, check: Callable[[str], Path] = regular_file) -> Path | None:
        """The path of a file that ``check`` accepts (a regular file), or None when absent."""
        value = self.get(key, (str,), None, lambda v: None)
        if value is None:
            return None
        try:
            return check(value)
        except FileProblem as exc:
            raise self.fail(key, str(exc)) from exc

    def done(self) -> None:
        """Refuse the first key nobody asked for."""
        unknown = sorted(set(self.data) - self.seen)
        if unknown:
            raise self.fail(unknown[0], "unknown key")
