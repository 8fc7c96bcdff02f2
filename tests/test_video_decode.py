"""Video frames: K frames sampled uniformly by index, of the right shape, from files encoded in
the test with PyAV; files without duration metadata, without video or audio, and corrupt files."""
import av
import numpy as np
import pytest

from features.video_decode import NoVideoStream, VideoDecodeError, sample_frames

WIDTH, HEIGHT = 64, 48


def encode(path, n_frames: int, *, codec: str = "mpeg4", with_audio: bool = False,
           container_format: str | None = None) -> None:
    """Frame i is a flat grey of level 10 i, so a decoded frame tells its own index."""
    try:
        av.codec.Codec(codec, "w")
    except Exception:  # noqa: BLE001 - any lookup failure means the encoder is not built in
        pytest.skip(f"PyAV's FFmpeg has no {codec} encoder")
    with av.open(str(path), "w", format=container_format) as out:
        video = out.add_stream(codec, rate=25)
        video.width, video.height, video.pix_fmt = WIDTH, HEIGHT, "yuv420p"
        video.codec_context.options = {"qscale": "2"} if codec == "mpeg4" else {"crf": "10"}
        audio = out.add_stream("aac", rate=16000, layout="mono") if with_audio else None
        for i in range(n_frames):
            image = np.full((HEIGHT, WIDTH, 3), 10 * i, dtype=np.uint8)
            out.mux(video.encode(av.VideoFrame.from_ndarray(image, format="rgb24")))
        out.mux(video.encode(None))
        if audio is not None:
            samples = np.zeros((1, 16000), dtype=np.float32)
            frame = av.AudioFrame.from_ndarray(samples, format="fltp", layout="mono")
            frame.sample_rate = 16000
            out.mux(audio.encode(frame))
            out.mux(audio.encode(None))


def frame_index(frame: np.ndarray) -> int:
    return int(round(frame.mean() / 10))


@pytest.mark.parametrize("codec", ["mpeg4", "libx264"])
def test_samples_k_frames_uniformly(tmp_path, codec):
    path = tmp_path / "clip.mp4"
    encode(path, 24, codec=codec)
    frames = sample_frames(path, k=8)
    assert len(frames) == 8
    assert all(f.shape == (HEIGHT, WIDTH, 3) and f.dtype == np.uint8 for f in frames)
    # Centres of 8 equal segments of 24 frames: 1.5, 4.5, ... -> indices 1, 4, 7, ..., 22.
    assert [frame_index(f) for f in frames] == [1, 4, 7, 10, 13, 16, 19, 22]


def test_an_audio_stream_beside_the_video_does_not_change_the_sampled_frames(tmp_path):
    path = tmp_path / "clip.mp4"  # the competition's clips carry sound: packets interleave
    encode(path, 24, with_audio=True)
    assert [frame_index(f) for f in sample_frames(path, k=8)] == [1, 4, 7, 10, 13, 16, 19, 22]


def test_fewer_frames_than_k_repeats_frames(tmp_path):
    path = tmp_path / "short.mp4"
    encode(path, 3)
    assert [frame_index(f) for f in sample_frames(path, k=6)] == [0, 0, 1, 1, 2, 2]


def test_raw_stream_without_duration_metadata(tmp_path):
    path = tmp_path / "clip.m4v"  # a raw MPEG-4 part 2 stream: no container duration
    encode(path, 20, container_format="m4v")
    with av.open(str(path)) as container:
        assert container.streams.video[0].duration is None
    assert [frame_index(f) for f in sample_frames(path, k=4)] == [2, 7, 12, 17]


def test_audio_only_file_has_no_video_stream(tmp_path):
    path = tmp_path / "sound.m4a"
    with av.open(str(path), "w", format="mp4") as out:
        stream = out.add_stream("aac", rate=16000, layout="mono")
        frame = av.AudioFrame.from_ndarray(np.zeros((1, 4096), np.float32), format="fltp",
                                           layout="mono")
        frame.sample_rate = 16000
        out.mux(stream.encode(frame))
        out.mux(stream.encode(None))
    with pytest.raises(NoVideoStream, match="sound.m4a"):
        sample_frames(path)


def test_corrupt_missing_and_empty_files_raise_naming_the_file(tmp_path):
    corrupt = tmp_path / "corrupt.mp4"
    corrupt.write_bytes(b"\x00\x00\x00\x18ftypmp42" + np.random.default_rng(0).bytes(2000))
    empty = tmp_path / "empty.mp4"
    empty.write_bytes(b"")
    for path in (corrupt, empty, tmp_path / "missing.mp4"):
        with pytest.raises(VideoDecodeError, match=path.name):
            sample_frames(path)


def test_k_must_be_positive(tmp_path):
    path = tmp_path / "clip.mp4"
    encode(path, 4)
    with pytest.raises(ValueError):
        sample_frames(path, k=0)
