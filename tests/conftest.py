import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The shared real-data folder (WFDB records 100, s0010_re, JS00001, ...)."""
    env = os.environ.get("GEMFACTORY_SHARED_DATA")
    path = Path(env) if env else Path(__file__).resolve().parents[1].parent / "shared" / "data"
    if not path.is_dir():
        pytest.skip(f"shared data folder not found: {path} (set GEMFACTORY_SHARED_DATA)")
    return path
