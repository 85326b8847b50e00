"""The committed contract fixtures are what tests/fixtures/make_fixtures.py writes, and stay small.

The generator computes some numbers with libm (tan for the focal length, cos/sin/sqrt for the camera
poses, the ray-sphere pictures), whose last bits differ between machines and libraries (seen:
fl_x 0.9258274720053583 on one machine, ...582 on another). So floats that come out of maths are
compared with a tolerance far below anything a change of the generator would make; strings, integers,
structure and values that are exact by construction (literals, integer arrays) are compared exactly.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import imageio.v3 as iio
import numpy as np
from make_fixtures import main as make_fixtures

# A few ulps of float64 maths: a changed generator (another focal length, pose or sphere) moves the
# numbers by many orders of magnitude more.
REL, ABS = 1e-9, 1e-12
# Grid arrays the generator computes by arithmetic on the literals ((value - 0.5) / C0, cast to
# float32); the others (literal floats, ints, strings) are exact by construction.
COMPUTED_GRID_ARRAYS = {"sh"}
# PNG pixels are rounded from float maths: a value within a few ulps of a rounding boundary may land on
# the other level, and a supersample exactly on the silhouette may flip (one of 16 sub-samples) on a
# few pixels. A generator change alters many pixels by much more.
PIXEL_LEVELS = 1
PIXELS_FREE_PER_IMAGE = 2


def assert_json_close(fresh: Any, committed: Any, where: str = "$") -> None:
    """Same structure, keys, strings, ints and booleans; floats within REL/ABS."""
    assert type(fresh) is type(committed), f"{where}: {type(fresh).__name__} != {type(committed).__name__}"
    if isinstance(fresh, dict):
        assert sorted(fresh) == sorted(committed), f"{where}: keys {sorted(fresh)} != {sorted(committed)}"
        for key in fresh:
            assert_json_close(fresh[key], committed[key], f"{where}.{key}")
    elif isinstance(fresh, list):
        assert len(fresh) == len(committed), f"{where}: length {len(fresh)} != {len(committed)}"
        for i, (a, b) in enumerate(zip(fresh, committed)):
            assert_json_close(a, b, f"{where}[{i}]")
    elif isinstance(fresh, float):
        assert math.isclose(fresh, committed, rel_tol=REL, abs_tol=ABS), f"{where}: {fresh!r} != {committed!r}"
    else:
        assert fresh == committed, f"{where}: {fresh!r} != {committed!r}"


def assert_image_close(fresh: np.ndarray, committed: np.ndarray, name: str) -> None:
    assert fresh.shape == committed.shape and fresh.dtype == committed.dtype, name
    diff = np.abs(fresh.astype(np.int64) - committed.astype(np.int64))
    off = np.count_nonzero((diff > PIXEL_LEVELS).any(axis=-1))
    assert off <= PIXELS_FREE_PER_IMAGE, f"{name}: {off} pixels differ by more than {PIXEL_LEVELS} level(s)"


def test_json_comparison_has_a_tolerance_only_for_floats() -> None:
    # the comparison itself: last-bit float noise passes, anything else fails
    assert_json_close({"f": 0.9258274720053583, "l": [1, "a"]}, {"f": 0.9258274720053582, "l": [1, "a"]})
    for a, b in (({"f": 0.92582747}, {"f": 0.92582748}), ({"i": 24}, {"i": 25}), ({"i": 24}, {"i": 24.0}),
                 ({"s": "a"}, {"s": "b"}), ({"l": [1]}, {"l": [1, 2]}), ({"a": 1}, {"b": 1})):
        try:
            assert_json_close(a, b)
        except AssertionError:
            continue
        raise AssertionError(f"{a} and {b} compared equal")


def test_fixtures_match_their_generator(tmp_path: Path, fixture_dataset: Path, fixture_grid: Path) -> None:
    make_fixtures(tmp_path)
    fresh = tmp_path / "dataset"
    names = sorted(p.relative_to(fresh).as_posix() for p in fresh.rglob("*") if p.is_file())
    assert names == sorted(p.relative_to(fixture_dataset).as_posix() for p in fixture_dataset.rglob("*") if p.is_file())
    for name in names:
        if name.endswith(".json"):
            assert_json_close(json.loads((fresh / name).read_text()), json.loads((fixture_dataset / name).read_text()), name)
        else:
            assert_image_close(iio.imread(fresh / name), iio.imread(fixture_dataset / name), name)
    with np.load(tmp_path / "grid.npz") as a, np.load(fixture_grid) as b:
        assert sorted(a.files) == sorted(b.files)
        for key in a.files:
            assert a[key].dtype == b[key].dtype and a[key].shape == b[key].shape, key
            if key in COMPUTED_GRID_ARRAYS:
                # float32 results: a couple of float32 ulps
                assert np.allclose(a[key], b[key], rtol=1e-6, atol=1e-7), key
            else:
                assert np.array_equal(a[key], b[key]), key
    sizes = [p.stat().st_size for p in fixture_dataset.rglob("*") if p.is_file()]
    assert sum(sizes) < 50_000 and fixture_grid.stat().st_size < 50_000
