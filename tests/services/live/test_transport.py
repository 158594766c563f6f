"""The transport seam: the SDK's and websockets' private attributes the send path reads."""

from __future__ import annotations

import asyncio
import logging
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from google.genai.live import AsyncSession
from websockets.asyncio.messages import Assembler

from services.live import session as session_module
from services.live import transport
from services.live.transport import check_seam, unread_frames
from tests.conftest import EmulatorFactory, live_config, sdk_client
from tests.services.live.harness import Recorder, new_session, running

DAEMON = Path(sys.executable).with_name("pi-live-voice")


async def test_the_send_path_sees_frames_the_receive_loop_has_not_read(
    emulator_factory: EmulatorFactory,
) -> None:
    async with emulator_factory({"turns": []}) as em:
        client = sdk_client(em)
        async with client.aio.live.connect(model="m", config=live_config()) as raw:
            # The stand-in sends a resumption handle right after setupComplete.
            for _ in range(200):
                if unread_frames(raw):
                    break
                await asyncio.sleep(0.01)
            assert unread_frames(raw)
            async with asyncio.timeout(5):
                await anext(aiter(raw.receive()))
            assert not unread_frames(raw)


async def test_the_seam_holds_on_the_pinned_versions() -> None:
    assert await check_seam() is None


def _session_without_ws(monkeypatch: pytest.MonkeyPatch) -> None:
    """An SDK release that renamed ``AsyncSession._ws``."""
    original = AsyncSession.__init__

    def init(self: AsyncSession, *args: Any, **kwargs: Any) -> None:
        original(self, *args, **kwargs)
        self._websocket = self.__dict__.pop("_ws")  # type: ignore[attr-defined]

    monkeypatch.setattr(AsyncSession, "__init__", init)


def _assembler_without_frames(monkeypatch: pytest.MonkeyPatch) -> None:
    """A websockets release that keeps received frames elsewhere."""
    original = Assembler.__init__

    def init(self: Assembler, *args: Any, **kwargs: Any) -> None:
        original(self, *args, **kwargs)
        self.__dict__["pending"] = self.__dict__.pop("frames")

    monkeypatch.setattr(Assembler, "__init__", init)


@pytest.mark.parametrize(
    ("breakage", "message"),
    [
        (_session_without_ws, "google-genai's AsyncSession no longer keeps its websocket in _ws"),
        (
            _assembler_without_frames,
            "websockets' connection no longer keeps received frames in recv_messages.frames",
        ),
    ],
)
async def test_a_broken_seam_fails_the_check_with_what_moved(
    monkeypatch: pytest.MonkeyPatch, breakage: Any, message: str
) -> None:
    breakage(monkeypatch)
    assert await check_seam() == message


async def test_the_session_says_a_broken_seam_at_its_start(
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    emulator_factory: EmulatorFactory,
) -> None:
    # The SDK cannot run with its websocket gone, so the check's answer is given here; the
    # check itself is proven broken above.
    async def broken() -> str:
        return "what moved"

    monkeypatch.setattr(session_module, "check_seam", broken)
    async with emulator_factory({"turns": []}) as em:
        session = new_session(em, [], Recorder())
        async with running(session):
            await session.wait_connected()
    [record] = [r for r in caplog.records if getattr(r, "TRANSPORT_SEAM", None) == "broken"]
    assert record.levelno == logging.ERROR
    assert record.getMessage() == f"transport seam broken: what moved; {transport.SEAM_ADVICE}"


def test_check_config_proves_the_seam(tmp_path: Path) -> None:
    config = tmp_path / "config.toml"
    config.write_text("[button]\npin = false\n")
    done = subprocess.run(
        [str(DAEMON), "check-config", "--config", str(config)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert "transport seam: OK" in done.stdout
