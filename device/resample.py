"""Sample-rate and channel conversion of s16le PCM between a device and the model."""

from __future__ import annotations

import numpy as np
import soxr
from numpy.typing import NDArray

Samples = NDArray[np.int16]


class StreamResampler:
    """Streaming s16le mono resampling with soxr; a pass-through when the rates match."""

    def __init__(self, in_rate: int, out_rate: int) -> None:
        self.in_rate = in_rate
        self.out_rate = out_rate
        self._stream: soxr.ResampleStream | None = None
        self.reset()

    @property
    def passthrough(self) -> bool:
        """True when no conversion is needed."""
        return self.in_rate == self.out_rate

    def reset(self) -> None:
        """Forget buffered input (after a flush or a gap)."""
        self._stream = (
            None
            if self.passthrough
            else soxr.ResampleStream(self.in_rate, self.out_rate, 1, dtype="int16", quality="HQ")
        )

    def process(self, samples: Samples) -> Samples:
        """Resample the next chunk; some output may lag behind until more input arrives."""
        if self._stream is None:
            return samples
        out: Samples = self._stream.resample_chunk(samples)
        return out

    def finish(self) -> Samples:
        """The buffered tail at the end of a stream; the resampler is then ready for a new one."""
        if self._stream is None:
            return np.zeros(0, dtype=np.int16)
        out: Samples = self._stream.resample_chunk(np.zeros(0, dtype=np.int16), last=True)
        self.reset()
        return out


def to_mono(data: bytes, channels: int) -> Samples:
    """Interleaved s16le with ``channels`` channels as mono samples (the channel mean)."""
    samples = np.frombuffer(data, dtype="<i2")
    if channels == 1:
        return samples.astype(np.int16)
    frames = samples[: len(samples) - len(samples) % channels].reshape(-1, channels)
    mono: Samples = frames.mean(axis=1, dtype=np.float64).round().astype(np.int16)
    return mono


def from_mono(samples: Samples, channels: int) -> bytes:
    """Mono samples as interleaved s16le with the same signal on every channel."""
    if channels > 1:
        samples = np.repeat(samples, channels)
    return samples.astype("<i2").tobytes()
