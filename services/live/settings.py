"""Settings of the Live session, and the SDK objects built from them."""

from __future__ import annotations

import logging
import ssl
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from services.live.inbound import MAX_FRAME_BYTES, MAX_FRAMES_PER_SECOND
from services.live.profiles import ModelProfile, SetupRequest, plan_setup, profile_for
from services.live.reconnect import BackoffSettings
from services.tools.registry import Behavior, Scheduling, ToolRegistry

log = logging.getLogger(__name__)

if TYPE_CHECKING:
    # The SDK costs ~0.4 s to import: only the commands that talk to the service load it, in
    # the two builders below, so the config can be read without it.
    from google import genai
    from google.genai import types


@dataclass(frozen=True)
class LiveSettings:
    """Everything the session needs to connect and behave; the API key is passed apart."""

    model: str = "gemini-3.8-live"
    voice: str | None = None
    # Optional setup fields; each is sent only where the model's profile takes it.
    thinking_budget: int | None = None
    thinking_level: str | None = None
    proactive_audio: bool | None = None
    affective_dialog: bool | None = None
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
    # websockets' keepalive, set explicitly: the service may take 8 to 30 s to answer a ping,
    # past websockets' 20 s default time-out ("1011 keepalive ping timeout").
    ping_interval_s: float = 20.0
    ping_timeout_s: float = 60.0
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

    @property
    def profile(self) -> ModelProfile:
        """The profile of the configured model."""
        return profile_for(self.model)

    @property
    def setup_request(self) -> SetupRequest:
        """The optional setup fields asked for."""
        return SetupRequest(
            thinking_budget=self.thinking_budget,
            thinking_level=self.thinking_level,
            proactive_audio=self.proactive_audio,
            affective_dialog=self.affective_dialog,
        )


def tool_behaviors(
    profile: ModelProfile, tools: ToolRegistry
) -> dict[str, tuple[Behavior, Scheduling | None]]:
    """Each tool's effective behaviour and scheduling on ``profile``; raises
    :class:`~services.live.profiles.ProfileError` for one the model cannot take."""
    return {spec.name: profile.tool_behavior(spec.behavior, spec.scheduling) for spec in tools}


def build_client(settings: LiveSettings, api_key: str) -> genai.Client:
    """A google-genai client for ``settings``; trusts ``ca_file`` when one is set."""
    from google import genai
    from google.genai import types

    # The SDK hands async_client_args that websockets.connect takes on to it (and leaves
    # them out of its HTTP clients).
    client_args: dict[str, object] = {
        "ping_interval": settings.ping_interval_s,
        "ping_timeout": settings.ping_timeout_s,
    }
    if settings.ca_file is not None:
        client_args["ssl"] = ssl.create_default_context(cafile=str(settings.ca_file))
    return genai.Client(
        api_key=api_key,
        http_options=types.HttpOptions(
            base_url=settings.base_url,
            api_version=settings.api_version,
            async_client_args=client_args,
        ),
    )


def build_config(
    settings: LiveSettings, tools: ToolRegistry, handle: str | None
) -> types.LiveConnectConfig:
    """The setup sent at connect: model behaviour, tools, turn taking, resumption."""
    from google.genai import types

    speech = None
    if settings.voice:
        speech = types.SpeechConfig(
            voice_config=types.VoiceConfig(
                prebuilt_voice_config=types.PrebuiltVoiceConfig(voice_name=settings.voice)
            )
        )
    profile = settings.profile
    behaviors = tool_behaviors(profile, tools)
    declared = []
    for d in tools.declarations():
        behavior = profile.declared_behavior(behaviors[d["name"]][0])
        declared.append(
            types.FunctionDeclaration(
                name=d["name"],
                description=d["description"],
                parameters_json_schema=d["parameters_json_schema"],
                behavior=None if behavior is None else types.Behavior(behavior.value.upper()),
            )
        )
    plan = plan_setup(profile, settings.setup_request)
    for key, reason in plan.left_out:
        log.warning("[live] %s left out of the setup: %s", key, reason)
    thinking = None
    if plan.thinking_budget is not None or plan.thinking_level is not None:
        thinking = types.ThinkingConfig(
            thinking_budget=plan.thinking_budget,
            thinking_level=(
                None
                if plan.thinking_level is None
                else types.ThinkingLevel(plan.thinking_level.upper())
            ),
        )
    return types.LiveConnectConfig(
        response_modalities=[types.Modality.AUDIO],
        speech_config=speech,
        system_instruction=settings.system_instruction,
        thinking_config=thinking,
        proactivity=(
            None
            if plan.proactive_audio is None
            else types.ProactivityConfig(proactive_audio=plan.proactive_audio)
        ),
        enable_affective_dialog=plan.affective_dialog,
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
