"""Shared test fixtures: paths to the genuine data beside the checkout, and the Anny cache."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"

# Build Anny's cache once per machine inside the project (see README), not under $HOME.
os.environ.setdefault("ANNY_CACHE_DIR", str(REPO / "data" / "cache" / "anny"))


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The genuine datasets of ../shared/data; tests that need them skip when it is absent."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"genuine data folder {SHARED_DATA} is absent")
    return SHARED_DATA


@pytest.fixture(scope="session")
def anny_body():
    """The default body model (float32), built once per test session."""
    from texturepose.body import build_body_model

    return build_body_model("anny")
