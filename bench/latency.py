"""Reaction latencies of the daemon: the probe's stamps and the stand-in's trace, paired up.

Clock points (all ``time.monotonic()``, one clock across processes):

* toolCall received: the SDK handed the message to the session (:mod:`bench.instrument`);
* tool-pending LED on: the daemon's ``tool-led on`` observation, right after the pin was set;
* toolResponse on the wire: the session's send of the response returned (the frame is with
  the socket); for the MQTT tool that includes the broker's acknowledgement (QoS 1) from a
  real mosquitto;
* ``interrupted`` received → silence: the speaker PCM's ``drop()`` returned (nothing of the
  reply is left in the device); the last write of stale audio is reported too;
* speech end → ``activityEnd``: the fixture's last loud sample was spoken into the mic →
  the stand-in received ``activityEnd``; the configured hang-over is subtracted;
* 1011 → resumed: the stand-in closed the connection → it sent ``setupComplete`` on the
  connection that resumed the conversation with its handle (the daemon's few fault rounds;
  the fault family gives the bulk of this figure).
"""

from __future__ import annotations

import asyncio
import bisect
import contextlib
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench import plans
from bench.probe_runner import child
from bench.standin import resume_times_ms, standin
from services.emulator.trace import TraceRecord
from services.testbed.mosquitto import Mosquitto

HANGOVER_MS = 500
PROBE_LIMIT_S = 900.0


@dataclass(frozen=True)
class LatencyResult:
    """Samples (ms) per metric, and what went wrong, if anything."""

    samples: dict[str, list[float]]
    notes: list[str]


@contextlib.asynccontextmanager
async def stopping(broker: Mosquitto) -> AsyncIterator[None]:
    """Stop ``broker`` (by its PID) when the block ends."""
    try:
        yield
    finally:
        await asyncio.to_thread(broker.stop)


def _after(times: list[float], t: float) -> float | None:
    """The first of the sorted ``times`` at or after ``t``."""
    i = bisect.bisect_left(times, t)
    return times[i] if i < len(times) else None


def _ms(a: float, b: float) -> float:
    return 1000 * (b - a)


def button_latencies(stamps: dict[str, Any], trace: list[TraceRecord]) -> dict[str, list[float]]:
    """LED, tool response, interrupted and resume latencies of the push-to-talk rounds."""
    received = stamps["received"]
    leds = sorted(
        t for t, kind, detail in stamps["observations"] if (kind, detail) == ("tool-led", "on")
    )
    drops = sorted(end for _, end in stamps["drops"])
    write_ends = sorted(end for _, end, _ in stamps["writes"])
    out: dict[str, list[float]] = {
        "tool_call_to_led": [],
        "tool_call_to_response_gpio": [],
        "tool_call_to_response_mqtt": [],
        "interrupted_to_silence": [],
        "interrupted_to_last_write": [],
    }
    for r in received:
        if r["tool_call_ids"]:
            led = _after(leds, r["at"])
            if led is not None:
                out["tool_call_to_led"].append(_ms(r["at"], led))
            metric = {
                ("set_output",): "tool_call_to_response_gpio",
                (plans.MQTT_TOOL,): "tool_call_to_response_mqtt",
            }.get(tuple(r["tool_names"]))
            sent = stamps["responded"].get(r["tool_call_ids"][0])
            if metric is not None and sent is not None:
                out[metric].append(_ms(r["at"], sent))
        if r["interrupted"]:
            silent = _after(drops, r["at"])
            if silent is not None:
                out["interrupted_to_silence"].append(_ms(r["at"], silent))
                stale = [t for t in write_ends if r["at"] < t <= silent]
                out["interrupted_to_last_write"].append(_ms(r["at"], stale[-1]) if stale else 0.0)
    out["close_1011_to_resumed_daemon"] = resume_times_ms(trace)
    return out


def speech_latencies(
    stamps: dict[str, Any], trace: list[TraceRecord], hangover_ms: int
) -> list[float]:
    """Speech end → activityEnd at the stand-in, minus the hang-over, per utterance."""
    ends = sorted(r["t"] for r in trace if r["event"] == "in" and r.get("kind") == "activityEnd")
    out = []
    for spoken in stamps["speech_ends"]:
        if spoken is None:
            continue
        got = _after(ends, spoken)
        if got is not None:
            out.append(_ms(spoken, got) - hangover_ms)
    return out


async def measure(workdir: Path, rounds: int, utterances: int) -> LatencyResult:
    """Run the latency probe: ``rounds`` push-to-talk rounds, then ``utterances`` spoken."""
    plan_rounds = plans.button_rounds(rounds)
    broker = Mosquitto(workdir / "broker")
    await asyncio.to_thread(broker.start)
    async with (
        stopping(broker),
        # Replies stream at twice real time, as the service's bursts do, so the speaker has
        # audio queued and a period being written when an interrupted arrives.
        standin(plans.button_scenario(plan_rounds), workdir, pace=0.5) as em_button,
        standin(plans.speech_scenario(utterances), workdir, pace=1.0) as em_speech,
    ):
        plan = plans.LatencyPlan(
            button=plans.Endpoint(em_button.base_url, str(em_button.settings.cert_out)),
            rounds=plan_rounds,
            speech=plans.Endpoint(em_speech.base_url, str(em_speech.settings.cert_out)),
            utterances=utterances,
            hangover_ms=HANGOVER_MS,
            mqtt_port=broker.port,
        )
        plan_path = workdir / "latency-plan.json"
        out_path = workdir / "latency-stamps.json"
        plans.write_plan(plan, plan_path)
        async with child("-m", "bench.probe", str(plan_path), str(out_path)) as probe:
            async with asyncio.timeout(PROBE_LIMIT_S):
                status = await probe.wait()
        button_trace = em_button.trace.select()
        speech_trace = em_speech.trace.select()
    if status != 0:
        raise RuntimeError(f"the latency probe exited with {status}")
    stamps = json.loads(out_path.read_text(encoding="utf-8"))
    samples = button_latencies(stamps["button"], button_trace)
    samples["speech_end_to_activity_end"] = speech_latencies(
        stamps["speech"], speech_trace, HANGOVER_MS
    )
    notes = [
        f"{phase} phase: {stamps[phase]['error']}"
        for phase in ("button", "speech")
        if stamps[phase]["error"]
    ]
    violations = [r for r in button_trace + speech_trace if r["event"] == "violation"]
    if violations:
        notes.append(f"{len(violations)} protocol violation(s) seen by the stand-in")
    return LatencyResult(samples, notes)
