"""Opening an ALSA PCM through pyalsaaudio, and the narrow interface capture and playback use."""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

import alsaaudio

# Consecutive failed writes of one chunk after which the device counts as failed, not just late.
MAX_UNDERRUN_RETRIES = 3


class PcmError(Exception):
    """An ALSA PCM could not be opened, or failed in a way that needs a reopen."""


@dataclass(frozen=True)
class PcmRequest:
    """What to ask the device for; the device may grant something else."""

    device: str
    capture: bool
    rate: int
    channels: int
    period_frames: int
    periods: int


@dataclass(frozen=True)
class PcmGrant:
    """What the device actually granted."""

    rate: int
    channels: int
    period_frames: int
    buffer_frames: int

    @property
    def period_ms(self) -> float:
        """Length of one period in milliseconds."""
        return 1000 * self.period_frames / self.rate


class Pcm(Protocol):
    """An open s16le PCM; every method blocks, so call them from one worker thread."""

    @property
    def grant(self) -> PcmGrant:
        """The negotiated parameters."""
        ...

    def read(self) -> bytes | None:
        """One period of interleaved frames; None after an overrun (recovered, audio lost)."""
        ...

    def write(self, data: bytes) -> int:
        """Write all of ``data``; returns how many underruns were recovered on the way."""
        ...

    def pending_frames(self) -> int:
        """Frames written but not yet played (playback)."""
        ...

    def drop(self) -> None:
        """Discard whatever the device holds at once; the next write prepares it again."""
        ...

    def close(self) -> None:
        """Release the device without waiting for queued audio."""
        ...


PcmOpener = Callable[[PcmRequest], Pcm]


class AlsaPcm:
    """A pyalsaaudio PCM behind :class:`Pcm`; ALSA errors become :class:`PcmError`."""

    def __init__(self, pcm: Any, request: PcmRequest, grant: PcmGrant) -> None:
        self._pcm = pcm
        self._request = request
        self._grant = grant
        self._frame_bytes = 2 * grant.channels

    @property
    def grant(self) -> PcmGrant:
        """The negotiated parameters."""
        return self._grant

    def read(self) -> bytes | None:
        """One period; pyalsaaudio reports an overrun as a negative length after re-preparing."""
        try:
            length, data = self._pcm.read()
        except alsaaudio.ALSAAudioError as exc:
            raise PcmError(str(exc)) from exc
        if length < 0:
            return None
        return bytes(data)

    def write(self, data: bytes) -> int:
        """Write all of ``data``, retrying after underruns (pyalsaaudio re-prepares on EPIPE)."""
        view = memoryview(data)
        underruns = 0
        retries = 0
        while view:
            try:
                written = self._pcm.write(view)
            except alsaaudio.ALSAAudioError as exc:
                raise PcmError(str(exc)) from exc
            if written <= 0:  # -EPIPE: underrun, nothing written; 0 cannot progress either
                underruns += written < 0
                retries += 1
                if retries > MAX_UNDERRUN_RETRIES:
                    raise PcmError(f"no progress writing to {self._request.device!r}")
                continue
            retries = 0
            view = view[written * self._frame_bytes :]
        return underruns

    def pending_frames(self) -> int:
        """Buffer size minus what is free; 0 when the stream is stopped or ran dry."""
        try:
            avail = int(self._pcm.avail())
        except alsaaudio.ALSAAudioError as exc:
            raise PcmError(str(exc)) from exc
        if avail < 0:
            return 0
        return max(0, self._grant.buffer_frames - avail)

    def drop(self) -> None:
        """``snd_pcm_drop``: stop now and discard the device buffer."""
        try:
            self._pcm.drop()
        except alsaaudio.ALSAAudioError as exc:
            raise PcmError(str(exc)) from exc

    def close(self) -> None:
        """Drop first: pyalsaaudio's close() drains playback, which would block."""
        # A vanished device cannot drop; closing it still frees the handle.
        with contextlib.suppress(alsaaudio.ALSAAudioError):
            self._pcm.drop()
        self._pcm.close()


def open_alsa_pcm(request: PcmRequest) -> Pcm:
    """Open ``request.device`` as s16le interleaved; raises :class:`PcmError` if it cannot."""
    try:
        pcm = alsaaudio.PCM(
            type=alsaaudio.PCM_CAPTURE if request.capture else alsaaudio.PCM_PLAYBACK,
            mode=alsaaudio.PCM_NORMAL,
            device=request.device,
            rate=request.rate,
            channels=request.channels,
            format=alsaaudio.PCM_FORMAT_S16_LE,
            periodsize=request.period_frames,
            periods=request.periods,
        )
    except alsaaudio.ALSAAudioError as exc:
        raise PcmError(str(exc)) from exc
    info = pcm.info()
    if info["format"] != alsaaudio.PCM_FORMAT_S16_LE:
        pcm.close()
        raise PcmError(
            f"{request.device!r} does not take S16_LE (it offers {info['format_name']}); "
            "use a plughw: or plug device so ALSA converts"
        )
    grant = PcmGrant(
        rate=int(info["rate"]),
        channels=int(info["channels"]),
        period_frames=int(info["period_size"]),
        buffer_frames=int(info["buffer_size"]),
    )
    return AlsaPcm(pcm, request, grant)
