"""SparseGrid: trilinear interpolation against grid_sample, the custom gather's gradient, conversions."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from trainer.engine.grid import SparseGrid, trilinear


def random_sparse_grid(res: tuple[int, int, int], degree: int, fill: float, seed: int) -> SparseGrid:
    g = torch.Generator().manual_seed(seed)
    active = torch.rand(res, generator=g) < fill
    coords = torch.nonzero(active)
    n = coords.shape[0]
    density = torch.rand(n, generator=g) * 5.0
    sh = torch.randn(n, 3 * (degree + 1) ** 2, generator=g)
    aabb = torch.tensor([[-1.0, -0.5, 0.0], [1.0, 1.5, 3.0]])
    # permuted on purpose: from_coords must reorder rows itself
    perm = torch.randperm(n, generator=g)
    return SparseGrid.from_coords(res, coords[perm], density[perm], sh[perm], aabb, degree)


def dense_values(grid: SparseGrid) -> torch.Tensor:
    """[C, nx, ny, nz] with density as channel 0, zeros for empty voxels."""
    c = 1 + grid.sh.shape[1]
    vol = torch.zeros((*grid.resolution, c))
    coords = grid.coords()
    vol[coords[:, 0], coords[:, 1], coords[:, 2]] = torch.cat((grid.density[:, None], grid.sh), 1)
    return vol.permute(3, 0, 1, 2)


def test_trilinear_matches_grid_sample_with_empty_voxels() -> None:
    res = (7, 5, 6)
    grid = random_sparse_grid(res, degree=1, fill=0.6, seed=1)
    assert 0 < grid.n_active < 7 * 5 * 6
    g = torch.Generator().manual_seed(2)
    # points over the whole box and a little beyond it (outside counts as zero on both sides)
    x = torch.rand((4000, 3), generator=g) * (torch.tensor(res) + 2.0) - 1.0
    density, sh = grid.interpolate(x)
    ours = torch.cat((density[:, None], sh), 1)
    # grid_sample: input [1, C, D=nx, H=ny, W=nz]; its grid's last dim is (W, H, D) = (z, y, x) in [-1, 1]
    norm = x / torch.tensor(res, dtype=torch.float32) * 2.0 - 1.0
    ref = F.grid_sample(
        dense_values(grid)[None], norm[:, [2, 1, 0]].reshape(1, 1, 1, -1, 3),
        mode="bilinear", padding_mode="zeros", align_corners=False,
    ).reshape(ours.shape[1], -1).T
    torch.testing.assert_close(ours, ref, atol=1e-5, rtol=1e-5)


def test_cell_centre_sample_returns_the_voxel_value() -> None:
    grid = random_sparse_grid((4, 4, 4), degree=0, fill=1.0, seed=3)
    coords = grid.coords()
    density, sh = grid.interpolate(coords.float() + 0.5)
    torch.testing.assert_close(density, grid.density)
    torch.testing.assert_close(sh, grid.sh)


def test_trilinear_gather_gradient_matches_gradcheck() -> None:
    g = torch.Generator().manual_seed(4)
    data = torch.randn((10, 3), generator=g, dtype=torch.float64, requires_grad=True)
    idx = torch.randint(0, 10, (25, 8), generator=g)  # repeated rows exercise accumulation
    w = torch.rand((25, 8), generator=g, dtype=torch.float64)
    assert torch.autograd.gradcheck(lambda d: trilinear(d, idx, w), (data,))


def test_occupancy_mask_covers_every_point_with_nonzero_field() -> None:
    grid = random_sparse_grid((9, 8, 7), degree=0, fill=0.1, seed=5)
    grid.density -= 2.5  # about half the active voxels go non-positive: they must not count
    assert bool((grid.density <= 0).any()) and bool((grid.density > 0).any())
    g = torch.Generator().manual_seed(6)
    x = torch.rand((20000, 3), generator=g) * torch.tensor([9.0, 8.0, 7.0])
    density, _ = grid.interpolate(x)
    cells, box = grid.occupancy()
    cell = torch.floor(x - 0.5).long() + 1
    live = cells[cell[:, 0], cell[:, 1], cell[:, 2]]
    nonzero = density > 0
    assert bool(live[nonzero].all())
    assert not bool(live.all())  # the mask does skip something
    inside_box = ((x >= box[0]) & (x <= box[1])).all(-1)
    assert bool(inside_box[nonzero].all())


def test_grid_data_round_trip_keeps_values_and_signed_density() -> None:
    from trainer.io.gridfile import GridData  # noqa: F401  (io's module; the conversion targets it)

    grid = random_sparse_grid((6, 6, 6), degree=2, fill=0.3, seed=7)
    grid.density[0] = -1.0
    data = grid.to_grid_data({"step": 3})
    assert data.density.min() == -1.0  # contract 4 v2: raw values, the clamp comes after interpolation
    back = SparseGrid.from_grid_data(data)
    torch.testing.assert_close(back.coords(), grid.coords())
    torch.testing.assert_close(back.density, grid.density)
    torch.testing.assert_close(back.sh, grid.sh)
    torch.testing.assert_close(back.aabb, grid.aabb)


def test_grid_file_renders_exactly_like_the_in_memory_grid(tmp_path: Path) -> None:
    from trainer.engine.render import render_image
    from trainer.io.gridfile import load_grid, save_grid

    grid = random_sparse_grid((12, 10, 14), degree=2, fill=0.7, seed=11)
    g = torch.Generator().manual_seed(12)
    # About half the voxels negative, as RMSProp leaves them: positive neighbours' interpolation dips
    # below zero near them, which a per-voxel clamp (contract 4 v1) would have lost.
    grid.density = torch.rand(grid.n_active, generator=g) * 30.0 - 15.0
    save_grid(tmp_path / "grid.npz", grid.to_grid_data({"step": 1}))
    back = SparseGrid.from_grid_data(load_grid(tmp_path / "grid.npz"))
    c2w = torch.tensor([[1.0, 0.0, 0.0, 0.1], [0.0, 0.0, -1.0, -4.0], [0.0, 1.0, 0.0, 1.4], [0.0, 0.0, 0.0, 1.0]])
    intrinsics = torch.tensor([40.0, 40.0, 24.0, 20.0])
    for dc_only in (False, True):
        ours = render_image(grid, c2w, intrinsics, 48, 40, (1.0, 1.0, 1.0), dc_only=dc_only)
        theirs = render_image(back, c2w, intrinsics, 48, 40, (1.0, 1.0, 1.0), dc_only=dc_only)
        assert (ours - theirs).abs().max().item() < 1e-5
        assert (ours < 0.9).float().mean() > 0.2  # the views do see the volume
    clamped = SparseGrid.from_grid_data(load_grid(tmp_path / "grid.npz"))
    clamped.density = torch.relu(clamped.density)
    v1 = render_image(clamped, c2w, intrinsics, 48, 40, (1.0, 1.0, 1.0))
    assert (v1 - ours).abs().max().item() > 0.05  # so the equality above is not vacuous


def test_state_dict_round_trip() -> None:
    grid = random_sparse_grid((5, 6, 7), degree=3, fill=0.4, seed=8)
    back = SparseGrid.from_state_dict(grid.state_dict())
    assert torch.equal(back.links, grid.links)
    assert torch.equal(back.density, grid.density) and torch.equal(back.sh, grid.sh)


def test_density_volume_reads_as_the_rows_do_and_follows_every_kind_of_change() -> None:
    grid = random_sparse_grid((9, 8, 7), degree=0, fill=0.4, seed=8)
    g = torch.Generator().manual_seed(9)
    # within the grid and up to half a voxel beyond it, where march's last samples can fall (a step of
    # at most 0.9 voxels, sample_density's bound)
    x = torch.rand((5000, 3), generator=g) * torch.tensor([9.9, 8.9, 7.9]) - 0.45

    def agrees() -> None:
        expected, _ = grid.interpolate(x)
        torch.testing.assert_close(grid.sample_density(x), expected, rtol=0, atol=1e-5)

    agrees()
    rows = torch.tensor([0, 3, grid.n_active - 1])
    grid.write_density(rows, torch.tensor([5.0, -2.0, 7.0]))  # the trainer's update: volume patched
    agrees()
    grid.density.mul_(-1.5)  # in place, behind the grid's back: the version counter shows it
    agrees()
    grid.density = torch.rand(grid.n_active, generator=g)  # replaced
    agrees()


@pytest.mark.parametrize("bag", [True, False])
def test_trilinear_gather_paths_give_the_same_values_and_gradients(bag: bool, monkeypatch: pytest.MonkeyPatch) -> None:
    # embedding_bag on the CPU and CUDA, index_select elsewhere (MPS); both against a dense reference
    import trainer.engine.grid as grid_module

    monkeypatch.setattr(grid_module, "_BAG_DEVICES", {"cpu"} if bag else set())
    g = torch.Generator().manual_seed(10)
    data = torch.randn((30, 5), generator=g, requires_grad=True)
    idx = torch.randint(0, 30, (200, 8), generator=g)
    w = torch.rand((200, 8), generator=g)
    out = trilinear(data, idx, w)
    dense = torch.zeros((200, 30)).index_put_((torch.arange(200)[:, None].expand(-1, 8), idx), w, accumulate=True)
    torch.testing.assert_close(out, dense @ data)
    upstream = torch.randn((200, 5), generator=g)
    (grad,) = torch.autograd.grad(out, data, upstream)
    torch.testing.assert_close(grad, dense.T @ upstream)
