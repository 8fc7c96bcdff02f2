"""Clips: face crops of sampled frames aggregated over frames, the audio track (or its absence),
temporal statistics with hand-computed values, and extract -> fit -> predict writing
``video_name,y_pred``, on mp4 files encoded in the test with PyAV (and on the shared sample)."""
import csv
import math

import av
import numpy as np
import pyarrow.parquet as pq
import pytest

from features.audio_context import AudioContext
from features.clip import ClipContext
from features.extractor import FeatureExtractor, extract_files
from features.registry import FeatureConfig, FeatureConfigError
from pipelines import extract, fit, predict

SIZE = 64
MINIMAL = FeatureConfig.from_preset("minimal", "clip")


def grey_frame(level, size=(SIZE, SIZE)) -> np.ndarray:
    return np.full((*size, 3), level, dtype=np.uint8)


def textured_frames(rng, n: int, grid: bool, size=(SIZE, SIZE)) -> list[np.ndarray]:
    """Smooth random frames; with ``grid``, a period-2 pattern added (an up-sampling trace)."""
    import cv2

    frames = []
    for _ in range(n):
        base = cv2.GaussianBlur(rng.normal(128, 40, (*size, 3)), (0, 0), 2)
        if grid:
            base[::2, ::2] += 30
        frames.append(np.clip(base, 0, 255).astype(np.uint8))
    return frames


def write_clip(path, frames, *, audio_seconds: float | None = 1.0, tone_hz: float = 440.0):
    """An mp4 with the given frames (MPEG-4 part 2, near lossless) and optionally an AAC track."""
    height, width = frames[0].shape[:2]
    with av.open(str(path), "w") as out:
        video = out.add_stream("mpeg4", rate=25)
        video.width, video.height, video.pix_fmt = width, height, "yuv420p"
        video.codec_context.options = {"qscale": "2"}
        audio = None if audio_seconds is None else out.add_stream("aac", rate=16000,
                                                                  layout="mono")
        for image in frames:
            out.mux(video.encode(av.VideoFrame.from_ndarray(image, format="rgb24")))
        out.mux(video.encode(None))
        if audio is not None:
            t = np.arange(int(audio_seconds * 16000)) / 16000
            tone = (0.3 * np.sin(2 * np.pi * tone_hz * t)).astype(np.float32)[None, :]
            frame = av.AudioFrame.from_ndarray(tone, format="fltp", layout="mono")
            frame.sample_rate = 16000
            out.mux(audio.encode(frame))
            out.mux(audio.encode(None))


def columns(names, prefix):
    return [i for i, n in enumerate(names) if n.startswith(prefix)]


def test_clip_presets_accept_image_audio_and_clip_families_only_for_clips():
    families = {family for family, _ in MINIMAL.families}
    assert families == {"fft", "mfcc", "clip"}
    with pytest.raises(FeatureConfigError, match="is for clip, not image"):
        FeatureConfig.from_mapping("image", {"clip": {}})
    with pytest.raises(FeatureConfigError, match="is for audio, not image"):
        FeatureConfig.from_mapping("image", {"mfcc": {}})


def test_image_features_are_aggregated_over_frames():
    # Uniform frames: grey (Cb = 0 once centred), then RGB (100, 100, 200) with BT.601
    # Cb = -0.168736 R - 0.331264 G + 0.5 B = 50.0, then grey: Cb means 0, 50, 0.
    frames = [grey_frame(128), np.tile(np.uint8([100, 100, 200]), (SIZE, SIZE, 1)),
              grey_frame(128)]
    config = FeatureConfig.from_mapping("clip", {"colour": {}})
    extractor = FeatureExtractor(config)
    row, failures = extractor.transform_context(ClipContext(frames))
    assert failures == []
    values = dict(zip(extractor.names, row))
    assert values["colour__cb__mean__frames_mean"] == pytest.approx(50 / 3, abs=0.01)
    assert values["colour__cb__mean__frames_std"] == pytest.approx(
        math.sqrt(((50 / 3) ** 2 * 2 + (100 / 3) ** 2) / 3), abs=0.01)
    assert values["colour__cb__mean__frames_max"] == pytest.approx(50, abs=0.01)
    stats = [n.rsplit("__", 1)[1] for n in extractor.names if n.startswith("colour__")]
    assert stats[:3] == ["frames_mean", "frames_std", "frames_max"]
    assert stats.count("frames_max") * 3 == len(stats)


def clip_values(frames, face_margin=1.5):
    extractor = FeatureExtractor(FeatureConfig.from_mapping(
        "clip", {"clip": {"n_frames": len(frames), "face_margin": face_margin}}))
    row, failures = extractor.transform_context(ClipContext(frames))
    assert failures == []
    return {n.removeprefix("clip__"): float(v) for n, v in zip(extractor.names, row)}


def test_temporal_statistics_of_a_brightness_step():
    values = clip_values([grey_frame(100), grey_frame(100), grey_frame(150)])
    # Pairs: no change, then +50 grey levels; flat frames have no residual.
    assert values["intensity_difference_mean"] == pytest.approx(25 / 255, abs=1e-6)
    assert values["intensity_difference_std"] == pytest.approx(25 / 255, abs=1e-6)
    assert values["intensity_difference_max"] == pytest.approx(50 / 255, abs=1e-6)
    for feature in ("residual_energy_change", "residual_difference"):
        assert values[f"{feature}_max"] == pytest.approx(0.0, abs=1e-3)  # float32 resizing
    assert values["has_audio"] == 0.0
    assert values["face_found_share"] == 0.0  # flat frames: the central fallback square


def test_temporal_statistics_of_a_contrast_doubling():
    rng = np.random.default_rng(1)
    texture = rng.integers(-20, 21, size=(SIZE, SIZE, 1))
    first = np.repeat(128 + texture, 3, axis=2).astype(np.uint8)
    second = np.repeat(128 + 2 * texture, 3, axis=2).astype(np.uint8)
    values = clip_values([first, second])
    # The residual doubles: its energy changes by ln 2 and |2r - r| / (|r| + |2r|) = 1/3.
    assert values["residual_energy_change_mean"] == pytest.approx(math.log(2), abs=2e-3)
    assert values["residual_difference_mean"] == pytest.approx(1 / 3, abs=2e-3)
    assert values["residual_energy_change_std"] == 0.0  # a single pair


def test_identical_frames_have_no_temporal_change_and_one_frame_gives_zeros():
    frames = textured_frames(np.random.default_rng(2), 1, grid=False)
    for clip in ([frames[0]] * 4, frames):
        values = clip_values(clip)
        assert all(values[f"{f}_{s}"] == 0.0 for f in ("residual_energy_change",
                                                         "residual_difference",
                                                         "intensity_difference")
                   for s in ("mean", "std", "max"))


def test_invalid_clip_parameters_are_rejected_when_the_extractor_is_built():
    for params in ({"n_frames": 0}, {"face_margin": 0.5}):
        with pytest.raises(ValueError, match="n_frames >= 1 and face_margin >= 1"):
            FeatureExtractor(FeatureConfig.from_mapping("clip", {"clip": params}))


def test_names_are_identical_whatever_the_clip(tmp_path):
    rng = np.random.default_rng(3)
    small, large = tmp_path / "small.mp4", tmp_path / "large.mp4"
    write_clip(small, textured_frames(rng, 12, grid=False), audio_seconds=0.5)
    write_clip(large, textured_frames(rng, 30, grid=True, size=(96, 160)), audio_seconds=2.0)
    rows, errors = extract_files([small, large], MINIMAL)
    assert errors == [None, None]
    assert np.isfinite(rows).all()
    names = FeatureExtractor(MINIMAL).names
    assert len(names) == rows.shape[1]
    image = [n for n in names if n.startswith("fft__")]
    assert image and all(n.endswith(("__frames_mean", "__frames_std", "__frames_max"))
                         for n in image)
    assert any(n.startswith("mfcc__") for n in names) and "clip__has_audio" in names
    assert rows[:, names.index("clip__has_audio")].tolist() == [1.0, 1.0]


def test_a_clip_without_audio_gets_nan_audio_features_not_an_error(tmp_path):
    rng = np.random.default_rng(4)
    silent, sound = tmp_path / "silent.mp4", tmp_path / "sound.mp4"
    frames = textured_frames(rng, 10, grid=False)
    write_clip(silent, frames, audio_seconds=None)
    write_clip(sound, frames)
    (rows_silent, rows_sound), errors = extract_files([silent, sound], MINIMAL)
    assert errors == [None, None]
    names = FeatureExtractor(MINIMAL).names
    audio, image = columns(names, "mfcc__"), columns(names, "fft__")
    assert np.isnan(rows_silent[audio]).all() and np.isfinite(rows_sound[audio]).all()
    assert np.isfinite(rows_silent[image]).all()
    np.testing.assert_allclose(rows_silent[image], rows_sound[image])  # same video
    assert rows_silent[names.index("clip__has_audio")] == 0.0


def test_an_undecodable_audio_track_keeps_the_row_and_reports_the_audio_families():
    frames = textured_frames(np.random.default_rng(5), 2, grid=False)
    extractor = FeatureExtractor(MINIMAL)
    row, failures = extractor.transform_context(
        ClipContext(frames, audio_error="clip.mp4: cannot decode audio"))
    assert failures == ["family mfcc: AudioDecodeError: clip.mp4: cannot decode audio"]
    assert np.isnan(row[columns(extractor.names, "mfcc__")]).all()
    assert np.isfinite(row[columns(extractor.names, "fft__")]).all()
    audio = AudioContext(np.zeros(1600, np.float32), 16000)
    row, failures = extractor.transform_context(ClipContext(frames, audio))
    assert failures == [] and row[extractor.names.index("clip__has_audio")] == 1.0


def test_n_frames_of_the_configuration_reaches_the_loader(tmp_path):
    path = tmp_path / "ramp.mp4"
    write_clip(path, [grey_frame(10 * i) for i in range(24)], audio_seconds=None)
    for n_frames, step in ((2, 120), (8, 30)):  # frames 6, 18; or every third frame
        config = FeatureConfig.from_mapping("clip", {"clip": {"n_frames": n_frames}})
        rows, errors = extract_files([path], config)
        names = FeatureExtractor(config).names
        value = rows[0, names.index("clip__intensity_difference_mean")] * 255
        assert errors == [None] and value == pytest.approx(step, abs=4)


def make_clip_dataset(root, n: int = 12):
    """Labelled clips (alternating smooth / gridded frames, one without audio) and a corrupt one.

    Returns the (video_name, target) rows in label-file order.
    """
    rng = np.random.default_rng(6)
    root.mkdir(parents=True)
    rows = []
    for i in range(n):
        name = f"clip_{i:02d}.mp4"
        write_clip(root / name, textured_frames(rng, 10, grid=i % 2 == 1),
                   audio_seconds=None if i == 3 else 0.5, tone_hz=300 + 40 * i)
        rows.append((name, i % 2))
    (root / "broken.mp4").write_bytes(rng.integers(0, 256, 4096, dtype=np.uint8).tobytes())
    rows.insert(4, ("broken.mp4", 1))
    with open(root / "labels.csv", "w", newline="") as handle:
        csv.writer(handle).writerows([("video_name", "target"), *rows])
    return rows


def extract_fit_predict(root, tmp_path, *fit_options):
    features, run = tmp_path / "features.parquet", tmp_path / "run"
    submission = tmp_path / "submission.csv"
    assert extract.main(["--data-root", str(root), "--out", str(features), "--modality", "clip",
                         "--preset", "minimal", "--n-jobs", "1"]) == 0
    assert fit.main(["--features", str(features), "--out", str(run), *fit_options]) == 0
    assert predict.main(["--model", str(run), "--data-root", str(root), "--out", str(submission),
                         "--n-jobs", "1"]) == 0
    with open(submission) as handle:
        return features, list(csv.reader(handle))


def test_extract_fit_predict_writes_video_name_in_input_order(tmp_path):
    root = tmp_path / "clips"
    rows = make_clip_dataset(root)
    features, lines = extract_fit_predict(root, tmp_path, "--folds", "2")
    table = pq.read_table(features)
    assert "broken.mp4" not in table.column("video_name").to_pylist()
    with open(features.with_suffix(".errors.csv")) as handle:
        errors = list(csv.DictReader(handle))
    assert [(e["video_name"], e["kind"]) for e in errors] == [("broken.mp4", "file")]
    assert lines[0] == ["video_name", "y_pred"]
    assert [line[0] for line in lines[1:]] == [name for name, _ in rows]
    scores = {name: float(score) for name, score in lines[1:]}
    assert scores["broken.mp4"] == 0.5  # the documented fallback
    assert all(0.0 <= s <= 1.0 for s in scores.values())


def test_shared_multiffdv_sample_end_to_end(shared_data, tmp_path):
    root = shared_data("video/multiffdv_sample")
    with open(root / "labels.csv") as handle:
        names = [row["img_name"] for row in csv.DictReader(handle)]
    features, lines = extract_fit_predict(root, tmp_path)  # 3 reals: fit lowers the folds to 3
    assert pq.read_table(features).num_rows == len(names) == 10
    assert lines[0] == ["video_name", "y_pred"]
    assert [line[0] for line in lines[1:]] == names
