"""Volume rendering of a SparseGrid with packed samples.

The samples of all rays live in one flat array (ray id per sample, rays in order), so rays of any
length cost only their own samples and compositing is a segment-wise cumulative sum. Work is cut in
three places before the expensive 3K-channel SH gather: samples in empty occupancy blocks are dropped,
samples whose interpolated density is not positive are dropped (their ReLU'd density, and so their
gradient, is exactly zero), and samples behind the early-termination transmittance are dropped.

    C = sum_i T_i (1 - exp(-sigma_i delta)) c_i + T_N * background,  T_i = exp(-sum_{j<i} sigma_j delta)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch

from trainer.grid import SparseGrid, trilinear
from trainer.sh import C0, num_coeffs, sh_basis, sh_to_rgb


@dataclass
class RenderOptions:
    step_size: float = 0.5  # voxels (of the smallest voxel side)
    stop_transmittance: float = 1e-3  # early ray termination
    occupancy_block: int = 2  # voxels per occupancy-mask cell
    dc_only: bool = False  # view-independent colour (first SH coefficient only)


@dataclass
class RenderOutput:
    rgb: torch.Tensor  # [B, 3]
    opacity: torch.Tensor  # [B] accumulated opacity 1 - T_N
    sample_sigma: torch.Tensor  # [S] density (world units) of the samples with positive density
    sample_rows: torch.Tensor  # [S, 8] corner rows of those samples (for touched-row bookkeeping)
    sample_weight: torch.Tensor  # [S] rendering weight T_i * alpha_i of those samples
    sample_corner_w: torch.Tensor  # [S, 8] trilinear weights of those samples


def ray_box(
    origins: torch.Tensor, dirs: torch.Tensor, lo: torch.Tensor, hi: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Slab intersection of rays with the box [lo, hi]: t_near, t_far [B] (t_far <= t_near: a miss)."""
    safe = torch.where(dirs.abs() < 1e-12, torch.full_like(dirs, 1e-12), dirs)
    inv = 1.0 / safe
    t0 = (lo - origins) * inv
    t1 = (hi - origins) * inv
    t_near = torch.minimum(t0, t1).amax(-1).clamp(min=0.0)
    t_far = torch.maximum(t0, t1).amin(-1)
    return t_near, t_far


def march(
    grid: SparseGrid, origins: torch.Tensor, dirs: torch.Tensor, opts: RenderOptions
) -> tuple[torch.Tensor, torch.Tensor, float]:
    """Packed sample points in live occupancy blocks: (ray id [S], grid coords [S, 3], delta in world units).

    Rays are world-space with unit directions; samples sit every step_size voxels from where the ray
    enters the box around the active voxels, at segment mid-points.
    """
    device = origins.device
    mask, box = grid.occupancy(opts.occupancy_block)
    vs = grid.voxel_size.to(device)
    o = (origins - grid.aabb[0].to(device)) / vs
    d = dirs / vs  # grid units per world unit of t
    t_near, t_far = ray_box(o, d, box[0].to(device), box[1].to(device))
    delta = opts.step_size * float(vs.min())
    n = torch.ceil((t_far - t_near) / delta).clamp(min=0).long()
    total = int(n.sum())
    if total == 0:
        empty = torch.zeros((0,), dtype=torch.int64, device=device)
        return empty, torch.zeros((0, 3), device=device), delta
    ray_id = torch.repeat_interleave(torch.arange(n.shape[0], device=device), n, output_size=total)
    first = torch.cumsum(n, 0) - n
    k = torch.arange(total, device=device) - first[ray_id]
    t = t_near[ray_id] + (k.to(t_near.dtype) + 0.5) * delta
    x = o[ray_id] + t[:, None] * d[ray_id]
    cell = (torch.floor(x - 0.5).long() + 1).clamp(min=0)
    block = cell // opts.occupancy_block
    bx, by, bz = mask.shape
    block = torch.minimum(block, torch.tensor([bx - 1, by - 1, bz - 1], device=device))
    live = mask[block[:, 0], block[:, 1], block[:, 2]]
    return ray_id[live], x[live], delta


def segment_transmittance(
    optical: torch.Tensor, ray_id: torch.Tensor, n_rays: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Exclusive transmittance T_i [S] and final transmittance T_N [B] for packed samples.

    The cumulative sum runs in float64 over all rays at once: subtracting each ray's starting value
    from a float32 running total over thousands of rays would lose the small optical depths.
    """
    od = optical.double()
    total = torch.zeros(n_rays, dtype=torch.float64, device=optical.device).index_add(0, ray_id, od)
    if od.numel() == 0:
        return optical.new_zeros((0,)), torch.exp(-total).to(optical.dtype)
    inclusive = torch.cumsum(od, 0)
    exclusive = inclusive - od
    counts = torch.bincount(ray_id, minlength=n_rays)
    first = (torch.cumsum(counts, 0) - counts).clamp(max=od.shape[0] - 1)
    start = exclusive[first]  # exclusive sum before each ray's first sample
    t = torch.exp(-(exclusive - start[ray_id]))
    return t.to(optical.dtype), torch.exp(-total).to(optical.dtype)


def render_rays(
    grid: SparseGrid,
    origins: torch.Tensor,
    dirs: torch.Tensor,
    background: Sequence[float] | torch.Tensor,
    opts: RenderOptions,
) -> RenderOutput:
    """Differentiable render of rays [B, 3] (world space, unit directions); gradients reach grid rows."""
    device = origins.device
    n_rays = origins.shape[0]
    ray_id, x, delta = march(grid, origins, dirs, opts)
    rows, cw = grid.corners(x)
    sigma = torch.relu(trilinear(grid.density[:, None], rows, cw)[:, 0])
    positive = sigma > 0
    ray_id, rows, cw, sigma = ray_id[positive], rows[positive], cw[positive], sigma[positive]
    alpha = 1.0 - torch.exp(-sigma * delta)
    trans, t_final = segment_transmittance(sigma * delta, ray_id, n_rays)
    weight = trans * alpha
    # Samples behind an opaque surface change the colour by less than stop_transmittance.
    seen = (trans > opts.stop_transmittance).detach()
    s_ray, s_rows, s_cw, s_weight = ray_id[seen], rows[seen], cw[seen], weight[seen]
    k = num_coeffs(grid.sh_degree)
    if opts.dc_only:
        dc = grid.sh[:, ::k]  # the first coefficient of each channel
        rgb_s = torch.relu(trilinear(dc, s_rows, s_cw) * C0 + 0.5)
    else:
        basis = sh_basis(dirs, grid.sh_degree)[s_ray]
        rgb_s = sh_to_rgb(trilinear(grid.sh, s_rows, s_cw), basis)
    bg = torch.as_tensor(background, dtype=origins.dtype, device=device)
    rgb = torch.zeros((n_rays, 3), dtype=origins.dtype, device=device).index_add(
        0, s_ray, s_weight[:, None] * rgb_s
    )
    rgb = rgb + t_final[:, None] * bg
    return RenderOutput(rgb, 1.0 - t_final, sigma, rows, weight, cw)


@torch.no_grad()
def render_image(
    grid: SparseGrid,
    c2w: torch.Tensor,
    intrinsics: torch.Tensor,
    width: int,
    height: int,
    background: Sequence[float] | torch.Tensor,
    *,
    dc_only: bool = False,
    chunk: int = 16384,
    opts: RenderOptions | None = None,
) -> torch.Tensor:
    """Renders one view [H, W, 3] (no gradients); c2w [4, 4] OpenGL axes, intrinsics fx, fy, cx, cy."""
    opts = RenderOptions(**{**(opts or RenderOptions()).__dict__, "dc_only": dc_only})
    origins, dirs = pinhole_rays(c2w.to(grid.device), intrinsics.to(grid.device), width, height)
    out = torch.empty((origins.shape[0], 3), device=grid.device)
    for s in range(0, origins.shape[0], chunk):
        out[s : s + chunk] = render_rays(grid, origins[s : s + chunk], dirs[s : s + chunk], background, opts).rgb
    return out.reshape(height, width, 3).clamp(0.0, 1.0)


def pinhole_rays(
    c2w: torch.Tensor, intrinsics: torch.Tensor, width: int, height: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """World rays [H*W, 3] of one view, row-major; pixel centres at +0.5 (contract 1)."""
    fx, fy, cx, cy = (float(v) for v in intrinsics)
    device = c2w.device
    v, u = torch.meshgrid(
        torch.arange(height, device=device, dtype=torch.float32) + 0.5,
        torch.arange(width, device=device, dtype=torch.float32) + 0.5,
        indexing="ij",
    )
    cam = torch.stack(((u - cx) / fx, -(v - cy) / fy, -torch.ones_like(u)), dim=-1).reshape(-1, 3)
    dirs = cam @ c2w[:3, :3].T
    dirs = dirs / dirs.norm(dim=-1, keepdim=True)
    origins = c2w[:3, 3].expand_as(dirs).contiguous()
    return origins, dirs


@torch.no_grad()
def max_weights(
    grid: SparseGrid, origins: torch.Tensor, dirs: torch.Tensor, opts: RenderOptions, chunk: int = 16384
) -> torch.Tensor:
    """Each row's largest rendering weight over the given rays [N] (a sample credits its 8 corners)."""
    best = torch.zeros(grid.n_active, device=grid.device)
    for s in range(0, origins.shape[0], chunk):
        o = origins[s : s + chunk].to(grid.device)
        d = dirs[s : s + chunk].to(grid.device)
        ray_id, x, delta = march(grid, o, d, opts)
        rows, cw = grid.corners(x)
        sigma = torch.relu(trilinear(grid.density[:, None], rows, cw)[:, 0])
        positive = sigma > 0
        ray_id, rows, cw, sigma = ray_id[positive], rows[positive], cw[positive], sigma[positive]
        trans, _ = segment_transmittance(sigma * delta, ray_id, o.shape[0])
        weight = trans * (1.0 - torch.exp(-sigma * delta))
        credit = torch.where(cw > 0, weight[:, None], torch.zeros_like(cw))
        best.scatter_reduce_(0, rows.reshape(-1), credit.reshape(-1), reduce="amax")
    return best
