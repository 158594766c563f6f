"""``pi-live-voice demo``: a spoken request to the local stand-in, answered with a tool call.

Everything runs on this machine: the stand-in serves on a free loopback port, the user's
request is spoken by espeak-ng, the reply audio is written to a WAV file, and the stand-in's
trace is told back as a timeline.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import shutil
import ssl
import subprocess
import time
import wave
from pathlib import Path
from typing import Any

import numpy as np
import soxr
from google import genai
from google.genai import types

from services.emulator.scenario import default_scenario
from services.emulator.server import Emulator, EmulatorSettings
from services.emulator.trace import TraceRecord

REQUEST = "Turn on the kitchen light."
FRAME_BYTES = 640  # 20 ms at 16 kHz, s16le mono


def spoken_request(text: str) -> bytes:
    """``text`` as 16 kHz mono s16le PCM, spoken by espeak-ng (a tone if it is missing)."""
    exe = shutil.which("espeak-ng")
    if exe is None:
        t = np.arange(16000) / 16000
        return (4000 * np.sin(2 * np.pi * 300 * t)).astype("<i2").tobytes()
    out = subprocess.run([exe, "-s", "150", "--stdout", text], capture_output=True, check=True)
    with wave.open(io.BytesIO(out.stdout)) as wav:
        rate = wav.getframerate()
        samples = np.frombuffer(wav.readframes(wav.getnframes()), dtype="<i2")
    return np.asarray(soxr.resample(samples, rate, 16000), dtype="<i2").tobytes()


def describe(record: TraceRecord, start: float) -> str | None:
    """One timeline line for a trace record, or None for the ones not worth a line."""
    at = f"{1000 * (record['t'] - start):7.0f} ms"
    kind = record.get("kind")
    event = record["event"]
    if event == "violation":
        return f"{at}  !! {record['rule']}: {record['detail']}"
    if event == "close":
        return f"{at}  connection closed by {record['by']} ({record.get('code')})"
    if event not in ("in", "out") or kind in (
        "audio",
        "serverContent.audio",
        "serverContent.outputTranscription",
    ):
        return None
    arrow = "device → model" if event == "in" else "model → device"
    extra = f" {record['names']}" if kind in ("toolCall", "toolResponse") else ""
    return f"{at}  {arrow}: {kind}{extra}"


async def converse(emulator: Emulator, out: Path) -> dict[str, Any]:
    """Speak the request, answer the tool call, and collect the reply."""
    context = ssl.create_default_context(cafile=str(emulator.settings.cert_out))
    client = genai.Client(
        api_key=emulator.settings.api_key,
        http_options=types.HttpOptions(
            base_url=emulator.base_url, api_version="v1beta", async_client_args={"ssl": context}
        ),
    )
    config = types.LiveConnectConfig(
        response_modalities=[types.Modality.AUDIO],
        realtime_input_config=types.RealtimeInputConfig(
            automatic_activity_detection=types.AutomaticActivityDetection(disabled=True)
        ),
        output_audio_transcription=types.AudioTranscriptionConfig(),
    )
    pcm = spoken_request(REQUEST)
    reply = bytearray()
    said: list[str] = []
    light = {"kitchen_light": False}
    async with (
        asyncio.timeout(60),
        client.aio.live.connect(model="gemini-live-demo", config=config) as session,
    ):
        await session.send_realtime_input(activity_start=types.ActivityStart())
        for i in range(0, len(pcm), FRAME_BYTES):
            chunk = pcm[i : i + FRAME_BYTES]
            await session.send_realtime_input(
                audio=types.Blob(data=chunk, mime_type="audio/pcm;rate=16000")
            )
            await asyncio.sleep(0.02)
        await session.send_realtime_input(activity_end=types.ActivityEnd())
        done = False
        while not done:
            async for message in session.receive():
                if message.tool_call:
                    answers = []
                    for fc in message.tool_call.function_calls or []:
                        args = fc.args or {}
                        light[str(args.get("name"))] = bool(args.get("on"))
                        answers.append(
                            types.FunctionResponse(
                                id=fc.id, name=fc.name, response={"output": dict(light)}
                            )
                        )
                    await session.send_tool_response(function_responses=answers)
                content = message.server_content
                if message.data:
                    reply += message.data
                if content and content.output_transcription and content.output_transcription.text:
                    said.append(content.output_transcription.text)
                if content and content.turn_complete:
                    done = True
    wav_path = out / "reply.wav"
    with wave.open(str(wav_path), "wb") as wav:
        wav.setnchannels(1)
        wav.setsampwidth(2)
        wav.setframerate(24000)
        wav.writeframes(bytes(reply))
    return {
        "said": "".join(said).strip(),
        "wav": wav_path,
        "seconds": len(reply) / 48000,
        "light": light,
    }


def run_demo(args: argparse.Namespace) -> int:
    """Entry point of the ``demo`` sub-command."""
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    settings = EmulatorSettings(
        scenario=default_scenario(),
        cert_out=out / "emulator-cert.pem",
        port=0,
        trace_path=out / "trace.jsonl",
    )

    async def main() -> dict[str, Any]:
        async with Emulator(settings) as emulator:
            started = time.monotonic()
            result = await converse(emulator, out)
            result["lines"] = [
                line
                for record in emulator.trace.records
                if (line := describe(record, started)) is not None
            ]
            result["violations"] = emulator.trace.select("violation")
            return result

    result = asyncio.run(main())
    print(f"You said: {REQUEST!r}")
    print("Timeline (from the stand-in's trace):")
    for line in result["lines"]:
        print("  " + line)
    print(f"Light states after the tool call: {result['light']}")
    print(f"The model said: {result['said']!r} ({result['seconds']:.1f} s of audio)")
    print(f"Reply audio: {result['wav']}  (play it with: aplay {result['wav']})")
    print(f"Full trace: {out / 'trace.jsonl'}")
    if result["violations"]:
        print(f"Protocol violations: {len(result['violations'])}")
        return 1
    print("Protocol violations: none")
    return 0
