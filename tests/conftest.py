"""Fixtures shared by every test: the local Live stand-in, SDK clients that trust it, a broker."""

from __future__ import annotations

import shutil
import ssl
import tempfile
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
from google import genai
from google.genai import types

from services.emulator.background import background_emulator
from services.emulator.scenario import Scenario, scenario_from_dict
from services.emulator.server import Emulator, EmulatorSettings
from services.testbed.mosquitto import Mosquitto
from tests.alsa_pcms import install_test_pcms

API_KEY = "test-key"


_ALSA_HOME = Path(tempfile.mkdtemp(prefix="plv-alsa-"))


def pytest_configure(config: pytest.Config) -> None:
    """Define the test ALSA PCMs before anything in this process opens one."""
    install_test_pcms(_ALSA_HOME)


def pytest_unconfigure(config: pytest.Config) -> None:
    """Remove the test ALSA configuration."""
    shutil.rmtree(_ALSA_HOME, ignore_errors=True)


EmulatorFactory = Callable[..., AbstractAsyncContextManager[Emulator]]


def sdk_client(emulator: Emulator, api_key: str = API_KEY) -> genai.Client:
    """A real google-genai client pointed at the stand-in, trusting only its certificate."""
    context = ssl.create_default_context(cafile=str(emulator.settings.cert_out))
    return genai.Client(
        api_key=api_key,
        http_options=types.HttpOptions(
            base_url=emulator.base_url,
            api_version="v1beta",
            async_client_args={"ssl": context},
        ),
    )


def live_config(
    manual: bool = True, resumption: bool = True, tools: tuple[str, ...] = ()
) -> types.LiveConnectConfig:
    """The connect config a client of the stand-in typically uses, declaring ``tools`` (the
    stand-in's model calls only declared functions)."""
    declared = [
        types.FunctionDeclaration(name=name, description=f"test function {name}") for name in tools
    ]
    return types.LiveConnectConfig(
        response_modalities=[types.Modality.AUDIO],
        tools=[types.Tool(function_declarations=declared)] if declared else None,
        realtime_input_config=types.RealtimeInputConfig(
            automatic_activity_detection=types.AutomaticActivityDetection(disabled=manual)
        ),
        session_resumption=types.SessionResumptionConfig() if resumption else None,
        output_audio_transcription=types.AudioTranscriptionConfig(),
    )


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[Mosquitto]:
    """A real mosquitto on free loopback ports; stopped by its PID at the end."""
    mosquitto = Mosquitto(tmp_path / "broker")
    mosquitto.start()
    try:
        yield mosquitto
    finally:
        mosquitto.stop()


@pytest.fixture
def emulator_factory(tmp_path: Path) -> EmulatorFactory:
    """Start stand-ins on free loopback ports, each on its own loop in a thread (as the real
    service is apart from the client); each is stopped when its block ends."""
    return emulator_factory_in(tmp_path)


def emulator_factory_in(tmp_path: Path) -> EmulatorFactory:
    """The :func:`emulator_factory` fixture's factory, writing certificates and traces
    under ``tmp_path`` (for runs outside pytest: ``make fuzz``)."""
    counter = iter(range(1_000_000))

    @asynccontextmanager
    async def start(
        scenario: Scenario | dict[str, Any], pace: float = 0.0, **settings: Any
    ) -> AsyncIterator[Emulator]:
        n = next(counter)
        if isinstance(scenario, dict):
            scenario = scenario_from_dict(scenario)
        em_settings = EmulatorSettings(
            scenario=scenario,
            cert_out=tmp_path / f"emulator-{n}.pem",
            api_key=API_KEY,
            trace_path=tmp_path / f"trace-{n}.jsonl",
            pace=pace,
            **settings,
        )
        async with background_emulator(em_settings) as em:
            yield em

    return start


SILENCE_20MS = b"\x00\x00" * 320


def loud_20ms(amplitude: int = 4000) -> bytes:
    """20 ms of a square wave loud enough for the stand-in's automatic speech detection."""
    half = (amplitude.to_bytes(2, "little", signed=True) * 20) + (
        (-amplitude).to_bytes(2, "little", signed=True) * 20
    )
    return half * 8


def audio_blob(pcm: bytes) -> types.Blob:
    """16 kHz PCM as the SDK's realtime audio blob."""
    return types.Blob(data=pcm, mime_type="audio/pcm;rate=16000")
