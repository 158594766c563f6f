"""A local stand-in for Home Assistant's REST API, with the real endpoints' shapes and failures.

``POST /api/services/<domain>/<service>`` answers 200 with the list of states the call
changed; ``GET /api/states/<entity_id>`` answers the state, or 404 ``{"message": "Entity not
found."}``; a wrong Bearer token gets 401 with the text body ``401: Unauthorized``. ``delay_s``
makes every answer slow. Minimal HTTP/1.1 on ``asyncio.start_server``, one request per
connection.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from dataclasses import dataclass, field
from typing import Any

TOKEN = "ha-long-lived-token"
NOW = "2026-01-05T10:00:00.000000+00:00"
SERVICES = {
    ("light", "turn_on"): "on",
    ("light", "turn_off"): "off",
    ("cover", "open_cover"): "opening",
}
READ_LIMIT = 64 * 1024


def state(entity_id: str, value: str, **attributes: Any) -> dict[str, Any]:
    """A state object as Home Assistant serialises it."""
    return {
        "entity_id": entity_id,
        "state": value,
        "attributes": {"friendly_name": entity_id.split(".")[1].title(), **attributes},
        "last_changed": NOW,
        "last_reported": NOW,
        "last_updated": NOW,
        "context": {"id": "01JGQ0000000000000000000", "parent_id": None, "user_id": None},
    }


@dataclass(frozen=True)
class Request:
    """One request the server received."""

    method: str
    path: str
    headers: dict[str, str]
    body: Any


@dataclass
class FakeHomeAssistant:
    """The server. Use as an async context manager; ``url`` is where it listens."""

    delay_s: float = 0.0
    states: dict[str, dict[str, Any]] = field(
        default_factory=lambda: {
            "light.kitchen": state("light.kitchen", "off", brightness=None),
            "cover.garage": state("cover.garage", "closed"),
            "sensor.outside": state("sensor.outside", "4.5", unit_of_measurement="°C"),
        }
    )
    requests: list[Request] = field(default_factory=list)
    port: int = 0
    _server: asyncio.Server | None = None
    _handlers: set[asyncio.Task[Any]] = field(default_factory=set)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def __aenter__(self) -> FakeHomeAssistant:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        self.port = int(self._server.sockets[0].getsockname()[1])
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.close()
        # Python 3.11 does not wait for handlers on close: end the slow ones here.
        for task in list(self._handlers):
            task.cancel()
        for task in list(self._handlers):
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await self._server.wait_closed()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._handlers.add(task)
        try:
            async with asyncio.timeout(10):
                request = await self._read(reader)
            status, body, kind = self._answer(request)
            await asyncio.sleep(self.delay_s)
            data = body.encode()
            head = (
                f"HTTP/1.1 {status}\r\nContent-Type: {kind}\r\nContent-Length: {len(data)}\r\n"
                "Connection: close\r\n\r\n"
            )
            writer.write(head.encode() + data)
            await writer.drain()
        except (ConnectionError, TimeoutError, asyncio.IncompleteReadError):
            pass
        finally:
            self._handlers.discard(task)
            writer.close()

    async def _read(self, reader: asyncio.StreamReader) -> Request:
        head = await reader.readuntil(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        method, path, _ = lines[0].split(" ", 2)
        headers = {}
        for line in lines[1:]:
            if ":" in line:
                name, value = line.split(":", 1)
                headers[name.strip().lower()] = value.strip()
        length = min(int(headers.get("content-length", "0")), READ_LIMIT)
        raw = await reader.readexactly(length) if length else b""
        body = json.loads(raw) if raw else None
        request = Request(method, path, headers, body)
        self.requests.append(request)
        return request

    def _answer(self, request: Request) -> tuple[str, str, str]:
        if request.headers.get("authorization") != f"Bearer {TOKEN}":
            return "401 Unauthorized", "401: Unauthorized", "text/plain; charset=utf-8"
        parts = request.path.split("/")
        if request.method == "GET" and parts[:3] == ["", "api", "states"] and len(parts) == 4:
            found = self.states.get(parts[3])
            if found is None:
                return _json("404 Not Found", {"message": "Entity not found."})
            return _json("200 OK", found)
        if request.method == "POST" and parts[:3] == ["", "api", "services"] and len(parts) == 5:
            new = SERVICES.get((parts[3], parts[4]))
            if new is None:
                return _json(
                    "400 Bad Request", {"message": f"Service {parts[3]}.{parts[4]} not found."}
                )
            entity = (request.body or {}).get("entity_id")
            if entity not in self.states:
                return _json("200 OK", [])  # an unknown entity changes nothing
            extra = {k: v for k, v in (request.body or {}).items() if k != "entity_id"}
            self.states[entity] = state(entity, new, **extra)
            return _json("200 OK", [self.states[entity]])
        return _json("404 Not Found", {"message": "Not found."})


def _json(status: str, body: Any) -> tuple[str, str, str]:
    return status, json.dumps(body), "application/json"
