"""Decoding: every container and format gives the same float32 mono 16 kHz signal, so that the
features of one recording do not depend on how it was stored; errors are explicit."""
import av
import numpy as np
import pytest
import soundfile as sf
from scipy.signal import firwin, lfilter, resample_poly

from features import lfcc, ltas, mfcc, modulation, prosody, spectral  # noqa: F401 - register
from features.audio_context import AudioContext
from features.audio_decode import AudioDecodeError, NoAudioStream, decode_audio
from features.registry import REGISTRY

SR = 16000
AUDIO_FAMILIES = ("mfcc", "lfcc", "spectral", "prosody", "ltas", "modulation")


def speech_like(seed: int, seconds: float = 2.0, sr: int = SR) -> np.ndarray:
    """A varied speech-like recording: harmonics of a gliding pitch with a random spectral tilt,
    syllable-rate amplitude bursts, coloured noise bursts, and a coloured noise floor from -60 to
    -35 dB (a quiet room)."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * sr)) / sr
    f0 = rng.uniform(90, 220) * (1 + 0.15 * np.sin(2 * np.pi * rng.uniform(0.3, 1.0) * t))
    phase = 2 * np.pi * np.cumsum(f0) / sr
    tilt = rng.uniform(0.6, 2.0)
    harmonics = sum(np.sin(k * phase + rng.uniform(0, 2 * np.pi)) / k ** tilt
                    for k in range(1, 30) if k * f0.max() < 7000)
    syllables = np.clip(np.sin(2 * np.pi * rng.uniform(3, 6) * t), 0, None) ** 2
    colour = rng.uniform(-0.9, 0.9)  # one-pole filter: low-pass (> 0) to high-pass (< 0) noise
    noise = lfilter([1.0], [1.0, -colour], rng.standard_normal(t.size))
    bursts = (np.sin(2 * np.pi * rng.uniform(1, 2) * t) > rng.uniform(0.6, 0.95)) * noise
    floor = lfilter([1.0], [1.0, -rng.uniform(-0.9, 0.9)], rng.standard_normal(t.size))
    floor *= 10 ** (rng.uniform(-60, -35) / 20) / floor.std()
    y = harmonics * syllables / np.abs(harmonics).max() + rng.uniform(0.05, 0.5) * bursts \
        / np.abs(noise).max() + floor
    return (rng.uniform(0.2, 0.9) * y / np.abs(y).max()).astype(np.float32)


def all_features(y: np.ndarray) -> dict[str, float]:
    context = AudioContext(y, SR)
    out = {}
    for name in AUDIO_FAMILIES:
        family = REGISTRY[name]
        out.update(family.compute(context, family.defaults))
    return out


def write(path, y, sr, **options):
    sf.write(str(path), y, sr, **options)
    return path


def test_one_recording_stored_in_many_ways_gives_near_identical_features(tmp_path):
    y = speech_like(0)
    # Another resampler: scipy's polyphase filter, with a long Kaiser FIR flat to 7.6 kHz.
    y24 = resample_poly(y.astype(np.float64), 3, 2,
                        window=firwin(961, 7800, fs=48000, window=("kaiser", 9.0)))
    y24 = y24.astype(np.float32)
    stored = {
        "wav_pcm16": write(tmp_path / "a.wav", y, SR, subtype="PCM_16"),
        "wav_float": write(tmp_path / "b.wav", y, SR, subtype="FLOAT"),
        "flac": write(tmp_path / "c.flac", y, SR, subtype="PCM_16"),
        "stereo": write(tmp_path / "d.wav", np.stack([y, y], axis=1), SR, subtype="PCM_16"),
        "wav_24k": write(tmp_path / "e.wav", y24, 24000, subtype="PCM_16"),
        "flac_24k_stereo": write(tmp_path / "f.flac", np.stack([y24, y24], axis=1), 24000,
                                 subtype="PCM_24"),
    }
    reference = all_features(y)
    # Spread of each feature across different recordings: what a tolerance is relative to.
    panel = np.array([list(all_features(speech_like(seed)).values()) for seed in range(1, 9)])
    spread = panel.std(axis=0)
    names = list(reference)
    ref = np.array(list(reference.values()))
    for label, path in stored.items():
        decoded = decode_audio(path)
        assert decoded.dtype == np.float32 and decoded.ndim == 1
        assert abs(decoded.size - y.size) <= 2, label
        values = np.array(list(all_features(decoded).values()))
        tolerance = 0.25 * spread + 1e-6 * (1 + np.abs(ref))  # a quarter of the spread
        bad = [f"{names[i]}: {ref[i]:.4g} vs {values[i]:.4g} (spread {spread[i]:.3g})"
               for i in np.flatnonzero(np.abs(values - ref) > tolerance)]
        assert not bad, f"{label}: {len(bad)} features differ, e.g. {bad[:5]}"


@pytest.mark.parametrize("subtype, step", [("PCM_U8", 2 / 256), ("PCM_16", 2 / 2 ** 16),
                                           ("PCM_24", 2 / 2 ** 24), ("PCM_32", 2 / 2 ** 32),
                                           ("FLOAT", 0.0), ("DOUBLE", 0.0)])
def test_every_sample_format_decodes_to_the_samples(tmp_path, subtype, step):
    y = speech_like(3)
    decoded = decode_audio(write(tmp_path / "a.wav", y, SR, subtype=subtype))
    assert np.max(np.abs(decoded - y)) <= step + 1e-7


def test_many_channels_average_to_mono(tmp_path):
    y = speech_like(10)
    gains = np.linspace(0.2, 1.0, 12)
    decoded = decode_audio(write(tmp_path / "twelve.wav", y[:, None] * gains, SR,
                                 subtype="FLOAT"))
    np.testing.assert_allclose(decoded, y * gains.mean(), atol=1e-6)


def test_stereo_is_the_mean_of_the_channels(tmp_path):
    left, right = speech_like(4), speech_like(5)
    decoded = decode_audio(write(tmp_path / "s.wav", np.stack([left, right], axis=1), SR,
                                 subtype="FLOAT"))
    np.testing.assert_allclose(decoded, (left + right) / 2, atol=1e-6)


def test_resampling_keeps_a_tone_in_the_passband_and_removes_one_above(tmp_path):
    t = np.arange(48000) / 48000
    passband = decode_audio(write(tmp_path / "a.wav", 0.5 * np.sin(2 * np.pi * 3000 * t),
                                  48000, subtype="FLOAT"))
    above = decode_audio(write(tmp_path / "b.wav", 0.5 * np.sin(2 * np.pi * 9000 * t),
                               48000, subtype="FLOAT"))
    assert passband.size == SR
    middle = slice(2000, -2000)
    assert np.sqrt(np.mean(passband[middle] ** 2)) == pytest.approx(0.5 / np.sqrt(2), rel=1e-3)
    assert np.sqrt(np.mean(above[middle] ** 2)) < 1e-4  # 9 kHz is above the 8 kHz Nyquist


def test_bytes_and_file_objects_decode_like_paths(tmp_path):
    path = write(tmp_path / "a.flac", speech_like(6), SR)
    expected = decode_audio(path)
    np.testing.assert_array_equal(decode_audio(path.read_bytes()), expected)
    with open(path, "rb") as handle:
        np.testing.assert_array_equal(decode_audio(handle), expected)


def test_non_finite_samples_are_zeroed(tmp_path):
    y = speech_like(7)
    y[100], y[200] = np.nan, np.inf
    decoded = decode_audio(write(tmp_path / "nan.wav", y, SR, subtype="FLOAT"))
    assert np.all(np.isfinite(decoded))
    assert decoded[100] == 0 and decoded[200] == 0
    assert decoded[300] == y[300]


def test_max_seconds_crops(tmp_path):
    decoded = decode_audio(write(tmp_path / "a.wav", speech_like(8), SR), max_seconds=0.5)
    assert decoded.size == SR // 2


def encode_with_pyav(path, codec: str, container_format: str | None = None,
                     sr: int = 44100, seconds: float = 1.0, layout: str = "stereo") -> None:
    """Write a 440 Hz tone with one of PyAV's encoders (skip the test if it is missing)."""
    try:
        av.codec.Codec(codec, "w")
    except Exception:  # noqa: BLE001 - any lookup failure means the encoder is not built in
        pytest.skip(f"PyAV's FFmpeg has no {codec} encoder")
    t = np.arange(int(sr * seconds)) / sr
    tone = (0.4 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)
    with av.open(str(path), "w", format=container_format) as out:
        stream = out.add_stream(codec, rate=sr, layout=layout)
        stream.codec_context.options = {"strict": "experimental"}  # FFmpeg's own vorbis encoder
        fmt = stream.codec_context.codec.audio_formats[0].name
        resampler = av.AudioResampler(format=fmt, layout=layout, rate=sr)
        channels = 2 if layout == "stereo" else 1
        block = 1024
        for start in range(0, tone.size, block):
            chunk = np.tile(tone[start:start + block], (channels, 1))
            frame = av.AudioFrame.from_ndarray(chunk, format="fltp", layout=layout)
            frame.sample_rate = sr
            for converted in resampler.resample(frame):
                out.mux(stream.encode(converted))
        out.mux(stream.encode(None))


@pytest.mark.parametrize("suffix, codec, container_format", [
    (".mp3", "libmp3lame", None), (".ogg", "libvorbis", None), (".ogg", "vorbis", None),
    (".ogg", "libopus", None), (".m4a", "aac", "mp4")])
def test_lossy_formats_decode_to_the_tone(tmp_path, suffix, codec, container_format):
    path = tmp_path / f"tone{suffix}"
    encode_with_pyav(path, codec, container_format, sr=48000 if codec == "libopus" else 44100)
    decoded = decode_audio(path)
    assert abs(decoded.size - SR) < 0.1 * SR  # encoder delay and padding only
    spectrum = np.abs(np.fft.rfft(decoded * np.hanning(decoded.size)))
    peak_hz = np.argmax(spectrum) * SR / decoded.size
    assert peak_hz == pytest.approx(440, abs=3)


def encode_video(path, *, with_audio: bool) -> None:
    with av.open(str(path), "w") as out:
        video = out.add_stream("mpeg4", rate=10)
        video.width, video.height, video.pix_fmt = 64, 48, "yuv420p"
        audio = out.add_stream("aac", rate=SR, layout="mono") if with_audio else None
        for i in range(10):
            image = np.full((48, 64, 3), 20 * i, dtype=np.uint8)
            out.mux(video.encode(av.VideoFrame.from_ndarray(image, format="rgb24")))
        out.mux(video.encode(None))
        if audio is not None:
            t = np.arange(SR) / SR
            tone = (0.4 * np.sin(2 * np.pi * 1000 * t)).astype(np.float32)[None]
            frame = av.AudioFrame.from_ndarray(tone, format="fltp", layout="mono")
            frame.sample_rate = SR
            out.mux(audio.encode(frame))
            out.mux(audio.encode(None))


def test_audio_track_of_a_video_decodes(tmp_path):
    path = tmp_path / "clip.mp4"
    encode_video(path, with_audio=True)
    decoded = decode_audio(path)
    spectrum = np.abs(np.fft.rfft(decoded))
    assert np.argmax(spectrum) * SR / decoded.size == pytest.approx(1000, abs=5)


def test_a_video_without_audio_raises_no_audio_stream(tmp_path):
    path = tmp_path / "silent.mp4"
    encode_video(path, with_audio=False)
    with pytest.raises(NoAudioStream, match="silent.mp4"):
        decode_audio(path)


def test_a_corrupt_file_raises_naming_the_file(tmp_path):
    path = tmp_path / "broken.wav"
    path.write_bytes(b"RIFF\x00\x00\x00\x00WAVEfmt " + bytes(range(256)) * 4)
    with pytest.raises(AudioDecodeError, match="broken.wav"):
        decode_audio(path)


def test_random_bytes_missing_and_empty_files_raise(tmp_path):
    garbage = tmp_path / "noise.mp3"
    garbage.write_bytes(np.random.default_rng(0).bytes(4096))
    empty = tmp_path / "empty.flac"
    empty.write_bytes(b"")
    for path in (garbage, empty, tmp_path / "missing.wav"):
        with pytest.raises(AudioDecodeError, match=path.name):
            decode_audio(path)
    with pytest.raises(AudioDecodeError):
        decode_audio(b"")


def test_no_audio_stream_is_an_audio_decode_error():
    assert issubclass(NoAudioStream, AudioDecodeError)


def test_decode_output_feeds_the_context(tmp_path):
    y = speech_like(9)
    context = AudioContext(decode_audio(write(tmp_path / "a.wav", y, SR, subtype="FLOAT")), SR)
    assert context.magnitude().shape == (257, 1 + y.size // 160)
