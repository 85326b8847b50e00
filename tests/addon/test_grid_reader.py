import dataclasses
import json
import zipfile

import numpy as np
import pytest
from grid_helpers import random_grid

from blender_plenox.io.grid_reader import GridFileError, read_grid, write_grid


def _save(path, **arrays):
    np.savez(path, **arrays)
    return str(path)


def _valid_arrays(grid):
    return {
        "format": np.array("blender_plenox.grid"),
        "version": np.array(2, np.int64),
        "resolution": grid.resolution,
        "aabb": grid.aabb,
        "coords": grid.coords,
        "density": grid.density,
        "sh": grid.sh,
        "sh_degree": np.array(grid.sh_degree, np.int64),
        "metadata": np.array(json.dumps(grid.metadata)),
    }


@pytest.mark.parametrize("color_space", ["linear", "srgb"])
def test_round_trip_preserves_every_array(tmp_path, color_space):
    g = dataclasses.replace(random_grid(), color_space=color_space)
    write_grid(tmp_path / "g.npz", g)
    r = read_grid(tmp_path / "g.npz")
    assert r.color_space == color_space
    np.testing.assert_array_equal(r.coords, g.coords)
    np.testing.assert_array_equal(r.density, g.density)
    np.testing.assert_array_equal(r.sh, g.sh)
    np.testing.assert_array_equal(r.resolution, g.resolution)
    assert r.metadata == {"step": 123, "psnr": 27.5}
    assert r.sh_degree == 1 and r.num_voxels == 200


def test_versions_1_and_2_read_and_signed_densities_are_kept(tmp_path):
    g = random_grid()
    signed = g.density - np.float32(15.0)  # contract 4 v2: raw values, negative ones included
    for version, density in ((1, g.density), (2, signed)):
        arrays = {**_valid_arrays(g), "version": np.array(version, np.int64), "density": density}
        r = read_grid(_save(tmp_path / f"v{version}.npz", **arrays))
        np.testing.assert_array_equal(r.density, density)
        assert r.color_space == "srgb"  # every grid before version 3 mixed encoded colours
    assert signed.min() < 0


def test_compressed_file_reads(tmp_path):
    g = random_grid()
    np.savez_compressed(tmp_path / "c.npz", **_valid_arrays(g))
    np.testing.assert_array_equal(read_grid(tmp_path / "c.npz").density, g.density)


def test_cell_centre_sample_points_span_the_box_symmetrically():
    g = random_grid(n=10, res=(4, 5, 6))
    corners = np.array([[0, 0, 0], [3, 4, 5]], np.int32)
    g2 = type(g)(g.resolution, g.aabb, corners, np.ones(2, np.float32), np.zeros((2, 3, 4), np.float32), 1)
    pts = g2.sample_points()
    half = (g.aabb[1] - g.aabb[0]) / g.resolution / 2
    # First centre sits half a voxel inside the min corner, last half a voxel inside the max corner.
    np.testing.assert_allclose(pts[0], g.aabb[0] + half)
    np.testing.assert_allclose(pts[1], g.aabb[1] - half)


def test_dc_color_matches_the_sh_formula_and_clamps():
    g0 = random_grid()
    g = type(g0)(g0.resolution, g0.aabb, g0.coords, g0.density, g0.sh * np.float32(4.0), g0.sh_degree)
    value = 0.28209479 * g.sh[:, :, 0] + 0.5
    np.testing.assert_allclose(g.dc_value(), value, rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(g.dc_color(), np.maximum(value, 0), rtol=1e-6, atol=1e-7)
    assert g.dc_color().min() >= 0 and g.dc_value().min() < 0


@pytest.mark.parametrize(
    "mutate, message",
    [
        (lambda a: a.update(format=np.array("something.else")), "format is 'something.else'"),
        (lambda a: a.update(version=np.array(4, np.int64)), "version 4 is not supported"),
        (lambda a: a.update(version=np.array(3, np.int64)), "version 3 needs 'color_space'"),
        (lambda a: a.update(version=np.array(3, np.int64), color_space=np.array("aces")),
         "'color_space' must be one of linear, srgb, got 'aces'"),
        (lambda a: a.update(version=np.array(0, np.int64)), "version 0 is not supported"),
        (lambda a: a.pop("density"), "missing entries: density"),
        (lambda a: a.pop("format"), "no 'format' entry"),
        (lambda a: a.update(coords=a["coords"] + 100), "outside the grid"),
        (lambda a: a.update(density=np.full_like(a["density"], np.nan)), "NaN"),
        (lambda a: a.update(sh=a["sh"][:, :, :1]), "'sh' must be"),
        (lambda a: a.update(aabb=a["aabb"][::-1]), "max must exceed min"),
        (lambda a: a.update(metadata=np.array("{not json")), "not valid JSON"),
        (lambda a: a.update(sh_degree=np.array(7, np.int64)), "'sh_degree' must be 0-3"),
        (lambda a: a.update(resolution=np.array([4, 4], np.int64)), "'resolution' must be"),
    ],
)
def test_bad_files_give_one_line_errors_naming_the_file(tmp_path, mutate, message):
    arrays = _valid_arrays(random_grid())
    mutate(arrays)
    path = _save(tmp_path / "bad.npz", **arrays)
    with pytest.raises(GridFileError) as err:
        read_grid(path)
    text = str(err.value)
    assert text.startswith(path + ": ") and message in text and "\n" not in text


def test_non_npz_bytes_and_pickled_arrays_are_refused(tmp_path):
    junk = tmp_path / "junk.npz"
    junk.write_bytes(b"\x00\x01 definitely not a zip file" * 10)
    with pytest.raises(GridFileError, match="not a readable .npz"):
        read_grid(junk)
    pickled = tmp_path / "pickled.npz"
    arrays = _valid_arrays(random_grid())
    arrays["metadata"] = np.array([{"a": 1}], dtype=object)
    np.savez(pickled, **arrays)
    with pytest.raises(GridFileError, match="pickled.npz: "):
        read_grid(pickled)
    truncated = tmp_path / "truncated.npz"
    good = tmp_path / "good.npz"
    write_grid(good, random_grid())
    truncated.write_bytes(good.read_bytes()[:300])
    with pytest.raises(GridFileError, match="truncated.npz: "):
        read_grid(truncated)
    with pytest.raises(GridFileError, match="no such file"):
        read_grid(tmp_path / "absent.npz")
    assert zipfile.is_zipfile(good)


def test_shared_fixture_grid_reads_with_documented_positions_and_colours(fixture_grid):
    g = read_grid(fixture_grid)
    pts = dict(zip(map(tuple, g.coords.tolist()), g.sample_points()))
    np.testing.assert_allclose(pts[(0, 0, 0)], [-0.75, -1.6, -2.5])
    np.testing.assert_allclose(pts[(3, 4, 5)], [0.75, 1.6, 2.5])
    colours = dict(zip(map(tuple, g.coords.tolist()), g.dc_color()))
    np.testing.assert_allclose(colours[(0, 0, 0)], [1, 0, 0], atol=1e-6)
    np.testing.assert_allclose(colours[(1, 2, 3)], [0, 0, 1], atol=1e-6)
    np.testing.assert_allclose(g.dc_value()[0], [1, -0.25, 0], atol=1e-6)  # (0, 0, 0): unclamped
    dens = dict(zip(map(tuple, g.coords.tolist()), g.density))
    assert dens[(3, 4, 5)] == 2.5 and dens[(2, 2, 3)] == -4.0 and g.sh_degree == 1
