"""The grid file (contract 4): round trip, the shared fixture, and refusal of foreign or corrupt files."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import numpy as np
import pytest
from make_fixtures import GRID_AABB, GRID_COORDS, GRID_DC_COLOUR, GRID_DC_VALUE, GRID_DENSITY, grid_arrays

from trainer.io.gridfile import GridData, GridFileError, grid_summary, load_grid, save_grid


def random_grid(n: int = 50, degree: int = 2, seed: int = 0) -> GridData:
    rng = np.random.default_rng(seed)
    res = np.array([7, 9, 11])
    flat = rng.choice(int(np.prod(res)), n, replace=False)
    coords = np.stack(np.unravel_index(flat, tuple(res)), 1).astype(np.int32)
    return GridData(resolution=res, aabb=np.array([[-1.0, -2.0, 0.0], [1.0, 2.0, 3.0]]), coords=coords,
                    density=rng.uniform(-20, 50, n).astype(np.float32),
                    sh=rng.normal(size=(n, 3, (degree + 1) ** 2)).astype(np.float32), sh_degree=degree,
                    metadata={"step": 12, "psnr": 30.5, "config": {"steps": 12}})


@pytest.mark.parametrize("color_space", ["linear", "srgb"])
def test_round_trip_is_exact_and_pickle_free(tmp_path: Path, color_space: str) -> None:
    grid = random_grid()
    grid.color_space = color_space
    save_grid(tmp_path / "g.npz", grid)
    with zipfile.ZipFile(tmp_path / "g.npz") as z:  # stored, not deflated: deflate was slow on large grids
        assert {i.compress_type for i in z.infolist()} == {zipfile.ZIP_STORED}
    with np.load(tmp_path / "g.npz", allow_pickle=False) as raw:
        assert str(raw["format"]) == "blender_plenox.grid" and int(raw["version"]) == 3
        assert raw["coords"].dtype == np.int32 and raw["aabb"].dtype == np.float64
        assert raw["resolution"].dtype == np.int64 and raw["sh"].dtype == np.float32
        assert str(raw["color_space"]) == color_space
    back = load_grid(tmp_path / "g.npz")
    for key in ("resolution", "aabb", "coords", "density", "sh"):
        assert np.array_equal(getattr(back, key), getattr(grid, key)), key
    assert back.sh_degree == 2 and back.metadata == grid.metadata and back.color_space == color_space
    assert [p.name for p in tmp_path.iterdir()] == ["g.npz"]


def test_fixture_written_by_plain_numpy_reads_back(fixture_grid: Path) -> None:
    grid = load_grid(fixture_grid)
    assert grid.resolution.tolist() == [4, 5, 6] and grid.aabb.tolist() == GRID_AABB
    assert grid.coords.tolist() == GRID_COORDS and grid.density.tolist() == GRID_DENSITY
    assert np.allclose(grid.dc_colour(), GRID_DC_COLOUR, atol=1e-6)
    assert np.allclose(grid.dc_value(), GRID_DC_VALUE, atol=1e-6)
    # cell centres: aabb_min + (ijk + 0.5) * size, with size (0.5, 0.8, 1.0)
    assert np.allclose(grid.centres()[0], [-0.75, -1.6, -2.5]) and np.allclose(grid.centres()[1], [0.75, 1.6, 2.5])
    assert grid_summary(grid)["voxels"] == 5


def test_version_1_and_2_files_both_read_with_signed_densities(tmp_path: Path) -> None:
    # v1 files hold densities >= 0; v2 may hold negative ones (the field clamps after interpolation)
    signed = np.array([5.0, -2.5, 10.0, -0.5, 1.0], np.float32)
    for version, density in ((1, np.abs(np.array(GRID_DENSITY, np.float32))), (2, signed)):
        path = _write(tmp_path / f"v{version}.npz", version=np.array(version), density=density)
        assert np.array_equal(load_grid(path).density, density)
        assert load_grid(path).color_space == "srgb"  # every grid before version 3 mixed encoded colours


def _write(path: Path, **changes: object) -> Path:
    arrays = {**grid_arrays(), **changes}
    np.savez(path, **{k: v for k, v in arrays.items() if v is not None})
    return path


@pytest.mark.parametrize("changes, message", [
    ({"format": np.array("something.else")}, "format is 'something.else'"),
    ({"version": np.array(4)}, "version 4 is newer"),
    ({"version": np.array(3)}, "version 3 needs a color_space"),
    ({"version": np.array(3), "color_space": np.array("rec2020")}, "color_space must be one of linear, srgb"),
    ({"version": np.array(0)}, "version 0 is not a valid"),
    ({"density": None}, "missing density"),
    ({"coords": np.array([[0, 0, 0], [4, 0, 0], [1, 2, 3], [2, 2, 3], [1, 3, 0]], np.int32)}, "outside"),
    ({"coords": np.array([[0, 0, 0], [0, 0, 0], [1, 2, 3], [2, 2, 3], [1, 3, 0]], np.int32)}, "more than once"),
    ({"density": np.array([1, np.inf, 0, 0, 0], np.float32)}, "density has non-finite values"),
    ({"sh": np.zeros((5, 3, 9), np.float32)}, "sh must be float [N=5, 3, 4]"),
    ({"aabb": np.array([[1.0, 1, 1], [0, 0, 0]])}, "aabb must be"),
    ({"metadata": np.array("{not json")}, "metadata is not JSON"),
    ({"sh_degree": np.array(4)}, "sh_degree must be 0-3"),
    ({"metadata": np.array([{"a": 1}], dtype=object)}, "unreadable grid file"),
])
def test_foreign_or_corrupt_files_are_refused(tmp_path: Path, changes: dict, message: str) -> None:
    path = _write(tmp_path / "bad.npz", **changes)
    with pytest.raises(GridFileError) as info:
        load_grid(path)
    assert str(info.value).startswith(f"{path}: ") and message in str(info.value) and "\n" not in str(info.value)


def test_truncated_and_non_archive_files_are_refused(tmp_path: Path, fixture_grid: Path) -> None:
    data = fixture_grid.read_bytes()
    (tmp_path / "cut.npz").write_bytes(data[: len(data) // 2])
    (tmp_path / "text.npz").write_text(json.dumps({"format": "blender_plenox.grid"}))
    with zipfile.ZipFile(tmp_path / "other.npz", "w") as z:
        z.writestr("hello.txt", "hi")
    for name, message in (("cut.npz", "not a grid file"), ("text.npz", "not a grid file"),
                          ("other.npz", "missing format"), ("absent.npz", "no such grid file")):
        with pytest.raises(GridFileError, match=message):
            load_grid(tmp_path / name)


def test_invalid_grid_is_never_written_and_old_file_survives(tmp_path: Path) -> None:
    path = tmp_path / "g.npz"
    save_grid(path, random_grid(seed=1))
    before = path.read_bytes()
    bad = random_grid(seed=2)
    bad.density[3] = np.nan
    with pytest.raises(GridFileError, match="refusing to write"):
        save_grid(path, bad)
    assert path.read_bytes() == before and [p.name for p in tmp_path.iterdir()] == ["g.npz"]
