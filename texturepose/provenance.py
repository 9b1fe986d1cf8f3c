"""Which code wrote a file: recorded in every HDF5 file's ``code_version`` attribute."""

from __future__ import annotations

import subprocess
from pathlib import Path


def code_version() -> str:
    """Git commit of the code that writes a file (or the package version outside git)."""
    try:
        out = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            cwd=Path(__file__).resolve().parent,
            timeout=5,
        )
        if out.returncode == 0 and out.stdout.strip():
            return out.stdout.strip()
    except (OSError, subprocess.SubprocessError):
        pass
    try:
        from importlib.metadata import PackageNotFoundError, version

        return "texturepose " + version("texturepose")
    except PackageNotFoundError:
        return "unknown (no git commit, package not installed)"
