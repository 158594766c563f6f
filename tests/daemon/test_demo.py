"""``make demo`` runs the whole daemon; this runs the same command and reads its report."""

from __future__ import annotations

import subprocess
import sys
import wave
from pathlib import Path


def test_the_demo_shows_the_tool_pending_window_and_answers(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "device.cli", "demo", "--out", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    out = result.stdout
    # The response is stamped when the stand-in receives it, which may be after the LED
    # went dark on the device side; the call and the LED's lighting always come first.
    assert out.index("wire ← model: toolCall") < out.index("TOOL-PENDING LED ON")
    assert out.index("TOOL-PENDING LED ON") < out.index("wire → model: toolResponse")
    assert out.index("TOOL-PENDING LED ON") < out.index("TOOL-PENDING LED OFF")
    assert "Realtime input sent inside that window: 0 frames" in out
    assert "Kitchen light (GPIO5): ON" in out
    assert "Protocol violations: none" in out
    with wave.open(str(tmp_path / "reply.wav")) as wav:
        assert wav.getframerate() == 24000
        assert wav.getnframes() > 24000  # more than a second of spoken reply
