"""Upsampling reproduces linear fields; pruning frees what rays do not see and keeps the image."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch

from trainer.engine.grid import SparseGrid
from trainer.engine.render import RenderOptions, max_weights, render_rays
from trainer.engine.resample import fitted_box, preview_grid, prune, upsample

AABB = torch.tensor([[-1.0, -1.0, -1.0], [1.0, 1.0, 1.0]])


def linear_grid(res: int) -> SparseGrid:
    """Density and SH are linear functions of the world position of each cell centre."""
    grid = SparseGrid.dense(res, AABB, 1, density=0.0)
    centres = AABB[0] + (grid.coords().float() + 0.5) * grid.voxel_size
    grid.density = 3.0 + centres @ torch.tensor([1.0, -2.0, 0.5])
    grid.sh = 0.1 + centres @ torch.linspace(-1.0, 1.0, 36).reshape(3, 12)
    return grid


def test_upsample_reproduces_a_linear_field() -> None:
    coarse = linear_grid(6)
    for new_res in (12, 9):  # an integer and a fractional ratio
        fine = upsample(coarse, new_res)
        assert fine.resolution == (new_res,) * 3 and fine.n_active == new_res**3
        centres = AABB[0] + (fine.coords().float() + 0.5) * fine.voxel_size
        # interior: fine centres inside the coarse centres' hull, where trilinear is exact
        half = coarse.voxel_size / 2
        interior = ((centres >= AABB[0] + half - 1e-6) & (centres <= AABB[1] - half + 1e-6)).all(-1)
        assert interior.sum() > 0
        torch.testing.assert_close(
            fine.density[interior], (3.0 + centres @ torch.tensor([1.0, -2.0, 0.5]))[interior], atol=1e-5, rtol=0
        )
        torch.testing.assert_close(
            fine.sh[interior], (0.1 + centres @ torch.linspace(-1.0, 1.0, 36).reshape(3, 12))[interior],
            atol=1e-5, rtol=0,
        )


def test_upsample_into_another_box_reproduces_a_linear_field() -> None:
    coarse = linear_grid(6)
    box = torch.tensor([[-0.6, -0.3, -0.5], [0.7, 0.5, 0.4]])  # inside the coarse hull, unaligned
    fine = upsample(coarse, (13, 8, 9), aabb=box)
    assert fine.n_active == 13 * 8 * 9
    centres = box[0] + (fine.coords().float() + 0.5) * fine.voxel_size
    torch.testing.assert_close(fine.density, 3.0 + centres @ torch.tensor([1.0, -2.0, 0.5]), atol=1e-5, rtol=0)
    torch.testing.assert_close(fine.aabb, box)


def test_a_preview_is_the_dc_colour_on_coarser_voxels_below_the_voxel_limit() -> None:
    grid = linear_grid(13)  # an odd side: the box grows by a fine voxel to keep the voxels' shape
    same = preview_grid(grid, 0)  # no limit: every voxel, the first coefficient of each channel
    assert same.sh_degree == 0 and same.n_active == 13**3 and same.resolution == grid.resolution
    torch.testing.assert_close(same.sh, grid.sh[:, ::4])
    torch.testing.assert_close(same.density, grid.density)
    assert grid.sh.shape[1] == 12 and grid.sh_degree == 1  # the training grid is left as it was

    small = preview_grid(grid, 13**3 // 5)  # one halving: 7^3 voxels of twice the size, the last layer
    assert small.resolution == (7, 7, 7) and small.n_active == 6**3 and small.sh_degree == 0  # (over no fine one) empty
    torch.testing.assert_close(small.voxel_size, 2 * grid.voxel_size)
    torch.testing.assert_close(small.aabb[0], AABB[0])
    centres = AABB[0] + (small.coords().float() + 0.5) * small.voxel_size
    # each coarse centre lies on a corner shared by 8 fine centres: their mean is the linear field there
    torch.testing.assert_close(small.density, 3.0 + centres @ torch.tensor([1.0, -2.0, 0.5]), atol=1e-5, rtol=0)
    dc = 0.1 + centres @ torch.linspace(-1.0, 1.0, 36).reshape(3, 12)[:, ::4]
    torch.testing.assert_close(small.sh, dc, atol=1e-5, rtol=0)
    assert preview_grid(grid, 100).n_active <= 100  # halved until it fits: 4^3


def test_fitted_box_covers_the_active_voxels_with_cubic_voxels() -> None:
    coords = torch.tensor([[2, 3, 1], [5, 4, 1], [3, 3, 2]])
    grid = SparseGrid.from_coords((8, 8, 8), coords, torch.ones(3), torch.zeros((3, 3)), AABB, 0)
    box, res = fitted_box(grid, side=20, margin=1)
    vs = grid.voxel_size
    torch.testing.assert_close(box[0], AABB[0] + torch.tensor([1.0, 2.0, 0.0]) * vs)
    assert bool((box[1] >= AABB[0] + torch.tensor([7.0, 6.0, 4.0]) * vs - 1e-6).all())
    size = (box[1] - box[0]) / torch.tensor(res)
    torch.testing.assert_close(size, size.max().expand(3))
    assert max(res) == 20
    fine = upsample(grid, res, aabb=box)
    # brute force over every fine voxel: active exactly when its centre lies in an active coarse voxel
    every = torch.stack(torch.meshgrid(*(torch.arange(n) for n in res), indexing="ij"), -1).reshape(-1, 3)
    parents = torch.floor((box[0] + (every.double() + 0.5) * size.double() - AABB[0]) / vs.double()).long()
    wanted = {tuple(e) for e, p in zip(every.tolist(), parents.tolist()) if tuple(p) in set(map(tuple, coords.tolist()))}
    assert set(map(tuple, fine.coords().tolist())) == wanted


def test_upsample_only_creates_children_of_active_voxels() -> None:
    coarse = SparseGrid.from_coords(
        (4, 4, 4), torch.tensor([[1, 2, 3], [0, 0, 0]]), torch.tensor([5.0, 7.0]), torch.zeros((2, 3)), AABB, 0
    )
    fine = upsample(coarse, 8)
    assert fine.n_active == 16
    assert set(map(tuple, (fine.coords() // 2).tolist())) == {(1, 2, 3), (0, 0, 0)}


def ball_grid() -> SparseGrid:
    """A dense 24^3 grid: an opaque ball of radius 0.5 in a field of near-zero density."""
    grid = SparseGrid.dense(24, AABB, 1, density=0.0)
    centres = AABB[0] + (grid.coords().float() + 0.5) * grid.voxel_size
    inside = centres.norm(dim=-1) < 0.5
    grid.density = torch.where(inside, 60.0, 0.0)
    grid.sh = torch.zeros((grid.n_active, 12))
    grid.sh[:, 0] = centres[:, 0] * 2.0  # red varies across the ball
    return grid


def rays_from_front(n: int) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    target = (torch.rand((n, 3), generator=g) * 1.6 - 0.8) * torch.tensor([1.0, 1.0, 0.0])
    origins = torch.tensor([0.0, 0.0, 3.0]).expand(n, 3)
    dirs = torch.nn.functional.normalize(target - origins, dim=-1)
    return origins.contiguous(), dirs


def test_prune_frees_unseen_voxels_and_keeps_the_image() -> None:
    grid = ball_grid()
    opts = RenderOptions()
    o, d = rays_from_front(4000)
    before, _ = render_rays(grid, o, d, (1.0, 1.0, 1.0), opts)
    weights = max_weights(grid, o, d, opts, chunk=1000)
    pruned, old_rows = prune(grid, weights >= 0.005, dilate=1)
    assert pruned.n_active < grid.n_active // 4
    assert pruned.density.numel() == pruned.n_active and pruned.sh.shape[0] == pruned.n_active
    torch.testing.assert_close(pruned.density, grid.density[old_rows])
    # the back of the ball and the empty space were never seen: gone
    back = pruned.coords()[:, 2] < 8
    assert not bool(back.any())
    after, _ = render_rays(pruned, o, d, (1.0, 1.0, 1.0), opts)
    torch.testing.assert_close(after, before, atol=2e-2, rtol=0)


def test_max_weights_are_the_largest_sample_weight() -> None:
    grid = ball_grid()
    o, d = rays_from_front(1)
    opts = RenderOptions(stop_transmittance=0.0)
    w = max_weights(grid, o, d, opts)
    # a single ray through an opaque ball: the largest weight is close to 1 - exp(-sigma * delta)
    delta = 0.5 * 2.0 / 24
    assert float(w.max()) <= 1.0 - torch.exp(torch.tensor(-60.0 * delta)) + 1e-6
    assert float(w.max()) > 0.3  # the trilinear skin spreads the surface over a few samples
    # behind the opaque ball nothing is visible; beside the ray nothing is touched
    back = grid.coords()[:, 2] < 8
    assert float(w[back].max()) < 1e-3
    assert 0 < int((w > 0).sum()) < 200


@pytest.mark.parametrize("steps", [1, 2])
def test_dilation_is_the_chebyshev_ball_around_the_seeds(steps: int) -> None:
    from trainer.engine.resample import dilate_voxels

    g = torch.Generator().manual_seed(5)
    res = (9, 7, 11)
    seeds = torch.stack([torch.randint(0, n, (6,), generator=g) for n in res], 1)
    seeds = torch.cat((seeds, torch.tensor([[0, 0, 0], [8, 6, 10]])))  # corners: the border clips the ball
    mask = dilate_voxels(seeds, res, steps)
    every = torch.stack(torch.meshgrid(*(torch.arange(n) for n in res), indexing="ij"), -1)  # [..., 3]
    distance = (every[..., None, :] - seeds).abs().amax(-1).amin(-1)  # to the nearest seed
    assert torch.equal(mask, distance <= steps)


def test_prune_keeps_the_dilated_set_within_the_active_voxels() -> None:
    box = torch.tensor([[0.0] * 3, [1.0] * 3])
    grid = SparseGrid.dense(8, box, 0, density=1.0)
    coords = grid.coords()
    active = coords[:, 0] != 4  # a gap in x: dilation must not bring empty voxels back
    grid, _ = prune(grid, active, dilate=0)
    coords = grid.coords()
    keep = (coords == torch.tensor([3, 3, 3])).all(1)
    pruned, old_rows = prune(grid, keep, dilate=2)
    got = {tuple(c) for c in pruned.coords().tolist()}
    expect = {(x, y, z) for x in range(1, 6) for y in range(1, 6) for z in range(1, 6) if x != 4}
    assert got == expect
    assert torch.equal(grid.coords()[old_rows], pruned.coords())


PRUNE_MEMORY_SCRIPT = """
import resource, sys, torch
sys.path.insert(0, sys.argv[1])
from trainer.engine.grid import SparseGrid
from trainer.engine.resample import prune
torch.set_num_threads(1)
res = (512, 512, 512)
g = torch.Generator().manual_seed(0)
# 4 million voxels: a thick shell, as a 512^3 stage of a real scene holds
flat = torch.randperm(res[0] * res[1] * res[2], generator=g)[: 4_000_000].sort().values
coords = torch.stack((flat // (512 * 512), (flat // 512) % 512, flat % 512), 1)
grid = SparseGrid.from_coords(res, coords, torch.rand(len(flat), generator=g), torch.zeros(len(flat), 3),
                              torch.tensor([[0.0] * 3, [1.0] * 3]), 0)
grid.coords()
keep = torch.rand(len(flat), generator=g) < 0.5
del flat, coords
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
pruned, _ = prune(grid, keep, dilate=2)
after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print((after - before) / 1024, pruned.n_active)
"""


@pytest.mark.skipif(sys.platform != "linux", reason="ru_maxrss units and accounting as on Linux")
def test_pruning_a_512_grid_with_millions_of_voxels_stays_within_a_memory_bound() -> None:
    # a fresh process, so that the peak resident set is this prune's own
    out = subprocess.run([sys.executable, "-c", PRUNE_MEMORY_SCRIPT, str(Path(__file__).resolve().parents[2])],
                         capture_output=True, text=True, check=True, timeout=600)
    growth_mb, n_after = out.stdout.split()
    assert int(n_after) > 3_000_000  # half the seeds, dilated by 2 within the active set
    # the new grid's links alone are 512 MiB (int32 per voxel) and its rows ~60 MiB; the dilation's
    # two byte masks 256 MiB. 27 int64 neighbour coordinates per seed would add 1.3 GB more.
    assert float(growth_mb) < 1100, f"prune grew the peak resident set by {float(growth_mb):.0f} MiB"
