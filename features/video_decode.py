"""Sample frames from a video file, uniformly over its length, and tell whether it has audio.

Frames are chosen by index among the decoded frames, not by timestamp, so a file whose container
gives no (or a wrong) duration is sampled just as well: a first pass counts the video packets
(demuxing only, no decoding), a second pass decodes in order and converts only the chosen frames
to RGB, stopping after the last one.
"""
from __future__ import annotations

from pathlib import Path

import av
import numpy as np

from features.audio_decode import pyav_errors_as



class VideoDecodeError(ValueError):
    """A file whose video cannot be decoded; the message names the file."""


class NoVideoStream(VideoDecodeError):
    """A readable media file without a video stream."""


def sample_frames(path: str | Path, k: int = 8) -> list[np.ndarray]:
    """``k`` frames spread uniformly over the video, as (H, W, 3) uint8 RGB arrays.

    Frame i of ``k`` is the decoded frame with index floor((i + 0.5) n / k), n the number of
    frames, i.e. the centre of the i-th of ``k`` equal segments. A video with fewer than ``k``
    frames repeats frames; the list always has ``k`` entries.

    Raises
    ------
    NoVideoStream
        The file has no video stream.
    VideoDecodeError
        Missing, empty or corrupt files, and videos that decode to no frame.
    """
    if k < 1:
        raise ValueError(f"k must be at least 1, got {k}")
    path = _checked(path)
    with pyav_errors_as(VideoDecodeError, f"{path}: cannot decode video"):
        count = _count_video_packets(path)
        if count == 0:
            raise VideoDecodeError(f"{path}: the video stream has no frame")
        wanted = ((np.arange(k) + 0.5) * count / k).astype(int)
        frames = _decode_indices(path, wanted)
    if not frames:
        raise VideoDecodeError(f"{path}: the video stream decoded to no frame")
    # The packet count can exceed the decodable frames (a truncated file): reuse the last one.
    return [frames.get(index, frames[max(frames)]) for index in wanted]


def _checked(path: str | Path) -> Path:
    path = Path(path)
    if not path.is_file():
        raise VideoDecodeError(f"{path}: no such file")
    if path.stat().st_size == 0:
        raise VideoDecodeError(f"{path}: empty file")
    return path


def _video_stream(container: av.container.InputContainer, path: Path) -> av.video.VideoStream:
    if not container.streams.video:
        raise NoVideoStream(f"{path}: no video stream")
    return container.streams.video[0]


def _count_video_packets(path: Path) -> int:
    with av.open(str(path)) as container:
        stream = _video_stream(container, path)
        return sum(1 for packet in container.demux(stream) if packet.size)


def _decode_indices(path: Path, wanted: np.ndarray) -> dict[int, np.ndarray]:
    """Decode in presentation order and keep the frames whose index is in ``wanted``."""
    targets, last = set(wanted.tolist()), int(wanted.max())
    kept: dict[int, np.ndarray] = {}
    with av.open(str(path)) as container:
        stream = _video_stream(container, path)
        stream.thread_type = "AUTO"
        for index, frame in enumerate(container.decode(stream)):
            if index in targets:
                kept[index] = frame.to_ndarray(format="rgb24")
            if index >= last:
                break
    return kept
