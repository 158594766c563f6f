"""Home Assistant's REST API: call a service, read a state; every failure in plain words.

``POST /api/services/<domain>/<service>`` answers with the states the call changed, and
``GET /api/states/<entity_id>`` with one state; both take a long-lived access token as a
Bearer header. A bad token (401), an unknown entity (404), a slow or absent server all become
a :class:`HomeAssistantError` whose message the model can pass on. The token never reaches a
log line or a message.
"""

from __future__ import annotations

import logging
import ssl
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from services.tools.registry import ToolRefused

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class HomeAssistantSettings:
    """Where Home Assistant is, and the token to use. ``token`` never appears in a repr."""

    url: str
    token: str = field(repr=False)
    ca_file: Path | None = None
    timeout_s: float = 5.0


class HomeAssistantError(ToolRefused):
    """A call Home Assistant did not carry out; the message says why."""


def _message(response: httpx.Response) -> str:
    """Home Assistant's own explanation: ``{"message": ...}`` or a short text body."""
    try:
        body = response.json()
    except ValueError:
        return response.text.strip()[:200]
    if isinstance(body, dict) and isinstance(body.get("message"), str):
        return str(body["message"])
    return response.text.strip()[:200]


def _summary(state: Any) -> dict[str, Any]:
    """The parts of a state object the model can use."""
    if not isinstance(state, dict):
        return {"state": state}
    return {
        "entity_id": state.get("entity_id"),
        "state": state.get("state"),
        "attributes": state.get("attributes", {}),
    }


class HomeAssistant:
    """A client of one Home Assistant instance. Close it with :meth:`aclose`."""

    def __init__(
        self, settings: HomeAssistantSettings, transport: httpx.AsyncBaseTransport | None = None
    ) -> None:
        self.settings = settings
        verify: ssl.SSLContext | bool = True
        if settings.ca_file is not None:
            verify = ssl.create_default_context(cafile=str(settings.ca_file))
        self._http = httpx.AsyncClient(
            base_url=settings.url,
            headers={"Authorization": f"Bearer {settings.token}"},
            timeout=settings.timeout_s,
            verify=verify,
            transport=transport,
        )

    async def aclose(self) -> None:
        """Close the connections."""
        await self._http.aclose()

    async def call_service(
        self, domain: str, service: str, data: dict[str, Any], timeout_s: float | None = None
    ) -> list[dict[str, Any]]:
        """Call ``domain.service`` with ``data``; returns the states it changed."""
        what = f"{domain}.{service}"
        body = await self._request(
            "POST", f"/api/services/{domain}/{service}", what, json=data, timeout_s=timeout_s
        )
        # Recent versions answer {"changed_states": [...]} when asked for a service response.
        states = body.get("changed_states", []) if isinstance(body, dict) else body
        if not isinstance(states, list):
            raise HomeAssistantError(f"Home Assistant answered {what} with something unexpected")
        return [_summary(state) for state in states]

    async def state(self, entity_id: str, timeout_s: float | None = None) -> dict[str, Any]:
        """The current state of ``entity_id``."""
        body = await self._request(
            "GET", f"/api/states/{entity_id}", f"entity {entity_id}", timeout_s=timeout_s
        )
        return _summary(body)

    async def _request(
        self,
        method: str,
        path: str,
        what: str,
        *,
        json: Any = None,
        timeout_s: float | None = None,
    ) -> Any:
        timeout = self.settings.timeout_s if timeout_s is None else timeout_s
        where = self.settings.url
        try:
            response = await self._http.request(method, path, json=json, timeout=timeout)
        except httpx.TimeoutException as exc:
            raise HomeAssistantError(
                f"Home Assistant at {where} did not answer within {timeout:g} s"
            ) from exc
        except httpx.ConnectError as exc:
            raise HomeAssistantError(
                f"cannot reach Home Assistant at {where}: the connection was refused or the "
                f"host is down ({exc})"
            ) from exc
        except httpx.HTTPError as exc:
            raise HomeAssistantError(f"talking to Home Assistant at {where} failed: {exc}") from exc
        status = response.status_code
        if status == 401:
            raise HomeAssistantError(
                "Home Assistant refused the access token (401 Unauthorized); "
                "the device needs a new long-lived token"
            )
        if status == 404:
            raise HomeAssistantError(
                f"Home Assistant does not know {what} (404: {_message(response)})"
            )
        if status >= 400:
            raise HomeAssistantError(
                f"Home Assistant refused {what} ({status}: {_message(response)})"
            )
        try:
            return response.json()
        except ValueError as exc:
            raise HomeAssistantError(f"Home Assistant answered {what} with no JSON") from exc
