"""Decode any audio file, or the audio track of a video, to float32 mono at one fixed sample rate.

Every audio family works on this one representation, so the original sample rate, bit depth,
channel count and container cannot become a feature by accident (the data README's label leaks).

How: PyAV (FFmpeg) demuxes and decodes the first audio stream; each decoded frame's samples are
converted to float in [-1, 1] and its channels averaged to mono, at the native rate; and ``soxr``
(the SoX resampler, installed with librosa) resamples to the target rate at its 'HQ' quality:
linear phase; from 24 or 48 kHz to 16 kHz, flat within 0.05 dB to 7.4 kHz, -3 dB at 7.6 kHz and
below -100 dB from 8 kHz on; sharper than FFmpeg's default swr filter. The families therefore
analyse frequencies up to 7.4 kHz only (their ``fmax``): above, a file's content depends on its
original sample rate.

Non-finite samples (NaN or infinity, possible in float WAV files) are replaced by 0 before
resampling, so that one bad sample cannot spread into its neighbours; every file that decodes
yields a finite signal.
"""
from __future__ import annotations

import io
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO, Iterator

import av
import numpy as np
import soxr


DEFAULT_SAMPLE_RATE = 16000
RESAMPLER_QUALITY = "HQ"

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
        Missing, empty, corrupt or unsupported files, files that decode to no sample (or to
        none left after resampling), and streams whose sample rate changes midway.
    """
    name = str(source) if isinstance(source, (str, Path)) else "<bytes>"
    with pyav_errors_as(AudioDecodeError, f"{name}: cannot decode audio"):
        native_rate, blocks = _decode_native(_open_argument(source), name, max_seconds)
    if not blocks:
        raise AudioDecodeError(f"{name}: the audio stream decoded to no sample")
    mono = np.concatenate(blocks)
    mono[~np.isfinite(mono)] = 0.0
    if max_seconds is not None:
        mono = mono[:int(round(max_seconds * native_rate))]
    if native_rate != sample_rate:
        mono = soxr.resample(mono, native_rate, sample_rate, quality=RESAMPLER_QUALITY)
    if not mono.size:
        raise AudioDecodeError(f"{name}: too short to give one sample at {sample_rate} Hz")
    return np.ascontiguousarray(mono, dtype=np.float32)


@contextmanager
def pyav_errors_as(error_type: type[ValueError], message: str) -> Iterator[None]:
    """Re-raise what PyAV, the OS or a malformed stream raise in the block as ``error_type``
    with ``message`` (and the cause); errors already of ``error_type`` pass unchanged."""
    try:
        yield
    except error_type:
        raise
    except (av.FFmpegError, OSError, ValueError, EOFError) as error:
        raise error_type(f"{message} ({error})") from error


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
    """Mono float32 blocks at the stream's own rate, and that rate."""
    with av.open(source, mode="r") as container:
        if not container.streams.audio:
            raise NoAudioStream(f"{name}: no audio stream")
        stream = container.streams.audio[0]
        rate, blocks, decoded = 0, [], 0
        for frame in container.decode(stream):
            rate = rate or frame.sample_rate
            if frame.sample_rate != rate:
                raise AudioDecodeError(f"{name}: the sample rate changes from {rate} to "
                                       f"{frame.sample_rate} Hz within the stream")
            blocks.append(_channels_as_float(frame).mean(axis=0))
            decoded += blocks[-1].size
            if max_seconds is not None and decoded >= max_seconds * rate:
                break
    return rate, [b for b in blocks if b.size]


def _channels_as_float(frame: av.AudioFrame) -> np.ndarray:
    """(channels, samples) float32 in [-1, 1] from any of FFmpeg's sample formats.

    Converted here rather than by FFmpeg's resampler, which crashes (segmentation fault) on
    layouts it has no name for, such as 8 or 12 unordered channels.
    """
    array = frame.to_ndarray()
    if not frame.format.is_planar:
        array = array.reshape(-1, len(frame.layout.channels)).T  # interleaved samples
    kind = frame.format.name.rstrip("p")
    if kind == "u8":
        return (array.astype(np.float32) - 128.0) / 128.0
    if kind in ("s16", "s32", "s64"):
        return (array / float(2 ** (8 * array.dtype.itemsize - 1))).astype(np.float32)
    return array.astype(np.float32)
