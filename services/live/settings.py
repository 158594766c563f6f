"""Settings of the Live session, and the SDK objects built from them."""

from __future__ import annotations

import ssl
from dataclasses import dataclass, field
from pathlib import Path

from google import genai
from google.genai import types

from services.live.inbound import MAX_FRAME_BYTES, MAX_FRAMES_PER_SECOND
from services.live.reconnect import BackoffSettings
from services.tools.registry import ToolRegistry


@dataclass(frozen=True)
class LiveSettings:
    """Everything the session needs to connect and behave; the API key is passed apart."""

    model: str = "gemini-2.5-flash-native-audio-preview-12-2025"
    voice: str | None = None
    system_instruction: str | None = None
    manual_activity: bool = True
    input_transcription: bool = True
    output_transcription: bool = True
    resumption: bool = True
    context_compression: bool = True
    base_url: str | None = None
    api_version: str = "v1beta"
    ca_file: Path | None = None
    connect_timeout_s: float = 10.0
    # Silence from the service while it owes us an answer, before we call it a stall.
    stall_timeout_s: float = 20.0
    # Reconnect ahead of a goAway deadline when no safe point came sooner.
    go_away_margin_s: float = 1.0
    response_cap_chars: int = 8000
    max_response_bytes: int = 64 * 1024
    # Bounds on what the service may send: a frame over either is a protocol error.
    max_frame_bytes: int = MAX_FRAME_BYTES
    max_frames_per_second: int = MAX_FRAMES_PER_SECOND
    input_rate: int = 16000
    backoff: BackoffSettings = field(default_factory=BackoffSettings)


def build_client(settings: LiveSettings, api_key: str) -> genai.Client:
    """A google-genai client for ``settings``; trusts ``ca_file`` when one is set."""
    client_args: dict[str, object] = {}
    if settings.ca_file is not None:
        client_args["ssl"] = ssl.create_default_context(cafile=str(settings.ca_file))
    return genai.Client(
        api_key=api_key,
        http_options=types.HttpOptions(
            base_url=settings.base_url,
            api_version=settings.api_version,
            async_client_args=client_args or None,
        ),
    )


def build_config(
    settings: LiveSettings, tools: ToolRegistry, handle: str | None
) -> types.LiveConnectConfig:
    """The setup sent at connect: model behaviour, tools, turn taking, resumption."""
    speech = None
    if settings.voice:
        speech = types.SpeechConfig(
            voice_config=types.VoiceConfig(
                prebuilt_voice_config=types.PrebuiltVoiceConfig(voice_name=settings.voice)
            )
        )
    declared = [
        types.FunctionDeclaration(
            name=d["name"],
            description=d["description"],
            parameters_json_schema=d["parameters_json_schema"],
        )
        for d in tools.declarations()
    ]
    return types.LiveConnectConfig(
        response_modalities=[types.Modality.AUDIO],
        speech_config=speech,
        system_instruction=settings.system_instruction,
        tools=[types.Tool(function_declarations=declared)] if declared else None,
        realtime_input_config=types.RealtimeInputConfig(
            automatic_activity_detection=types.AutomaticActivityDetection(
                disabled=settings.manual_activity
            )
        ),
        input_audio_transcription=(
            types.AudioTranscriptionConfig() if settings.input_transcription else None
        ),
        output_audio_transcription=(
            types.AudioTranscriptionConfig() if settings.output_transcription else None
        ),
        session_resumption=(
            types.SessionResumptionConfig(handle=handle) if settings.resumption else None
        ),
        context_window_compression=(
            types.ContextWindowCompressionConfig(sliding_window=types.SlidingWindow())
            if settings.context_compression
            else None
        ),
    )
