"""pipelines.leakcheck on generated sets: a compression leak is found, an honest set is not."""
import csv
import json

import cv2
import numpy as np
import pytest
import soundfile

from pipelines import leakcheck
from pipelines.datasets import load_dataset


def write_labels(root, rows):
    with open(root / "labels.csv", "w", newline="") as handle:
        csv.writer(handle).writerows([("img_name", "target"), *rows])


def write_images(root, n, quality_of, seed=0):
    """Same content distribution in both classes; only the JPEG quality may differ."""
    rng = np.random.default_rng(seed)
    root.mkdir(parents=True)
    rows = []
    for i in range(n):
        image = cv2.GaussianBlur(rng.normal(128, 50, (48, 64, 3)), (0, 0), rng.uniform(0.5, 3))
        name = f"{i:03d}.jpg"
        cv2.imwrite(str(root / name), np.clip(image, 0, 255).astype(np.uint8),
                    [cv2.IMWRITE_JPEG_QUALITY, quality_of(i % 2, rng)])
        rows.append((name, i % 2))
    write_labels(root, rows)
    return root


def run(root, tmp_path, *extra):
    out = tmp_path / "leak.json"
    config = tmp_path / "leakcheck.yaml"  # a small single-threaded model: fast on a busy machine
    config.write_text("lightgbm: {n_estimators: 100, n_jobs: 1}\n")
    assert leakcheck.main(["--config", str(config), "--data-root", str(root), "--out", str(out),
                           "--n-jobs", "1", *extra]) == 0
    return json.loads(out.read_text())


def test_image_header_facts(tmp_path):
    rgb = np.random.default_rng(0).integers(0, 256, (30, 40, 3), dtype=np.uint8)
    cv2.imwrite(str(tmp_path / "a.jpg"), rgb, [cv2.IMWRITE_JPEG_QUALITY, 83])
    cv2.imwrite(str(tmp_path / "b.png"), rgb)
    jpeg, png = (leakcheck.image_nuisance(str(tmp_path / n)) for n in ("a.jpg", "b.png"))
    size = (tmp_path / "a.jpg").stat().st_size
    assert (jpeg["width"], jpeg["height"], jpeg["aspect"]) == (40, 30, 40 / 30)
    assert jpeg["file_size"] == size and jpeg["bytes_per_pixel"] == size / 1200
    assert jpeg["jpeg_quality"] == 83
    assert jpeg["format_jpeg"] == 1 and jpeg["format_png"] == 0 and jpeg["format_other"] == 0
    assert np.isnan(png["jpeg_quality"]) and png["format_png"] == 1
    assert list(jpeg) == list(png)  # columns do not depend on the file


def test_audio_header_facts(tmp_path):
    stereo = np.zeros((22050, 2), np.float32)
    soundfile.write(tmp_path / "a.wav", stereo, 22050, subtype="PCM_24")
    soundfile.write(tmp_path / "b.flac", stereo[:11025, 0], 11025, subtype="PCM_16")
    wav, flac = (leakcheck.audio_nuisance(str(tmp_path / n)) for n in ("a.wav", "b.flac"))
    assert (wav["sample_rate"], wav["channels"], wav["bit_depth"], wav["float_samples"]) == \
        (22050, 2, 24, 0)
    assert wav["duration_s"] == pytest.approx(1.0) and wav["format_wav"] == 1
    assert wav["file_size"] == (tmp_path / "a.wav").stat().st_size
    assert (flac["sample_rate"], flac["channels"], flac["bit_depth"], flac["format_flac"]) == \
        (11025, 1, 16, 1)


def test_a_compression_leak_is_found(tmp_path, capsys):
    # Reals saved at quality 90, fakes at 95: the lfw_faceswap leak of the data README.
    root = write_images(tmp_path / "leaky", 60, lambda target, rng: 95 if target else 90)
    result = run(root, tmp_path)
    assert result["leaky"] and result["auc"] > 0.95
    assert result["top_features"][0]["feature"].startswith("jpeg_")
    assert result["largest_marked_share"]["share_of_class"] == 1.0
    quality = next(f for f in result["all_features"] if f["feature"] == "jpeg_quality")
    assert (quality["real_median"], quality["fake_median"], quality["auc_alone"]) == (90, 95, 1)
    assert "LEAKY" in capsys.readouterr().out


def test_an_honest_set_is_not_flagged(tmp_path, capsys):
    # Both classes draw their quality from the same list: nothing about saving tells them apart.
    root = write_images(tmp_path / "honest", 80,
                        lambda target, rng: int(rng.choice([75, 85, 95])), seed=1)
    result = run(root, tmp_path)
    assert not result["leaky"] and result["auc"] < 0.75 and result["exclusive_settings"] == []
    assert "no leak found" in capsys.readouterr().out


def test_a_setting_only_some_fakes_use_is_a_partial_leak(tmp_path):
    # A quarter of the fakes use quality 70, which no real uses; the rest match the reals.
    root = write_images(tmp_path / "partial", 80,
                        lambda target, rng: 70 if target and rng.random() < 0.35 else 90, seed=2)
    y = np.array([t for t in load_dataset(root).targets])
    result = run(root, tmp_path, "--threshold", "0.99")
    marked = result["largest_marked_share"]
    assert (marked["class"], marked["values"]) == ("fake", [70.0])
    assert result["leaky"] and "which no real file has" in result["leak_reasons"][-1]
    count = next(e["count"] for e in result["exclusive_settings"] if e["feature"] == "jpeg_quality")
    assert marked["share_of_class"] == pytest.approx(count / y.sum())


def test_audio_rate_and_format_leak(tmp_path):
    root = tmp_path / "audio"
    (root / "real").mkdir(parents=True)
    (root / "fake").mkdir()
    rng = np.random.default_rng(0)
    rows = []
    for i in range(30):
        seconds = rng.uniform(0.3, 0.6)
        if i % 2:  # fakes: float WAV at 22.05 kHz; reals: 16-bit FLAC at 16 kHz
            name, rate, subtype = f"fake/{i}.wav", 22050, "FLOAT"
        else:
            name, rate, subtype = f"real/{i}.flac", 16000, "PCM_16"
        soundfile.write(root / name, 0.1 * rng.standard_normal(int(seconds * rate)), rate,
                        subtype=subtype)
        rows.append((name, i % 2))
    write_labels(root, rows)
    result = run(root, tmp_path, "--modality", "audio")
    assert result["leaky"] and result["auc"] > 0.95
    exclusive = {(e["feature"], e["value"], e["class"]) for e in result["exclusive_settings"]}
    assert {("sample_rate", 22050.0, "fake"), ("bit_depth", 16.0, "real"),
            ("float_samples", 1.0, "fake"), ("format_wav", 1.0, "fake")} <= exclusive


def test_groups_come_from_the_label_file_or_meta_csv(tmp_path):
    root = write_images(tmp_path / "grouped", 24, lambda target, rng: 90)
    with open(root / "meta.csv", "w", newline="") as handle:
        csv.writer(handle).writerows([("img_name", "pair_key"),
                                      *((f"{i:03d}.jpg", f"p{i // 2}") for i in range(24))])
    dataset = load_dataset(root)
    groups = leakcheck.read_groups(dataset, "pair_key", None)
    assert list(groups[:4]) == ["p0", "p0", "p1", "p1"]
    result = run(root, tmp_path, "--group-column", "pair_key")
    assert result["group_column"] == "pair_key" and result["n_splits"] == 5
