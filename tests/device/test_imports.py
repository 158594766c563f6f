"""What the command costs to start: the SDK is loaded only by the commands that use it."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

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


ROOT = Path(__file__).resolve().parents[2]
# May import services: the composition root and the commands.
JOINERS = {"device.daemon", "device.cli", "device.demo", "device.config"}
HARDWARE = {"device.gpio", "device.pins", "device.capture", "device.playback", "device.journal"}


def imports_of(path: Path) -> set[str]:
    """Every module ``path`` imports, at any depth of the file."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            found.add(node.module)
    return found


def forbidden(module: str, target: str) -> bool:
    if target == "tests" or target.startswith("tests."):
        return True  # the suite may import everything; nothing imports the suite
    if module.startswith("services") and target.startswith("device"):
        return True
    if module.startswith("device") and target.startswith("services"):
        return module not in JOINERS
    return module in HARDWARE and target == "device.config"


def test_imports_point_one_way() -> None:
    arrows = [
        (module, target)
        for wing in ("device", "services", "bench")
        for path in sorted((ROOT / wing).rglob("*.py"))
        for module in [".".join(path.relative_to(ROOT).with_suffix("").parts)]
        for target in imports_of(path)
        if forbidden(module, target)
    ]
    assert not arrows, arrows
    assert imports_of(ROOT / "device" / "gpio.py")  # the parse sees imports at all
