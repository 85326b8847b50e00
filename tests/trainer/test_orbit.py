"""Orbit framing: the camera path frames what the grid holds, not the (much larger) training box."""

from __future__ import annotations

import math

import torch

from trainer.engine.grid import SparseGrid
from trainer.io.orbit import content_box, fit_distance, orbit_poses


def grid_with_cube_and_floater() -> SparseGrid:
    # 40^3 over [-2, 2]^3 (voxels 0.1): a solid cube over voxels 15..24 (world [-0.5, 0.5]) and one
    # dense voxel in a far corner, the kind of stray floater a short run leaves behind
    idx = torch.arange(15, 25)
    cube = torch.stack(torch.meshgrid(idx, idx, idx, indexing="ij"), -1).reshape(-1, 3)
    coords = torch.cat((cube, torch.tensor([[0, 0, 39]])))
    density = torch.full((coords.shape[0],), 50.0)
    empty = torch.tensor([[30, 30, 30], [31, 30, 30]])  # active but clear voxels count for nothing
    coords = torch.cat((coords, empty))
    density = torch.cat((density, torch.tensor([-3.0, 0.0])))
    sh = torch.zeros((coords.shape[0], 3))
    box = torch.tensor([[-2.0] * 3, [2.0] * 3])
    return SparseGrid.from_coords((40, 40, 40), coords, density, sh, box, 0)


def test_content_box_ignores_the_floater_and_clear_voxels() -> None:
    box = content_box(grid_with_cube_and_floater())
    assert torch.allclose(box, torch.tensor([[-0.5] * 3, [0.5] * 3], dtype=box.dtype), atol=1e-6)


def test_content_box_of_a_grid_without_density_is_its_box() -> None:
    grid = SparseGrid.dense(4, torch.tensor([[-1.0] * 3, [3.0] * 3]), 0, density=0.0)
    assert torch.equal(content_box(grid), grid.aabb.double())


def test_orbit_cameras_see_the_content_box_inside_the_view() -> None:
    box = content_box(grid_with_cube_and_floater())
    fov = math.radians(40.0)
    poses = orbit_poses(box, 8, fit_distance(box, fov), 30.0)
    corners = torch.stack(torch.meshgrid(*[box[:, a] for a in range(3)], indexing="ij"), -1).reshape(-1, 3).float()
    for c2w in poses:
        w2c = torch.linalg.inv(c2w)
        p = corners @ w2c[:3, :3].T + w2c[:3, 3]
        # in front of the camera (-z) and within the horizontal and vertical half angle
        assert bool((p[:, 2] < 0).all())
        assert float((p[:, :2].abs() / -p[:, 2:]).max()) <= math.tan(0.5 * fov) + 1e-6
