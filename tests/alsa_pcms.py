"""ALSA PCMs for tests: the virtual sound card of :mod:`device.virtual_audio`.

alsa-lib reads its configuration once per process, so every PCM a test needs is defined here,
installed once by ``tests/conftest.py`` before the first PCM is opened, and takes its file
paths from environment variables that each test sets.
"""

from __future__ import annotations

from pathlib import Path

from device.virtual_audio import VIRTUAL_PCMS, install_asoundrc

ASOUNDRC = VIRTUAL_PCMS


def install_test_pcms(config_home: Path) -> None:
    """Define every test PCM for this process."""
    install_asoundrc(config_home, ASOUNDRC)
