"""Shared by every test layer, so it imports neither torch nor bpy.

Gives the contract fixtures (tests/fixtures/, see its README) to all layers and makes
tests/fixtures/scenes.py importable as `scenes` (analytic datasets written with numpy + imageio).
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

FIXTURES = Path(__file__).resolve().parent / "fixtures"
REPO = FIXTURES.parent.parent
LEGO = REPO.parent / "shared" / "data" / "lego_half"   # third-party evaluation data, never in the repo
if str(FIXTURES) not in sys.path:
    sys.path.insert(0, str(FIXTURES))


@pytest.fixture(scope="session")
def fixture_dataset() -> Path:
    """Contract 1 fixture: a 24x16 sphere dataset with every optional key (fl_x != fl_y, lens shift, aabb)."""
    return FIXTURES / "dataset"


@pytest.fixture(scope="session")
def fixture_grid() -> Path:
    """Contract 4 fixture: a 4x5x6 grid with five voxels of known density and colour."""
    return FIXTURES / "grid.npz"


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return REPO


@pytest.fixture(scope="session")
def lego_dir() -> Path:
    if not (LEGO / "transforms_train.json").is_file():
        pytest.skip(f"{LEGO}: lego data not present")
    return LEGO
