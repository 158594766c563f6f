"""The daemon's records in a real journald, found by their fields with ``journalctl``."""

from __future__ import annotations

import asyncio
import json
import subprocess
import uuid
from pathlib import Path

import pytest

from services.emulator import rules
from tests.conftest import API_KEY, EmulatorFactory
from tests.systemd.conftest import (
    DAEMON,
    LIGHT_ON,
    daemon_environ,
    fifo_mic,
    journal_entries,
    poll_journal,
    running_daemon,
    write_config,
)

# A tool call, then the service closes with 1008 while the reply plays; the session resumes.
SCENARIO = {
    "turns": [
        {
            "heard": "Turn on the kitchen light.",
            "tool_calls": [LIGHT_ON],
            "reply": "Done, the light is on.",
            "faults": [
                {
                    "kind": "close",
                    "code": 1008,
                    "reason": rules.REASON_NOT_SUPPORTED,
                    "at": "reply",
                }
            ],
        }
    ]
}


def under_systemd(tmp_path: Path) -> dict[str, str]:
    """The environment of a daemon systemd started: its logging goes to the journal."""
    return daemon_environ(tmp_path, INVOCATION_ID=uuid.uuid4().hex)


@pytest.mark.usefixtures("journald")
async def test_closure_and_tool_records_carry_their_fields(
    emulator_factory: EmulatorFactory, request_speech: bytes, tmp_path: Path
) -> None:
    async with emulator_factory(SCENARIO, pace=0.2) as em:
        config = write_config(tmp_path / "config.toml", em, health_interval_s=1)
        with (
            fifo_mic(tmp_path) as mic,
            running_daemon(config, under_systemd(tmp_path), tmp_path) as daemon,
        ):
            pid = f"_PID={daemon.proc.pid}"
            idle = await asyncio.to_thread(poll_journal, pid, "LIVE_STATE=idle", within=30)
            assert idle, daemon.output()
            mic.feeder.say(request_speech)
            [closure] = await asyncio.to_thread(poll_journal, pid, "CLOSE_CODE=1008", within=30)
            tools = await asyncio.to_thread(poll_journal, pid, "TOOL_NAME=set_output")
            capture = await asyncio.to_thread(poll_journal, pid, "AUDIO_DEVICE=plv_mic")
            assert await asyncio.to_thread(daemon.terminate) == 0, daemon.output()
    everything = journal_entries(pid)

    assert closure["SYSLOG_IDENTIFIER"] == "pi-live-voice"
    assert closure["PRIORITY"] == "4"  # warning: the session resumes
    assert closure["CLOSE_REASON"] == rules.REASON_NOT_SUPPORTED
    assert closure["LIKELY_CAUSE"]
    assert closure["SESSION_ID"]
    assert closure["RECONNECT_ATTEMPT"]
    assert closure["LOGGER"] == "services.live.session"

    # The resumed conversation may answer the turn, and call the tool, once more.
    answered, *_ = [e for e in tools if "TOOL_MS" in e]
    assert answered["PRIORITY"] == "6"
    assert answered["TOOL_CALL_ID"].startswith("function-call-")
    assert float(answered["TOOL_MS"]) >= 0

    assert "open" in capture[0]["MESSAGE"]
    health = [e for e in everything if "FRAMES_IN" in e]
    assert health
    assert int(health[-1]["FRAMES_IN"]) > 0
    assert {"XRUNS", "RECONNECTS", "RSS_MIB", "GATED_FRAMES"} <= set(health[-1])
    # Only journal fields were sent: no lower-case record attributes, no "None" values.
    assert not [k for e in everything for k in e if k.islower()]
    assert API_KEY not in json.dumps(everything)


@pytest.mark.usefixtures("journald")
def test_a_bad_config_exits_78_with_the_error_in_the_journal(tmp_path: Path) -> None:
    config = tmp_path / "config.toml"
    config.write_text("[button]\npin = 99\n")
    proc = subprocess.Popen(
        [str(DAEMON), "run", "--config", str(config)],
        env=under_systemd(tmp_path),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 78
    error = f"{config}: button.pin: must be between 0 and 27, got 99"
    assert stderr == f"pi-live-voice: {error}\n"
    [entry] = poll_journal(f"_PID={proc.pid}", "PRIORITY=3")
    assert entry["MESSAGE"] == error
    assert entry["CONFIG_KEY"] == "button.pin"
    assert entry["CONFIG_FILE"] == str(config)
