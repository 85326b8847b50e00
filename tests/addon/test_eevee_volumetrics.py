"""The EEVEE volumetric settings chosen for an imported grid, against hand-worked cases."""

from __future__ import annotations

import pytest

from blender_plenox.utils.eevee_volumetrics import (
    FROXEL_BUDGET,
    MAX_SAMPLES,
    MIN_SAMPLES,
    Volumetrics,
    choose,
    merge,
    view_depths,
)


def test_range_hugs_the_box_with_one_voxel_margin():
    v = choose(0.1, (2.0, 4.0), (100, 100))
    assert v.start == pytest.approx(1.9) and v.end == pytest.approx(4.1)
    # 2.2 m at two slices per 0.1 m voxel: 44 slices, raised to Blender's default 64
    assert v.samples == MIN_SAMPLES and v.tile == 1


def test_fine_grids_get_more_slices_up_to_the_maximum():
    assert choose(0.02, (2.0, 3.0), (100, 100)).samples == 104  # (1.04 m / 0.02) · 2
    assert choose(0.001, (2.0, 3.0), (100, 100)).samples == MAX_SAMPLES


def test_start_stays_positive_when_the_camera_is_inside_the_box():
    v = choose(0.1, (0.0, 1.0), (64, 64))
    assert v.start is not None and v.start > 0 and v.end == pytest.approx(1.1)


def test_tile_is_the_smallest_within_the_froxel_budget():
    assert choose(0.01, (1.0, 3.0), (1920, 1080)).tile == 4  # 2 px × 256 slices: 133 M froxels
    v = choose(0.01, (1.0, 3.0), (640, 480))
    assert v.tile == 2 and 320 * 240 * v.samples <= FROXEL_BUDGET


def test_no_camera_leaves_the_range_alone():
    v = choose(0.1, None, (100, 100))
    assert v.start is None and v.end is None and v.samples == MAX_SAMPLES
    assert v.describe() == f"tile 1 px, {MAX_SAMPLES} samples"
    assert choose(0.1, (2.0, 4.0), (100, 100)).describe() == "tile 1 px, 64 samples, 1.9–4.1 m"


def test_merge_never_coarsens():
    chosen = Volumetrics(2, 64, 1.0, 5.0)
    assert merge(chosen, Volumetrics(8, 64, 0.1, 100.0)) == Volumetrics(2, 64, 1.0, 5.0)
    assert merge(chosen, Volumetrics(1, 200, 0.1, 100.0)) == Volumetrics(1, 200, 1.0, 5.0)
    # a range already inside the chosen one was tuned by hand: kept
    assert merge(chosen, Volumetrics(8, 64, 2.0, 4.0)) == Volumetrics(2, 64, 2.0, 4.0)
    assert merge(Volumetrics(2, 64), Volumetrics(8, 64, 0.1, 100.0)) == Volumetrics(2, 64, None, None)


def test_view_depths_along_the_camera_axis():
    corners = [(x, y, z) for x in (-1, 1) for y in (-1, 1) for z in (-1, 1)]
    assert view_depths(corners, (0, 0, 5), (0, 0, -1)) == (4, 6)
    assert view_depths(corners, (0, 0, 0.5), (0, 0, -1)) == (0.0, 1.5)  # inside: from the camera on
    assert view_depths(corners, (0, 0, 5), (0, 0, 1)) is None  # box behind the camera


def test_rejects_a_non_positive_voxel():
    with pytest.raises(ValueError):
        choose(0.0, (1.0, 2.0), (10, 10))
