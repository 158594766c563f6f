"""What the command costs to start: the SDK is loaded only by the commands that use it."""

from __future__ import annotations

import subprocess
import sys

PROBE = """
import sys
import device.cli
device.cli.build_parser()
import device.config, device.journal, device.pins
print("google.genai" in sys.modules)
"""


def test_the_command_and_the_config_do_not_import_the_sdk() -> None:
    done = subprocess.run(
        [sys.executable, "-c", PROBE], capture_output=True, text=True, timeout=60, check=True
    )
    assert done.stdout.strip() == "False", done.stderr
