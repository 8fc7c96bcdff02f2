"""Each perturbation's effect on synthetic inputs, checked against independent expectations."""
from pathlib import Path

import numpy as np
import pytest

from features import perturbations as P
from features.compression import jpeg_quality_from_bytes
from features.context import ImageContext
from pipelines import extract
from pipelines.options import read_config_section

SR = 16000


def textured_image(seed=0, shape=(64, 96)):
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, size=(*shape, 3), dtype=np.uint8)


def tone(freq, seconds=1.0, amplitude=0.5, sr=SR):
    t = np.arange(int(seconds * sr)) / sr
    return (amplitude * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def snr_db(clean, noisy):
    return 10 * np.log10(np.mean(clean.astype(np.float64) ** 2)
                         / np.mean((noisy.astype(np.float64) - clean) ** 2))


def power_at(signal, freq, sr=SR):
    """Power of the DFT bin at ``freq`` (signal of whole periods, so no leakage)."""
    spectrum = np.fft.rfft(signal.astype(np.float64))
    return np.abs(spectrum[int(round(freq * signal.size / sr))]) ** 2


# Images ----------------------------------------------------------------------------------------

@pytest.mark.parametrize("quality", [35, 60, 90])
def test_recompressed_file_has_the_requested_quality(quality):
    data = P.encode_jpeg(textured_image(), quality)
    assert data[:2] == b"\xff\xd8"
    assert jpeg_quality_from_bytes(data) == quality


def test_jpeg_error_shrinks_as_quality_grows():
    rgb = textured_image()
    errors = [np.abs(P.jpeg(rgb, q).astype(int) - rgb).mean() for q in (20, 60, 95)]
    assert P.jpeg(rgb, 60).shape == rgb.shape and P.jpeg(rgb, 60).dtype == np.uint8
    assert errors[0] > errors[1] > errors[2] > 0


@pytest.mark.parametrize("factor, expected", [(0.5, (32, 48)), (0.75, (48, 72)), (1.5, (96, 144)),
                                              (0.01, (1, 1))])
def test_resize_gives_the_expected_shape(factor, expected):
    assert P.resize(textured_image(), factor).shape == (*expected, 3)


def test_halving_averages_each_two_by_two_block():
    rgb = textured_image()
    blocks = rgb.reshape(32, 2, 48, 2, 3).astype(float).mean(axis=(1, 3))
    assert np.abs(P.resize(rgb, 0.5).astype(float) - blocks).max() <= 0.5 + 1e-9


def test_mirror_reverses_each_row_and_zero_leaves_the_image_as_is():
    rgb = np.zeros((2, 3, 3), np.uint8)
    rgb[0, :, 0] = [10, 20, 30]           # red ramp along the first row
    rgb[1, 0, 2] = 200                    # one blue pixel at the left end of the second row
    mirrored = P.mirror(rgb, 1)
    assert mirrored[0, :, 0].tolist() == [30, 20, 10]
    assert mirrored[1, 2, 2] == 200 and mirrored[1, 0, 2] == 0
    unchanged = P.mirror(rgb, 0)
    assert np.array_equal(unchanged, rgb) and unchanged is not rgb
    assert rgb[0, 0, 0] == 10             # the input is untouched


def test_mirror_is_named_in_grids_and_augmentation_plans():
    assert P.parse_perturb_grid(["mirror"]) == [("mirror", 1.0)]
    with pytest.raises(P.PerturbationError, match="must be an integer"):
        P.parse_perturb_grid(["mirror=0.5"])
    spec = P.AugmentSpec.from_mapping({"copies": 3, "perturbations": {"mirror": [0, 1]}})
    flips = {row.steps for row in P.augment_plan([f"f{i}.jpg" for i in range(40)], spec)}
    assert flips == {(("mirror", 0.0),), (("mirror", 1.0),)}


def test_the_training_config_mirrors_resizes_then_recompresses_every_copy():
    path = Path(__file__).parents[1] / "configs" / "train_image.yaml"
    section = read_config_section(path, "extract", extract.OPTIONS)   # as `extract` reads it
    spec = P.AugmentSpec.from_mapping(section["augment"])
    rows = P.augment_plan([f"f{i}.jpg" for i in range(50)], spec)
    assert len(rows) == 50
    for row in rows:
        assert [name for name, _ in row.steps] == ["mirror", "resize", "jpeg"]
        (_, flip), (_, factor), (_, quality) = row.steps
        assert flip == 1 and 0.6 <= factor <= 1.0 and 70 <= quality <= 95


def test_blur_attenuates_a_sinusoid_by_the_gaussian_transfer_function():
    # A Gaussian of std sigma multiplies frequency f (cycles/pixel) by exp(-2 pi^2 sigma^2 f^2).
    sigma, period = 1.5, 8
    x = np.arange(128)
    row = 128 + 100 * np.cos(2 * np.pi * x / period)
    rgb = np.repeat(np.tile(row, (128, 1))[..., None], 3, axis=2).round().astype(np.uint8)
    blurred = P.blur(rgb, sigma)[:, :, 0].astype(float)
    gain = np.sqrt(power_at(blurred.mean(axis=0), 1 / period, sr=1)
                   / power_at(rgb[:, :, 0].astype(float).mean(axis=0), 1 / period, sr=1))
    assert gain == pytest.approx(np.exp(-2 * np.pi ** 2 * sigma ** 2 / period ** 2), abs=0.02)


def test_blur_removes_high_frequency_energy():
    rgb = textured_image(shape=(128, 128))

    def high_energy(image):
        power = np.abs(np.fft.fft2(image[:, :, 1].astype(float))) ** 2
        return power[np.hypot(*np.meshgrid(np.fft.fftfreq(128), np.fft.fftfreq(128))) > 0.25].sum()

    # Above f = 0.25 cycles/pixel the power transfer exp(-4 pi^2 sigma^2 f^2) is below 0.085.
    assert high_energy(P.blur(rgb, 1.0)) < np.exp(-4 * np.pi ** 2 * 0.25 ** 2) * high_energy(rgb)
    assert np.array_equal(P.blur(rgb, 0.0), rgb)


def test_gaussian_noise_has_the_requested_sigma_and_is_seeded():
    grey = np.full((200, 200, 3), 128, np.uint8)
    noisy = P.gaussian_noise(grey, 5.0, np.random.default_rng(1))
    difference = noisy.astype(float) - 128
    assert difference.std() == pytest.approx(5.0, rel=0.02)  # rounding adds 1/12 of variance
    assert abs(difference.mean()) < 0.05
    assert np.array_equal(noisy, P.gaussian_noise(grey, 5.0, np.random.default_rng(1)))
    assert not np.array_equal(noisy, P.gaussian_noise(grey, 5.0, np.random.default_rng(2)))


def test_launder_is_deterministic_and_shrinks_then_recompresses():
    rgb = textured_image(shape=(100, 60))
    first, second = P.launder(rgb), P.launder(rgb.copy())
    assert np.array_equal(first, second)
    assert first.shape == (80, 48, 3)
    assert not np.array_equal(first, P.resize(rgb, 0.8))  # the JPEG step changed the pixels


# Audio -----------------------------------------------------------------------------------------

@pytest.mark.parametrize("snr", [0.0, 10.0, 30.0])
def test_added_white_noise_has_the_requested_snr(snr):
    clean = tone(440)
    noisy = P.white_noise(clean, snr, np.random.default_rng(0))
    assert abs(snr_db(clean, noisy) - snr) < 0.5
    assert noisy.dtype == np.float32 and noisy.shape == clean.shape


def test_white_noise_leaves_silence_silent():
    assert not np.any(P.white_noise(np.zeros(100, np.float32), 10.0, np.random.default_rng(0)))


@pytest.mark.parametrize("db", [-12.0, -6.0, 3.5, 6.0])
def test_gain_changes_the_level_by_exactly_db(db):
    y = tone(300)
    out = P.gain(y, db)
    measured = 20 * np.log10(np.sqrt(np.mean(out.astype(np.float64) ** 2))
                             / np.sqrt(np.mean(y.astype(np.float64) ** 2)))
    assert measured == pytest.approx(db, abs=1e-5)


def test_resampling_keeps_the_band_below_the_new_nyquist_and_removes_the_rest():
    low, high = tone(1000), tone(6000)
    kept, removed = P.resample(low, SR, 8000), P.resample(high, SR, 8000)
    assert kept.shape == low.shape and kept.dtype == np.float32
    assert snr_db(low[2000:-2000], kept[2000:-2000]) > 40  # passband: unchanged
    assert power_at(removed, 6000) < 1e-5 * power_at(high, 6000)  # 6 kHz > 4 kHz Nyquist


@pytest.mark.parametrize("fmt", ["mp3", "aac"])
def test_lossy_coding_keeps_length_and_alignment(fmt):
    if P.available_encoder(fmt) is None:
        pytest.skip(f"no {fmt} encoder in this FFmpeg build")
    rng = np.random.default_rng(0)
    # Band-limited noise: any misalignment by even one sample would ruin the SNR.
    y = np.convolve(rng.standard_normal(SR), np.hanning(9) / 4, mode="same").astype(np.float32)
    out = P.lossy(y, SR, fmt, 128)
    assert out.shape == y.shape and out.dtype == np.float32
    assert 8 < snr_db(y, out) < 60  # close, but lossy


def test_a_missing_encoder_is_reported(monkeypatch):
    monkeypatch.setitem(P.ENCODERS, "mp3", ("no_such_encoder",))
    assert "no_such_encoder" in P.unavailable_reason("mp3")
    with pytest.raises(P.CodecUnavailable, match="no mp3 encoder"):
        P.lossy(tone(440), SR, "mp3", 64)
    assert P.unavailable_reason("jpeg") is None


def test_audio_launder_quantises_to_16_bits_and_cuts_the_top_band():
    y = tone(1000) + tone(7500, amplitude=0.2)
    out = P.launder_audio(y, SR)
    steps = out.astype(np.float64) * 32768
    assert np.array_equal(steps, np.round(steps))
    assert power_at(out, 7500) < 1e-4 * power_at(y, 7500)  # above 7 kHz (14 kHz Nyquist)
    assert power_at(out, 1000) == pytest.approx(power_at(y, 1000), rel=0.01)


# Specs, contexts, augmentation -----------------------------------------------------------------

def test_grid_of_the_issue_parses_in_order():
    grid = P.parse_perturb_grid(["jpeg=50,70,90", "resize=0.5,0.75", "blur=1,2", "noise=2,5"])
    assert grid == [("jpeg", 50), ("jpeg", 70), ("jpeg", 90), ("resize", 0.5), ("resize", 0.75),
                    ("blur", 1), ("blur", 2), ("noise", 2), ("noise", 5)]
    assert P.parse_perturb_grid(["launder jpeg=80"]) == [("launder", 0.8), ("jpeg", 80)]
    assert P.parse_perturb_grid(["snr=10", "mp3=64", "launder"], "audio") == [
        ("snr", 10), ("mp3", 64), ("launder", 14000)]


@pytest.mark.parametrize("token, message", [
    ("jpeg=50.5", "must be an integer"), ("jpeg=0", r"must be in \[1, 100\]"),
    ("sharpen=1", "unknown image perturbation 'sharpen'"), ("blur=x", "'x' is not a number"),
    ("blur", "needs values"), ("noise=2,2", "repeated"), ("resize=nan", "must be in")])
def test_a_bad_token_is_named_in_the_error(token, message):
    with pytest.raises(P.PerturbationError, match=message) as error:
        P.parse_perturb_grid(["jpeg=90", token])
    assert repr(token) in str(error.value)


def test_image_perturbation_names_are_refused_for_audio():
    with pytest.raises(P.PerturbationError, match="unknown audio perturbation 'jpeg'"):
        P.parse_perturb_grid(["jpeg=90"], "audio")


def test_perturb_context_builds_a_new_context_from_the_perturbed_sample():
    rgb = textured_image()
    context = ImageContext(rgb)
    perturbed = P.perturb_context(context, [("resize", 0.5), ("jpeg", 80)],
                                  np.random.default_rng(0))
    assert isinstance(perturbed, ImageContext) and perturbed.shape == (32, 48)
    assert np.array_equal(context.rgb, rgb)  # the input is untouched
    from features.audio_context import AudioContext
    audio = P.perturb_context(AudioContext(tone(440), SR), [("gain", -6.0)], None)
    assert audio.sr == SR and np.max(np.abs(audio.y)) == pytest.approx(0.5 * 10 ** (-6 / 20),
                                                                      rel=1e-4)


def test_sample_rng_depends_on_seed_and_name_only():
    draw = lambda seed, key: P.sample_rng(seed, key).integers(1 << 30)  # noqa: E731
    assert draw(0, "a.jpg") == draw(0, "a.jpg")
    assert len({draw(0, "a.jpg"), draw(1, "a.jpg"), draw(0, "b.jpg")}) == 3


AUGMENT = {"copies": 3, "steps": 2,
           "perturbations": {"resize": [0.5, 1.0], "jpeg": [60, 95], "noise": [0, 4]}}


def test_augment_plan_names_rows_and_draws_strengths_in_range():
    spec = P.AugmentSpec.from_mapping(AUGMENT)
    plan = P.augment_plan(["a.jpg", "b/c.png"], spec, seed=7)
    assert [r.name for r in plan] == ["a.jpg#aug1", "a.jpg#aug2", "a.jpg#aug3",
                                      "b/c.png#aug1", "b/c.png#aug2", "b/c.png#aug3"]
    assert [P.source_name(r.name) for r in plan] == [r.source for r in plan]
    order = ["resize", "jpeg", "noise"]
    for row in plan:
        assert len(row.steps) == 2 and len({name for name, _ in row.steps}) == 2
        positions = [order.index(n) for n, _ in row.steps]
        assert positions == sorted(positions)  # chained in the listed order
        for name, strength in row.steps:
            low, high = AUGMENT["perturbations"][name]
            assert low <= strength <= high
            if name == "jpeg":
                assert strength == int(strength)


def test_augment_plan_of_a_file_does_not_depend_on_the_others():
    spec = P.AugmentSpec.from_mapping(AUGMENT)
    alone = P.augment_plan(["b/c.png"], spec, seed=7)
    together = P.augment_plan(["x.png", "b/c.png", "y.png"], spec, seed=7)
    assert alone == [r for r in together if r.source == "b/c.png"]
    assert alone != P.augment_plan(["b/c.png"], spec, seed=8)


def test_source_name_of_an_original_row_is_itself():
    assert P.source_name("dir/a#aug.jpg") == "dir/a#aug.jpg"
    assert P.source_name("dir/a.jpg#aug12") == "dir/a.jpg"


@pytest.mark.parametrize("mapping, message", [
    ({"copies": 0, "perturbations": {"blur": [0, 1]}}, "copies must be an integer"),
    ({"perturbations": {"blur": [2, 1]}}, "low 2 is above high 1"),
    ({"perturbations": {"blur": [0]}}, r"expected \[low, high\]"),
    ({"perturbations": {"jpeg": [0, 90]}}, r"must be in \[1, 100\]"),
    ({"steps": 2, "perturbations": {"blur": [0, 1]}}, "only 1 perturbation"),
    ({"copy": 1, "perturbations": {"blur": [0, 1]}}, r"unknown key\(s\) \['copy'\]")])
def test_bad_augment_specs_are_refused(mapping, message):
    with pytest.raises(P.PerturbationError, match=message):
        P.AugmentSpec.from_mapping(mapping)


def test_apply_runs_an_augmented_row_reproducibly():
    spec = P.AugmentSpec.from_mapping({"perturbations": {"noise": [3, 4]}})
    row = P.augment_plan(["a.png"], spec, seed=0)[0]
    rgb = np.full((32, 32, 3), 100, np.uint8)
    first = P.apply_steps(row.steps, rgb, np.random.default_rng(row.seed))
    again = P.apply(row.steps[0], rgb, np.random.default_rng(row.seed))
    assert np.array_equal(first, again) and not np.array_equal(first, rgb)
