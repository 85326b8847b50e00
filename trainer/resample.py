"""Coarse-to-fine upsampling and pruning; both build a new SparseGrid with compact arrays of the new size.

Neither ever allocates a dense grid of values: candidate voxels are enumerated from the active rows
(children for upsampling, neighbours for dilation), and only the int32 links are dense.
"""

from __future__ import annotations

import math

import torch

from trainer.grid import SparseGrid, flatten


def upsample(grid: SparseGrid, resolution: int | tuple[int, int, int], chunk: int = 1 << 20) -> SparseGrid:
    """Resamples density and SH trilinearly onto a finer grid over the same box.

    The new active voxels are those whose centre lies inside an active coarse voxel. Density is in
    world units, so values carry over unchanged. Centres within half a coarse voxel of the box edge
    take the border value (the field is clamped there rather than faded to zero).
    """
    new_res: tuple[int, int, int] = (resolution,) * 3 if isinstance(resolution, int) else resolution
    old_res = grid.resolution
    device = grid.device
    ratio = torch.tensor([n / o for n, o in zip(new_res, old_res)], device=device)
    # fine voxels j with floor((j + 0.5) / ratio) == i are the children of coarse voxel i
    span = max(math.ceil(float(r)) for r in ratio) + 1
    offs = torch.stack(
        torch.meshgrid(*(torch.arange(span, device=device),) * 3, indexing="ij"), dim=-1
    ).reshape(-1, 3)
    parts = []
    coarse = grid.coords()
    for s in range(0, coarse.shape[0], max(chunk // offs.shape[0], 1)):
        c = coarse[s : s + max(chunk // offs.shape[0], 1)]
        cand = torch.floor(c.double() * ratio.double()).long()[:, None, :] + offs[None]
        cand = cand.reshape(-1, 3)
        parent = torch.floor((cand.double() + 0.5) / ratio.double()).long()
        own = (parent == c.repeat_interleave(offs.shape[0], dim=0)).all(-1)
        own &= (cand < torch.tensor(new_res, device=device)).all(-1)
        parts.append(cand[own])
    fine = torch.cat(parts) if parts else torch.zeros((0, 3), dtype=torch.int64, device=device)
    density = torch.empty(fine.shape[0], device=device)
    sh = torch.empty((fine.shape[0], grid.sh.shape[1]), device=device)
    with torch.no_grad():
        for s in range(0, fine.shape[0], chunk):
            x = (fine[s : s + chunk].float() + 0.5) / ratio  # fine centres in coarse grid coordinates
            d, c = grid.interpolate(x, clamp=True)
            density[s : s + chunk] = d
            sh[s : s + chunk] = c
    return SparseGrid.from_coords(new_res, fine, density, sh, grid.aabb, grid.sh_degree)


def prune(grid: SparseGrid, keep: torch.Tensor, dilate: int = 1) -> tuple[SparseGrid, torch.Tensor]:
    """Keeps the rows where `keep` [N] is true, grown by `dilate` voxels (26-neighbourhood) within the
    active set. Returns the new grid and the old row id of each new row (to carry optimiser state)."""
    with torch.no_grad():
        kept = keep.clone()
        coords = grid.coords()
        res = torch.tensor(grid.resolution, device=grid.device)
        steps = torch.arange(-1, 2, device=grid.device)
        offs = torch.stack(torch.meshgrid(steps, steps, steps, indexing="ij"), dim=-1).reshape(-1, 3)
        for _ in range(dilate):
            seeds = coords[kept]
            nb = (seeds[:, None, :] + offs[None]).reshape(-1, 3)
            inside = ((nb >= 0) & (nb < res)).all(-1)
            rows = grid.links.reshape(-1)[flatten(nb[inside], grid.resolution)].long()
            kept[rows[rows >= 0]] = True
        old_rows = torch.nonzero(kept).squeeze(1)  # ascending, so row-major order is kept
        new = SparseGrid.from_coords(
            grid.resolution,
            coords[old_rows],
            grid.density.detach()[old_rows].clone(),
            grid.sh.detach()[old_rows].clone(),
            grid.aabb,
            grid.sh_degree,
        )
    return new, old_rows
