"""The folders the validation reads, found from the repository layout: the shared
measurements (``$FABSIM_VALIDATION_DIR`` or ``../shared/validation`` beside the
checkout), the checkout's ``experiments/validation`` and its bundled ``topologies``."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    env = os.environ.get("FABSIM_VALIDATION_DIR")
    return Path(env) if env else ROOT.parent / "shared" / "validation"


@pytest.fixture(scope="session")
def extra_dir() -> Path:
    return ROOT / "experiments" / "validation"


@pytest.fixture(scope="session")
def topo_dir() -> Path:
    return ROOT / "topologies"
