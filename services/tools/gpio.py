"""The GPIO tools: ``set_output`` and ``get_outputs`` over the outputs the config declares.

The pins themselves live on the device side; the tools reach them only through
:class:`OutputPort`, so this wing imports nothing from ``device``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol

from services.tools.registry import Behavior, Scheduling, ToolSpec


class OutputPort(Protocol):
    """The device's declared outputs, as the tools drive them."""

    def described(self) -> Mapping[str, str]:
        """Each output's name and what it is, in the words the model reads."""

    def state(self, name: str) -> dict[str, Any]:
        """Output ``name``'s state as the model sees it."""

    def set(self, name: str, on: bool | None, level: float | None) -> dict[str, Any]:
        """Drive output ``name``; its new state. ValueError for a level it cannot take."""


def gpio_tools(
    outputs: OutputPort,
    timeout_s: float,
    behavior: Behavior | None = None,
    scheduling: Scheduling | None = None,
) -> list[ToolSpec]:
    """``set_output`` and ``get_outputs``, with the declared names as the only choices."""
    descriptions = outputs.described()
    if not descriptions:
        return []
    names = sorted(descriptions)
    described = "; ".join(f"{n}: {descriptions[n]}" for n in names)

    async def set_output(args: dict[str, Any]) -> dict[str, Any]:
        return outputs.set(args["name"], args.get("on"), args.get("level"))

    async def get_outputs(args: dict[str, Any]) -> list[dict[str, Any]]:
        return [outputs.state(n) for n in names]

    return [
        ToolSpec(
            name="set_output",
            description=f"Switch or dim one of the device's outputs ({described}).",
            handler=set_output,
            parameters={
                "type": "object",
                "properties": {
                    "name": {"type": "string", "enum": names},
                    "on": {"type": "boolean"},
                    "level": {"type": "number", "minimum": 0, "maximum": 1},
                },
                "required": ["name"],
                "additionalProperties": False,
            },
            timeout_s=timeout_s,
            behavior=behavior,
            scheduling=scheduling,
            # Setting a state, or reading them all: a second run changes nothing.
            idempotent=True,
        ),
        ToolSpec(
            name="get_outputs",
            description="Read the state of every output of the device.",
            handler=get_outputs,
            timeout_s=timeout_s,
            behavior=behavior,
            scheduling=scheduling,
            idempotent=True,
        ),
    ]
