"""Decode any audio file, or the audio track of a video, to float32 mono at one fixed sample rate.

Every audio family works on this one representation, so the original sample rate, bit depth,
channel count and container cannot become a feature by accident (the data README's label leaks).

How: PyAV (FFmpeg) demuxes and decodes the first audio stream; FFmpeg's resampler only converts the
sample format to planar float, keeping the native rate and channels; the channels are averaged to
mono; and ``soxr`` (the SoX resampler, installed with librosa) resamples to the target rate at its
'HQ' quality (linear phase, flat to 91 % of the output Nyquist, i.e. to 7.3 kHz at 16 kHz, and
> 100 dB of alias rejection), which is sharper than FFmpeg's default swr filter.

Non-finite samples (NaN or infinity, possible in float WAV files) are replaced by 0 before
resampling, so that one bad sample cannot spread into its neighbours; every file that decodes
yields a finite signal.
"""
from __future__ import annotations

import io
from pathlib import Path
from typing import BinaryIO

import av
import numpy as np
import soxr

from features.audio_context import AudioContext  # noqa: F401 - re-exported for the extractor

DEFAULT_SAMPLE_RATE = 16000
RESAMPLER_QUALITY = "HQ"
AUDIO_SUFFIXES = (".wav", ".flac", ".mp3", ".ogg", ".m4a", ".aac", ".opus",
                  ".mp4", ".mkv", ".avi", ".mov", ".webm")

Source = str | Path | bytes | BinaryIO


class AudioDecodeError(ValueError):
    """A file whose audio cannot be decoded; the message names the file."""


class NoAudioStream(AudioDecodeError):
    """A readable media file that has no audio stream (for example a silent video)."""


def decode_audio(source: Source, *, sample_rate: int = DEFAULT_SAMPLE_RATE,
                 max_seconds: float | None = None) -> np.ndarray:
    """Decode the first audio stream of ``source`` to float32 mono at ``sample_rate``.

    Parameters
    ----------
    source : a path, the file's bytes, or a binary file object.
    sample_rate : output rate in Hz.
    max_seconds : if given, decode at most this many seconds from the start (bounds memory).

    Returns
    -------
    ndarray of shape (n,), float32, nominally in [-1, 1] (float files may exceed it).

    Raises
    ------
    NoAudioStream
        The file is a readable container without an audio stream.
    AudioDecodeError
        Missing, empty, corrupt or unsupported files, and files that decode to no sample.
    """
    name = str(source) if isinstance(source, (str, Path)) else "<bytes>"
    try:
        native_rate, channels = _decode_native(_open_argument(source), name, max_seconds)
    except AudioDecodeError:
        raise
    except (av.FFmpegError, OSError, ValueError, EOFError) as error:
        raise AudioDecodeError(f"{name}: cannot decode audio ({error})") from error
    if not channels:
        raise AudioDecodeError(f"{name}: the audio stream decoded to no sample")
    mono = np.concatenate(channels, axis=1).mean(axis=0)
    mono[~np.isfinite(mono)] = 0.0
    if max_seconds is not None:
        mono = mono[:int(round(max_seconds * native_rate))]
    if native_rate != sample_rate:
        mono = soxr.resample(mono, native_rate, sample_rate, quality=RESAMPLER_QUALITY)
    return np.ascontiguousarray(mono, dtype=np.float32)


def _open_argument(source: Source) -> str | BinaryIO:
    if isinstance(source, (bytes, bytearray, memoryview)):
        if not len(source):
            raise AudioDecodeError("<bytes>: empty data")
        return io.BytesIO(bytes(source))
    if isinstance(source, (str, Path)):
        path = Path(source)
        if not path.is_file():
            raise AudioDecodeError(f"{source}: no such file")
        if path.stat().st_size == 0:
            raise AudioDecodeError(f"{source}: empty file")
        return str(path)
    return source


def _decode_native(source: str | BinaryIO, name: str,
                   max_seconds: float | None) -> tuple[int, list[np.ndarray]]:
    """Planar float32 blocks (channels, samples) at the stream's own rate, and that rate."""
    with av.open(source, mode="r") as container:
        if not container.streams.audio:
            raise NoAudioStream(f"{name}: no audio stream")
        stream = container.streams.audio[0]
        resampler = None
        rate, blocks, decoded = 0, [], 0
        for frame in container.decode(stream):
            if resampler is None:
                # Fixed to the first frame's rate and layout; only the sample format changes.
                rate = frame.sample_rate
                resampler = av.AudioResampler(format="fltp", layout=frame.layout.name, rate=rate)
            for converted in resampler.resample(frame):
                block = converted.to_ndarray()
                blocks.append(block)
                decoded += block.shape[1]
            if max_seconds is not None and decoded >= max_seconds * rate:
                break
        if resampler is not None:
            blocks.extend(f.to_ndarray() for f in resampler.resample(None))
    return rate, [b for b in blocks if b.shape[1]]
