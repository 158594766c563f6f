"""The stand-in's own API key: from a file or the environment, never printed, never in argv."""

from __future__ import annotations

import asyncio
import os
import re
import ssl
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from google import genai
from google.genai import errors, types

from tests.conftest import live_config

CLI = Path(sys.executable).with_name("pi-live-voice")
KEY = "stand-in-secret-4f1c9a"
START_LIMIT_S = 30.0


@contextmanager
def stand_in(tmp_path: Path, *args: str, **env: str) -> Iterator[tuple[subprocess.Popen[str], str]]:
    """``pi-live-voice emulator`` on a free port; its process and base URL; stopped by PID."""
    proc = subprocess.Popen(
        [str(CLI), "emulator", "--port", "0", "--cert-out", str(tmp_path / "cert.pem"), *args],
        env={**os.environ, **env},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()  # the start line, once it serves
        found = re.search(r"https://127\.0\.0\.1:\d+", line)
        assert found, line + (proc.stderr.read() if proc.stderr else "")
        yield proc, line
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


async def connects(line: str, cert: Path, key: str) -> int | None:
    """None if an SDK client with ``key`` gets a session set up, else the closure's code."""
    found = re.search(r"https://127\.0\.0\.1:\d+", line)
    assert found
    client = genai.Client(
        api_key=key,
        http_options=types.HttpOptions(
            base_url=found.group(0),
            api_version="v1beta",
            async_client_args={"ssl": ssl.create_default_context(cafile=str(cert))},
        ),
    )
    try:
        async with client.aio.live.connect(model="test", config=live_config()):
            return None
    except errors.APIError as exc:
        return exc.code


@pytest.mark.parametrize("source", ["file", "environment"])
async def test_the_key_is_taken_privately_and_never_shown(tmp_path: Path, source: str) -> None:
    key_file = tmp_path / "key"
    key_file.write_text(KEY + "\n")
    args, env = (("--api-key-file", str(key_file)), {}) if source == "file" else ((), {})
    if source == "environment":
        env = {"PLV_EMULATOR_API_KEY": KEY}
    with stand_in(tmp_path, *args, **env) as (proc, line):
        cmdline = await asyncio.to_thread(Path(f"/proc/{proc.pid}/cmdline").read_bytes)
        assert await connects(line, tmp_path / "cert.pem", KEY) is None
        assert await connects(line, tmp_path / "cert.pem", "emulator-key") == 1007
    out, err = proc.communicate(timeout=10)
    assert KEY.encode() not in cmdline
    assert KEY not in line + out + err
    assert "api key from" in line


def test_a_key_on_the_command_line_is_refused(tmp_path: Path) -> None:
    done = subprocess.run(
        [str(CLI), "emulator", "--port", "0", "--api-key", KEY],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 2
    [line] = done.stderr.splitlines()
    assert "PLV_EMULATOR_API_KEY" in line
    assert KEY not in line


def test_an_empty_key_file_is_a_one_line_error(tmp_path: Path) -> None:
    key_file = tmp_path / "key"
    key_file.write_text("\n")
    done = subprocess.run(
        [str(CLI), "emulator", "--port", "0", "--api-key-file", str(key_file)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 78
    assert done.stderr == f"pi-live-voice emulator: {key_file}: the API key file is empty\n"
