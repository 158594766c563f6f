"""Tool calls that go wrong become error payloads, never exceptions."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from services.tools.registry import ToolConfigError, ToolRegistry, ToolSpec


async def double(args: dict[str, Any]) -> int:
    return int(args["n"]) * 2


async def boom(args: dict[str, Any]) -> None:
    raise RuntimeError("relay stuck")


async def hang(args: dict[str, Any]) -> None:
    await asyncio.Event().wait()


SCHEMA = {"type": "object", "properties": {"n": {"type": "integer"}}, "required": ["n"]}


@pytest.fixture
def registry() -> ToolRegistry:
    return ToolRegistry(
        [
            ToolSpec("double", "doubles n", double, SCHEMA),
            ToolSpec("boom", "fails", boom),
            ToolSpec("hang", "never returns", hang, timeout_s=0.05),
        ]
    )


async def test_a_good_call_returns_output(registry: ToolRegistry) -> None:
    outcome = await registry.call("double", {"n": 21})
    assert outcome.ok
    assert outcome.payload == {"output": 42}


@pytest.mark.parametrize(
    ("name", "args", "message"),
    [
        ("nope", {}, "unknown tool 'nope'; the tools are: boom, double, hang"),
        ("double", {}, "invalid arguments: arguments: 'n' is a required property"),
        ("double", {"n": "x"}, "invalid arguments: n: 'x' is not of type 'integer'"),
        ("boom", {}, "boom failed: relay stuck"),
        ("hang", {}, "hang did not finish within 0.05 s"),
    ],
)
async def test_failures_become_error_payloads(
    registry: ToolRegistry, name: str, args: dict[str, Any], message: str
) -> None:
    outcome = await registry.call(name, args)
    assert not outcome.ok
    assert outcome.payload == {"error": message}


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        (ToolSpec("bad name", "", double), "name must be"),
        (
            ToolSpec("t", "", double, {"type": "object", "properties": 3}),
            "invalid parameters schema",
        ),
        (ToolSpec("t", "", double, {"type": "string"}), "must be of type object"),
        (ToolSpec("t", "", double, timeout_s=0), "timeout must be positive"),
    ],
)
def test_bad_tool_declarations_name_the_tool(spec: ToolSpec, message: str) -> None:
    with pytest.raises(ToolConfigError, match=message):
        ToolRegistry([spec])


def test_a_tool_declared_twice_is_refused() -> None:
    with pytest.raises(ToolConfigError, match="declared twice"):
        ToolRegistry([ToolSpec("t", "", double), ToolSpec("t", "", double)])
