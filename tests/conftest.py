from __future__ import annotations

from pathlib import Path

import pytest

SHARED = Path(__file__).resolve().parents[1].parent / "shared"


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    """``../shared`` (fixtures, model assets); tests that need it skip without it."""
    if not SHARED.is_dir():
        pytest.skip(f"needs ../shared beside the checkout ({SHARED} is missing)")
    return SHARED
