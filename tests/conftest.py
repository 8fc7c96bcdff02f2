import os
from pathlib import Path

import pytest

PROJECT_ROOT = Path(__file__).resolve().parent.parent


def shared_data_dir() -> Path:
    """The real-data folder: $DEEPFAKE_DATA, by default ../shared/data from the project root."""
    return Path(os.environ.get("DEEPFAKE_DATA", PROJECT_ROOT.parent / "shared" / "data"))


@pytest.fixture
def shared_data():
    """Return a function giving a set's folder, skipping the test when the set is absent."""
    def get(name: str) -> Path:
        path = shared_data_dir() / name
        if not (path / "labels.csv").is_file():
            pytest.skip(f"shared data set {name!r} not found at {path} (set DEEPFAKE_DATA)")
        return path
    return get


FAMILIES_CONFIG = "extract:\n  families:\n    fft: {n_bins: 8}\n"


def write_synthetic_image(path: Path, rng, smooth: bool) -> None:
    """Real-like class: smooth noise; fake-like class: an added period-2 grid (up-sampling trace)."""
    import cv2
    import numpy as np

    base = cv2.GaussianBlur(rng.normal(128, 40, (64, 64, 3)), (0, 0), 3)
    if not smooth:
        base[::2, ::2] += 25
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), np.clip(base, 0, 255).astype(np.uint8))


def make_image_dataset(root: Path, n: int = 40, extra_names=(), seed: int = 0):
    """A labelled folder of ``n`` generated images (alternating classes), plus a corrupt file.

    Returns the (name, target) rows in label-file order. ``extra_names`` are added as fakes.
    """
    import csv

    import numpy as np

    rng = np.random.default_rng(seed)
    rows = []
    for i in range(n):
        name = f"img_{i:02d}.png"
        write_synthetic_image(root / name, rng, smooth=i % 2 == 0)
        rows.append((name, i % 2))
    for name in extra_names:
        write_synthetic_image(root / name, rng, smooth=False)
        rows.append((name, 1))
    (root / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    rows.insert(5, ("broken.png", 1))
    with open(root / "labels.csv", "w", newline="") as handle:
        csv.writer(handle).writerows([("img_name", "target"), *rows])
    return rows


@pytest.fixture
def dataset(tmp_path):
    """(data root, config file selecting a small family, rows) of a generated image set."""
    root = tmp_path / "data"
    rows = make_image_dataset(root)
    config = tmp_path / "config.yaml"
    config.write_text(FAMILIES_CONFIG)
    return root, config, rows
