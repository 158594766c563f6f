"""The tools the model may call: declarations, argument validation and safe execution.

A tool is a name, a description for the model, a JSON schema for its arguments, an async
handler and a time-out. :meth:`ToolRegistry.call` never raises (except on cancellation): an
unknown tool, arguments that break the schema, an exception or a time-out all become an
``{"error": ...}`` payload the model can speak about.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any
from urllib.parse import unquote

from jsonschema import Draft202012Validator
from jsonschema.exceptions import SchemaError

log = logging.getLogger(__name__)

ToolHandler = Callable[[dict[str, Any]], Awaitable[Any]]
EMPTY_SCHEMA: dict[str, Any] = {"type": "object", "properties": {}}
# A tool's time-out unless its declaration gives one.
DEFAULT_TIMEOUT_S = 5.0
# Bounds on a parameters schema: a model's arguments are small, flat objects.
MAX_SCHEMA_DEPTH = 32
MAX_SCHEMA_NODES = 5000


class Behavior(StrEnum):
    """Whether the model waits for a call's answer (blocking) or talks on (non_blocking)."""

    BLOCKING = "blocking"
    NON_BLOCKING = "non_blocking"


class Scheduling(StrEnum):
    """When the model takes up a non-blocking call's answer."""

    SILENT = "silent"
    WHEN_IDLE = "when_idle"
    INTERRUPT = "interrupt"


# How much of a refused call's arguments its warning quotes.
ARGS_EXCERPT_CHARS = 160


class ToolRefused(Exception):
    """A call a tool will not or cannot carry out (an argument that would escape its topic, a
    rate limit, an unreachable broker), for the reason its message gives. Expected, so it is
    logged as one warning line, without a traceback."""


class ToolConfigError(ValueError):
    """A tool that cannot be declared (bad name, bad schema, duplicate)."""


@dataclass(frozen=True)
class ToolSpec:
    """One callable tool. ``handler`` receives the validated arguments."""

    name: str
    description: str
    handler: ToolHandler
    parameters: Mapping[str, Any] = field(default_factory=lambda: dict(EMPTY_SCHEMA))
    timeout_s: float = DEFAULT_TIMEOUT_S
    # None: the model profile's default behaviour; scheduling applies to non-blocking calls.
    behavior: Behavior | None = None
    scheduling: Scheduling | None = None
    # Running it twice does no harm (a read, or setting a state): a call replayed after a
    # resumption may then run again for a fresh answer instead of getting the first one.
    idempotent: bool = False


@dataclass(frozen=True)
class ToolOutcome:
    """What a call produced: the payload for the model and whether it is an error."""

    payload: dict[str, Any]
    ok: bool


def _error(message: str) -> ToolOutcome:
    return ToolOutcome({"error": message}, ok=False)


def _pointer(schema: Any, ref: str) -> bool:
    """True when the local JSON pointer ``ref`` (``#/$defs/x``) names a part of ``schema``."""
    node = schema
    for raw in ref[2:].split("/") if ref != "#" else ():
        token = unquote(raw).replace("~1", "/").replace("~0", "~")
        if isinstance(node, dict) and token in node:
            node = node[token]
        elif isinstance(node, list) and token.isdigit() and int(token) < len(node):
            node = node[int(token)]
        else:
            return False
    return True


def schema_problem(schema: Any) -> str | None:
    """Why ``schema`` cannot be a tool's parameters schema, or None when it can.

    Checked before the first call, so that validating the model's arguments cannot raise:
    an object schema (not ``true``/``false``), bounded in depth and size, valid for JSON
    Schema 2020-12 (patterns included), every ``$ref`` a local pointer that resolves. The
    callers check that it describes an object."""
    if not isinstance(schema, dict):
        what = str(schema).lower() if isinstance(schema, bool) else type(schema).__name__
        return f"must be a JSON schema object, not {what}"
    stack: list[tuple[Any, int]] = [(schema, 1)]
    nodes = 0
    while stack:
        node, depth = stack.pop()
        nodes += 1
        if depth > MAX_SCHEMA_DEPTH:
            return f"nested deeper than {MAX_SCHEMA_DEPTH} levels"
        if nodes > MAX_SCHEMA_NODES:
            return f"larger than {MAX_SCHEMA_NODES} values"
        if isinstance(node, dict):
            for key in ("$dynamicRef", "$recursiveRef"):
                if key in node:
                    return f"{key} is not supported; use a local $ref"
            if "$id" in node and node is not schema:
                return "$id inside the schema is not supported"
            ref = node.get("$ref")
            if ref is not None and (
                not isinstance(ref, str)
                or not (ref == "#" or ref.startswith("#/"))
                or not _pointer(schema, ref)
            ):
                return f"$ref {str(ref)[:60]!r} does not resolve to a part of this schema"
            stack.extend((value, depth + 1) for value in node.values())
        elif isinstance(node, list):
            stack.extend((value, depth + 1) for value in node)
    try:
        Draft202012Validator.check_schema(schema)
    except SchemaError as exc:
        return exc.message
    return None


def _excerpt(args: Any) -> str:
    """The arguments as escaped one-line JSON, cut to :data:`ARGS_EXCERPT_CHARS`."""
    text = json.dumps(args, ensure_ascii=True, default=repr)
    if len(text) <= ARGS_EXCERPT_CHARS:
        return text
    return f"{text[:ARGS_EXCERPT_CHARS]}... ({len(text)} chars)"


def _refused(name: str, args: Any, reason: str) -> None:
    log.warning(
        "tool %s refused %s: %s", name, _excerpt(args), reason, extra={"TOOL_NAME": name[:64]}
    )


def _describe(error: Any) -> str:
    path = "/".join(str(p) for p in error.absolute_path)
    return f"{path or 'arguments'}: {error.message}"


class ToolRegistry:
    """The set of tools a session declares to the model."""

    def __init__(self, specs: Iterable[ToolSpec] = ()) -> None:
        self._specs: dict[str, ToolSpec] = {}
        self._validators: dict[str, Draft202012Validator] = {}
        for spec in specs:
            self.add(spec)

    def add(self, spec: ToolSpec) -> None:
        """Register ``spec``; raises :class:`ToolConfigError` naming the tool at fault."""
        if not spec.name.replace("_", "").isalnum() or len(spec.name) > 64:
            raise ToolConfigError(f"tool {spec.name!r}: name must be letters, digits and _")
        if spec.name in self._specs:
            raise ToolConfigError(f"tool {spec.name!r}: declared twice")
        if spec.timeout_s <= 0:
            raise ToolConfigError(f"tool {spec.name!r}: timeout must be positive")
        parameters = spec.parameters
        problem = schema_problem(
            dict(parameters) if isinstance(parameters, Mapping) else parameters
        )
        if problem is not None:
            raise ToolConfigError(f"tool {spec.name!r}: invalid parameters schema: {problem}")
        if spec.parameters.get("type") != "object":
            raise ToolConfigError(f"tool {spec.name!r}: parameters schema must be of type object")
        self._specs[spec.name] = spec
        self._validators[spec.name] = Draft202012Validator(dict(spec.parameters))

    def __contains__(self, name: object) -> bool:
        return name in self._specs

    def __iter__(self) -> Any:
        return iter(self._specs.values())

    def __len__(self) -> int:
        return len(self._specs)

    def spec(self, name: str) -> ToolSpec | None:
        """The tool called ``name``, if declared."""
        return self._specs.get(name)

    def declarations(self) -> list[dict[str, Any]]:
        """Function declarations as plain dicts (name, description, parametersJsonSchema)."""
        return [
            {
                "name": s.name,
                "description": s.description,
                "parameters_json_schema": dict(s.parameters),
            }
            for s in self._specs.values()
        ]

    async def call(self, name: str, args: Mapping[str, Any] | None) -> ToolOutcome:
        """Run tool ``name`` with ``args``; every failure becomes an error payload."""
        spec = self._specs.get(name)
        arguments = dict(args or {})
        if spec is None:
            known = ", ".join(sorted(self._specs)) or "none"
            _refused(repr(name)[:64], arguments, "no such tool")
            return _error(f"unknown tool {name!r}; the tools are: {known}")
        problems = sorted(self._validators[name].iter_errors(arguments), key=lambda e: e.path)
        if problems:
            reason = "invalid arguments: " + "; ".join(_describe(p) for p in problems[:3])
            _refused(name, arguments, reason)
            return _error(reason)
        try:
            async with asyncio.timeout(spec.timeout_s):
                result = await spec.handler(arguments)
        except TimeoutError:
            log.warning("tool %s timed out after %.1f s", name, spec.timeout_s)
            return _error(f"{name} did not finish within {spec.timeout_s:g} s")
        except ToolRefused as exc:
            _refused(name, arguments, str(exc))
            return _error(f"{name} failed: {exc}")
        except Exception as exc:
            log.warning("tool %s failed: %s", name, exc, exc_info=True)
            return _error(f"{name} failed: {exc}")
        return ToolOutcome({"output": result}, ok=True)
