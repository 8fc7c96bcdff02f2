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
