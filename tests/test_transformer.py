"""FeatureTransformer: the extractor as a scikit-learn transformer over file paths."""
import cv2
import numpy as np
import pytest
from sklearn.base import clone
from sklearn.exceptions import NotFittedError
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score
from sklearn.pipeline import make_pipeline

from features.extractor import FeatureTransformer, unreadable_files_message

COLOUR = {"colour": {}}


def _write(folder, name, rgb):
    path = folder / name
    assert cv2.imwrite(str(path), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))  # PNG: lossless
    return str(path)


def _grey_and_colourful(folder, n, seed):
    """n grey images (R = G = B, saturation 0) and n of random colours, labels 0 and 1."""
    rng = np.random.default_rng(seed)
    paths, labels = [], []
    for i in range(n):
        grey = rng.integers(0, 256, (40, 40), dtype=np.uint8)
        paths.append(_write(folder, f"grey_{seed}_{i}.png", np.dstack([grey] * 3)))
        colourful = rng.integers(0, 256, (40, 40, 3), dtype=np.uint8)
        paths.append(_write(folder, f"colour_{seed}_{i}.png", colourful))
        labels += [0, 1]
    return paths, np.array(labels)


def test_a_pipeline_of_transformer_and_classifier_ranks_unseen_images(tmp_path):
    train, y_train = _grey_and_colourful(tmp_path, 6, seed=0)
    test, y_test = _grey_and_colourful(tmp_path, 5, seed=1)
    model = make_pipeline(FeatureTransformer(families=COLOUR), LogisticRegression(max_iter=1000))
    model.fit(train, y_train)
    assert roc_auc_score(y_test, model.predict_proba(test)[:, 1]) == 1.0


def test_rows_hold_the_families_values_by_their_definition(tmp_path):
    ramp = np.tile(np.arange(0, 250, 5, dtype=np.uint8), (30, 1))  # 30 x 50 grey ramp
    red = np.zeros((30, 50, 3), np.uint8)
    red[..., 0] = 255
    paths = [_write(tmp_path, "ramp.png", np.dstack([ramp] * 3)), _write(tmp_path, "red.png", red)]
    transformer = FeatureTransformer(families=COLOUR).fit(paths)
    rows = dict(zip(transformer.get_feature_names_out(), transformer.transform(paths).T))
    # HSV saturation (max - min) / max: 0 on any grey, 1 on pure red.
    np.testing.assert_allclose(rows["colour__saturation__mean"], [0.0, 1.0])
    # R = G = B on the ramp: the channels are perfectly correlated.
    assert rows["colour__correlation__r_g"][0] == pytest.approx(1.0, abs=1e-9)


def test_pandas_output_names_every_column(tmp_path):
    paths, _ = _grey_and_colourful(tmp_path, 2, seed=0)
    transformer = FeatureTransformer(families=COLOUR).set_output(transform="pandas")
    frame = transformer.fit_transform(paths)
    assert frame.shape == (4, 30)
    assert list(frame.columns) == list(transformer.get_feature_names_out())
    assert "colour__cb_cr__correlation" in frame.columns


def test_parallel_rows_come_back_in_the_order_of_the_paths(tmp_path):
    paths, _ = _grey_and_colourful(tmp_path, 5, seed=2)
    serial = FeatureTransformer(families=COLOUR).fit(paths).transform(paths)
    parallel = FeatureTransformer(families=COLOUR, n_jobs=-1).fit(paths).transform(paths)
    np.testing.assert_array_equal(serial, parallel)
    # Grey and colourful images alternate, and so does the mean saturation.
    saturation = serial[:, 0]
    assert np.all(saturation[0::2] == 0) and np.all(saturation[1::2] > 0.3)


def test_verbose_shows_progress_over_the_files(tmp_path, capsys):
    paths, _ = _grey_and_colourful(tmp_path, 3, seed=3)
    FeatureTransformer(families=COLOUR, verbose=True).fit(paths).transform(paths)
    shown = capsys.readouterr().err
    assert "features: 100%" in shown and "6/6" in shown  # the bar counts files
    FeatureTransformer(families=COLOUR).fit(paths).transform(paths)
    assert "features" not in capsys.readouterr().err


def test_unreadable_files_are_named_in_the_error(tmp_path):
    good = _write(tmp_path, "good.png", np.full((20, 20, 3), 90, np.uint8))
    corrupt = tmp_path / "corrupt.jpg"
    corrupt.write_bytes(b"not an image at all")
    missing = str(tmp_path / "missing.png")
    paths = [good, str(corrupt), missing]
    transformer = FeatureTransformer(families=COLOUR).fit(paths)
    with pytest.raises(ValueError, match="2 of 3 files") as raised:
        transformer.transform(paths)
    assert "corrupt.jpg" in str(raised.value) and "missing.png" in str(raised.value)
    assert "good.png" not in str(raised.value)


def test_errors_nan_keeps_going_with_nan_rows_and_a_warning(tmp_path):
    good = _write(tmp_path, "good.png", np.full((20, 20, 3), 90, np.uint8))
    missing = str(tmp_path / "missing.png")
    transformer = FeatureTransformer(families=COLOUR, errors="nan").fit([good])
    with pytest.warns(UserWarning, match="missing.png"):
        rows = transformer.transform([good, missing])
    assert np.isfinite(rows[0]).all() and np.isnan(rows[1]).all()


def test_options_are_checked_and_kept_as_scikit_learn_expects(tmp_path):
    with pytest.raises(ValueError, match="errors must be 'raise' or 'nan'"):
        FeatureTransformer(errors="ignore").fit([])
    with pytest.raises(NotFittedError):
        FeatureTransformer(families=COLOUR).transform([])
    copy = clone(FeatureTransformer(families=COLOUR, n_jobs=2, errors="nan"))
    assert copy.get_params()["errors"] == "nan" and copy.get_params()["n_jobs"] == 2


def test_audio_files_are_decoded_to_one_rate_before_the_features(tmp_path):
    soundfile = pytest.importorskip("soundfile")
    paths = []
    for frequency, rate in ((500, 16000), (2000, 44100)):
        time = np.arange(rate) / rate
        path = tmp_path / f"tone_{frequency}.wav"
        soundfile.write(path, 0.5 * np.sin(2 * np.pi * frequency * time), rate)
        paths.append(str(path))
    transformer = FeatureTransformer(modality="audio", families={"spectral": {}}).fit(paths)
    rows = dict(zip(transformer.get_feature_names_out(), transformer.transform(paths).T))
    # The spectral centroid of a pure tone is its frequency, whatever the file's own rate.
    np.testing.assert_allclose(rows["spectral__centroid_p50"], [500, 2000], rtol=0.01)


def test_the_message_names_the_first_unreadable_files_and_counts_all():
    paths = [f"f{i}.jpg" for i in range(9)]
    rows = np.zeros((9, 2), np.float32)
    errors = [None] * 9
    for i in (1, 2, 3, 4, 5, 6, 8):  # f8 and the others gave no features at all
        rows[i], errors[i] = np.nan, "OSError: unreadable"
    rows[7, 0], errors[7] = np.nan, "family colour: ValueError"  # one family failed: read
    message = unreadable_files_message(paths, rows, errors)
    assert message.startswith("7 of 9 files could not be read: f1.jpg: OSError")
    assert "f5.jpg" in message and "f6.jpg" not in message and message.endswith(" ...")
    assert "f7.jpg" not in message and "f0.jpg" not in message
    assert unreadable_files_message(paths[:1], rows[:1], errors[:1]) is None
