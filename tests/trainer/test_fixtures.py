"""The committed contract fixtures are what tests/fixtures/make_fixtures.py writes, and stay small."""

from __future__ import annotations

import json
from pathlib import Path

import imageio.v3 as iio
import numpy as np
from make_fixtures import main as make_fixtures


def test_fixtures_match_their_generator(tmp_path: Path, fixture_dataset: Path, fixture_grid: Path) -> None:
    make_fixtures(tmp_path)
    fresh = tmp_path / "dataset"
    names = sorted(p.relative_to(fresh).as_posix() for p in fresh.rglob("*") if p.is_file())
    assert names == sorted(p.relative_to(fixture_dataset).as_posix() for p in fixture_dataset.rglob("*") if p.is_file())
    for name in names:
        if name.endswith(".json"):
            assert json.loads((fresh / name).read_text()) == json.loads((fixture_dataset / name).read_text()), name
        else:
            assert np.array_equal(iio.imread(fresh / name), iio.imread(fixture_dataset / name)), name
    with np.load(tmp_path / "grid.npz") as a, np.load(fixture_grid) as b:
        assert sorted(a.files) == sorted(b.files)
        assert all(np.array_equal(a[k], b[k]) for k in a.files)
    sizes = [p.stat().st_size for p in fixture_dataset.rglob("*") if p.is_file()]
    assert sum(sizes) < 50_000 and fixture_grid.stat().st_size < 50_000
