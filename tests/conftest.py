"""Shared fixtures: the checkout on sys.path, synthetic datasets and a private work folder."""

import os
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = Path(__file__).resolve().parent / "fixtures"
sys.path.insert(0, str(ROOT))
os.environ.pop("FBP_SMOKE", None)
os.environ.pop("FBP_DATA_DIR", None)

import utils  # noqa: E402


def pytest_configure(config):
    """Hide the libraries' own deprecation chatter (Keras and TensorFlow under NumPy 2)."""
    for module in ("keras", "tensorflow", "h5py"):
        config.addinivalue_line("filterwarnings", f"ignore::DeprecationWarning:{module}.*")


@pytest.fixture(scope="session")
def synthetic_root(tmp_path_factory) -> Path:
    """A 300-image synthetic dataset in the release layout (shared, treat as read-only)."""
    return utils.make_synthetic_dataset(tmp_path_factory.mktemp("synthetic"))


@pytest.fixture
def work(tmp_path, monkeypatch) -> Path:
    """A private work folder, as FBP_WORK_DIR."""
    folder = tmp_path / "work"
    monkeypatch.setenv("FBP_WORK_DIR", str(folder))
    return folder


@pytest.fixture
def small_root(tmp_path) -> Path:
    """A 60-image synthetic dataset of one's own, free to damage."""
    return utils.make_synthetic_dataset(tmp_path / "small", n=60, image_size=48, with_ratings=False)
