"""Shared test fixtures: paths to the genuine data beside the checkout, and the Anny cache."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
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


@contextlib.contextmanager
def torch_threads(n: int) -> Iterator[None]:
    """Run a block with ``n`` intra-op torch threads, then restore the previous count."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


@pytest.fixture
def one_torch_thread() -> Iterator[None]:
    """One intra-op thread: tiny batches gain nothing from more, and on a shared,
    oversubscribed machine OpenMP's waiting threads slow every small op down many times."""
    with torch_threads(1):
        yield
