"""Volume rendering of a SparseGrid with packed samples.

The samples of all rays live in one flat array (ray id per sample, rays in order), so rays of any
length cost only their own samples and compositing is a segment-wise cumulative sum. Work is cut in
three places before the expensive 3K-channel SH gather: ray segments far from any live voxel are
skipped, samples whose interpolated density is not positive are dropped (their ReLU'd density, and so
their gradient, is exactly zero), and samples behind the early-termination transmittance are dropped.

    C = sum_i T_i (1 - exp(-sigma_i delta)) c_i + T_N * background,  T_i = exp(-sum_{j<i} sigma_j delta)
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch

from trainer.engine.background import environment_colours
from trainer.engine.colour import to_display, to_light
from trainer.engine.grid import SparseGrid, trilinear
from trainer.engine.sh import C0, num_coeffs, sh_basis, sh_to_rgb
from trainer.io.data import camera_rays


@dataclass
class RenderOptions:
    step_size: float = 0.5  # voxels (of the smallest voxel side)
    stop_transmittance: float = 1e-3  # early ray termination
    dc_only: bool = False  # view-independent colour (first SH coefficient only)


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


# Fine samples per segment in march's first pass: 16 half-voxel steps span 8 voxels (on lego at 128³
# after pruning, the march of 5,000 rays took 25.6 ms one sample at a time, 18.0 by 8, 13.8 by 16).
SEGMENT_SHIFT = 4
SEGMENT = 1 << SEGMENT_SHIFT


@dataclass
class Marched:
    """The samples of a batch of rays where the field is not zero, packed (rays in order)."""

    ray_id: torch.Tensor  # [S] int64, non-decreasing
    x: torch.Tensor  # [S, 3] grid coordinates
    sigma: torch.Tensor  # [S] ReLU'd density, world units (> 0), read from the density volume
    delta: float  # world length of each sample's segment


@torch.no_grad()
def march(grid: SparseGrid, origins: torch.Tensor, dirs: torch.Tensor, opts: RenderOptions) -> Marched:
    """Every sample with positive density along the rays (world space, unit directions).

    Samples sit every step_size voxels from where the ray enters the box around the live voxels, at
    segment mid-points. Two passes: the rays are first cut into segments of SEGMENT samples, and a
    segment whose midpoint sees no live cell within its own half-length (the occupancy grown by that
    radius) is skipped whole; the density of every sample of the remaining segments is then read from
    the density volume, and the samples where it is positive are kept. On a pruned grid most of a ray
    is empty, so the first pass looks at one point where the samples would be sixteen.
    """
    device = origins.device
    _, box = grid.occupancy()
    vs = grid.voxel_size
    o = (origins - grid.aabb[0]) / vs
    d = dirs / vs  # grid units per world unit of t
    t_near, t_far = ray_box(o, d, box[0], box[1])
    delta = opts.step_size * grid.unit
    n = torch.ceil((t_far - t_near) / delta).clamp(min=0).long()  # samples per ray
    m = SEGMENT
    n_seg = (n + (m - 1)) // m
    total = int(n_seg.sum())  # host sync: the segments' count
    if total == 0:
        return _no_samples(device, delta)
    seg_ray = torch.repeat_interleave(torch.arange(n.shape[0], device=device), n_seg, output_size=total)
    seg = torch.arange(total, device=device) - (torch.cumsum(n_seg, 0) - n_seg).index_select(0, seg_ray)
    # A sample moves at most step_size grid units per step along each axis (delta is step_size times
    # the smallest voxel side), so every sample of a segment is within m/2 * step_size of its midpoint,
    # and its cell within that many cells of the midpoint's.
    near = grid.near_occupancy(math.ceil(0.5 * m * opts.step_size))
    mid = t_near.index_select(0, seg_ray) + (seg.to(t_near.dtype) * m + 0.5 * m) * delta
    xm = o.index_select(0, seg_ray) + mid[:, None] * d.index_select(0, seg_ray)
    cells = torch.minimum(torch.floor(xm + 0.5).clamp_(min=0.0), grid.cell_top)
    _, ny, nz = near.shape
    keep = torch.nonzero(near.reshape(-1)[((cells[:, 0] * ny + cells[:, 1]) * nz + cells[:, 2]).long()]).squeeze(1)
    if keep.numel() == 0:  # (the size is on the host already: nonzero's output)
        return _no_samples(device, delta)
    seg_ray, first = seg_ray.index_select(0, keep), seg.index_select(0, keep) * m
    # the m samples of each kept segment as a [K, m] block, rays in order
    t = (t_near.index_select(0, seg_ray) + (first.to(t_near.dtype) + 0.5) * delta)[:, None] + \
        torch.arange(m, device=device, dtype=t_near.dtype) * delta
    x = (o.index_select(0, seg_ray)[:, None, :] + t[..., None] * d.index_select(0, seg_ray)[:, None, :]).view(-1, 3)
    inside = (first[:, None] + torch.arange(m, device=device)) < n.index_select(0, seg_ray)[:, None]
    sigma = torch.relu(grid.sample_density(x))
    live = torch.nonzero((sigma > 0) & inside.view(-1)).squeeze(1)  # host sync: the samples with density
    return Marched(seg_ray.index_select(0, live >> SEGMENT_SHIFT), x.index_select(0, live), sigma.index_select(0, live), delta)


def _no_samples(device: torch.device, delta: float) -> Marched:
    return Marched(torch.zeros((0,), dtype=torch.int64, device=device), torch.zeros((0, 3), device=device),
                   torch.zeros((0,), device=device), delta)


def longest_ray(grid: SparseGrid, step_size: float) -> int:
    """An upper bound on any ray's sample count in `march`: the grid box's diagonal in steps, plus one
    for the rounding up. Known on the host, so the transmittance tables can be sized without asking
    the device for the longest ray."""
    extent = [r * v for r, v in zip(grid.resolution, grid.voxel_size_host)]
    return int(sum(e * e for e in extent) ** 0.5 / (step_size * grid.unit)) + 2


def _padded_scan(
    values: torch.Tensor, segment: torch.Tensor, position: torch.Tensor, n_segments: int, width: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Sum of the values before each one in its segment [N], and each segment's total [n_segments].

    The values go one column to the right of their position in a zero-filled [n_segments, width + 1]
    table, so that a row's cumulative sum read at a value's own cell is the sum before it, and its last
    column the total: each segment is summed from its own start, never from a running total of others.
    """
    cell = segment * (width + 1) + position
    table = values.new_zeros((n_segments * (width + 1),)).index_copy(0, cell + 1, values)
    depth = torch.cumsum(table.view(n_segments, width + 1), 1)
    return depth.view(-1).index_select(0, cell), depth[:, -1]


def segment_transmittance(
    optical: torch.Tensor, ray_id: torch.Tensor, n_rays: int, longest: int | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Exclusive transmittance T_i [S] and final transmittance T_N [B] for packed samples (rays in order).

    Optical depths are summed in their own dtype from each ray's first sample. One cumulative sum
    over all rays minus each ray's start would round every small depth to the precision of the running
    total of the rays before it (relative error ~1e-2 over a million float32 samples), and float64 is
    slow on most GPUs and missing on Apple's MPS. So: a two-level segmented scan. Rays are cut into
    chunks of w ~ sqrt(longest ray) samples, each chunk summed in one row of a padded table, then the
    chunk sums per ray in a second one; both hold about S + B * sqrt(longest) cells, where a single
    [B, longest] table grows with the one longest ray (50x the samples in a skewed batch).

    `longest`: an upper bound on any ray's sample count (longest_ray); with it, every size is known on
    the host and nothing waits for the device. Without it, the longest ray is read from the device.
    """
    if optical.numel() == 0:
        return optical.new_zeros((0,)), optical.new_ones((n_rays,))
    device = optical.device
    # counts by index_add rather than bincount, which reads the largest id back to the host on CUDA
    counts = torch.zeros(n_rays, dtype=torch.int64, device=device).index_add_(0, ray_id, torch.ones_like(ray_id))
    if longest is None:
        longest = int(counts.max())
    shift = ((max(longest, 1) - 1).bit_length() + 1) // 2  # w = 2^shift >= sqrt(longest)
    w = 1 << shift
    first = torch.cumsum(counts, 0) - counts
    position = torch.arange(optical.shape[0], device=device) - first.index_select(0, ray_id)
    n_chunks = (counts + (w - 1)) >> shift
    chunk_first = torch.cumsum(n_chunks, 0) - n_chunks
    in_ray = position >> shift  # the chunk's index within its ray
    chunk = chunk_first.index_select(0, ray_id) + in_ray
    # sum of ceil(count / w) over the rays, bounded without reading the counts: rows past the real
    # chunks stay zero
    chunk_rows = optical.shape[0] // w + n_rays
    within, _ = _padded_scan(optical, chunk, position & (w - 1), chunk_rows, w)
    # chunk sums land straight in each ray's row of the second table
    width = (longest + w - 1) >> shift
    cell = ray_id * (width + 1) + in_ray
    sums = optical.new_zeros((n_rays * (width + 1),)).index_add(0, cell + 1, optical)
    depth = torch.cumsum(sums.view(n_rays, width + 1), 1)
    before = depth.view(-1).index_select(0, cell)
    return torch.exp(-(before + within)), torch.exp(-depth[:, -1])


@dataclass
class Samples:
    """Packed samples of a batch of rays (no gradients: geometry only)."""

    ray_id: torch.Tensor  # [S] int64, non-decreasing
    rows: torch.Tensor  # [S, 8] corner rows (0 where the corner is empty)
    corner_w: torch.Tensor  # [S, 8] trilinear weights (0 where the corner is empty)
    delta: float  # world length of each sample's segment
    n_rays: int
    # [B] optical depth of the samples visible_samples dropped behind each ray's visible ones: they
    # still dim what lies beyond (the background), though by less than stop_transmittance
    hidden_depth: torch.Tensor | None = None


@torch.no_grad()
def visible_samples(
    grid: SparseGrid, origins: torch.Tensor, dirs: torch.Tensor, opts: RenderOptions, longest: int | None = None
) -> Samples:
    """The samples that can change a pixel: positive density, in front of the early-termination point,
    with their corner rows and weights.

    Without gradients, so that the differentiable pass and its backward see only these (on an opaque
    scene about two samples per ray of the dozens marched). Exact: the dropped samples in front of a
    kept one have zero density, so the kept samples' transmittance is unchanged; dropped samples behind
    them change a pixel by less than stop_transmittance. `longest`: as for segment_transmittance.
    """
    marched = march(grid, origins, dirs, opts)
    n_rays = origins.shape[0]
    optical = marched.sigma * marched.delta
    trans, _ = segment_transmittance(optical, marched.ray_id, n_rays, longest)
    visible = trans > opts.stop_transmittance
    hidden = optical.new_zeros((n_rays,)).index_add_(0, marched.ray_id, torch.where(visible, 0.0, optical))
    keep = torch.nonzero(visible).squeeze(1)  # host sync
    rows, corner_w = grid.corners(marched.x.index_select(0, keep))
    return Samples(marched.ray_id.index_select(0, keep), rows, corner_w, marched.delta, n_rays, hidden)


@dataclass
class DensityPass:
    sigma: torch.Tensor  # [S] world-unit density of the samples
    weight: torch.Tensor  # [S] T_i * alpha_i
    t_final: torch.Tensor  # [B] transmittance through the whole ray


def density_pass(density: torch.Tensor, rows: torch.Tensor, s: Samples, longest: int | None = None) -> DensityPass:
    """Interpolates density from `density` (indexed by `rows`, which may be remapped) and composites
    the samples of `s`, as visible_samples left them."""
    sigma = torch.relu(trilinear(density[:, None], rows, s.corner_w)[:, 0])
    optical = sigma * s.delta
    trans, t_final = segment_transmittance(optical, s.ray_id, s.n_rays, longest)
    if s.hidden_depth is not None:
        t_final = t_final * torch.exp(-s.hidden_depth)
    return DensityPass(sigma, trans * (1.0 - torch.exp(-optical)), t_final)


def _dc_rgb(dc: torch.Tensor) -> torch.Tensor:
    """View-independent colour [S, 3] from interpolated first SH coefficients [S, 3]."""
    return torch.relu(dc * C0 + 0.5)


def _composite(
    rgb_s: torch.Tensor, ray_id: torch.Tensor, weight: torch.Tensor, t_final: torch.Tensor,
    background: Sequence[float] | torch.Tensor,
) -> torch.Tensor:
    """Per-ray colour [B, 3]: sum of weight * sample colour, plus T_N * background."""
    bg = torch.as_tensor(background, dtype=rgb_s.dtype, device=rgb_s.device)
    rgb = torch.zeros((t_final.shape[0], 3), dtype=rgb_s.dtype, device=rgb_s.device)
    rgb = rgb.index_add(0, ray_id, weight[:, None] * rgb_s)
    return rgb + t_final[:, None] * bg


def color_pass(
    sh: torch.Tensor,
    rows: torch.Tensor,
    corner_w: torch.Tensor,
    ray_id: torch.Tensor,
    weight: torch.Tensor,
    dirs: torch.Tensor,
    t_final: torch.Tensor,
    background: Sequence[float] | torch.Tensor,
    sh_degree: int,
    dc_only: bool,
) -> torch.Tensor:
    """Colour of each ray [B, 3] from the seen samples (rows/corner_w/ray_id/weight already selected)."""
    k = num_coeffs(sh_degree)
    if dc_only:
        rgb_s = _dc_rgb(trilinear(sh[:, ::k], rows, corner_w))  # the first coefficient of each channel
    else:
        rgb_s = sh_to_rgb(trilinear(sh, rows, corner_w), sh_basis(dirs, sh_degree).index_select(0, ray_id))
    return _composite(rgb_s, ray_id, weight, t_final, background)


def color_and_dc_pass(
    sh: torch.Tensor,
    rows: torch.Tensor,
    corner_w: torch.Tensor,
    ray_id: torch.Tensor,
    weight: torch.Tensor,
    dirs: torch.Tensor,
    t_final: torch.Tensor,
    background: Sequence[float] | torch.Tensor,
    sh_degree: int,
) -> tuple[torch.Tensor, torch.Tensor]:
    """color_pass's full and view-independent colours at once, from one interpolation of the SH."""
    k = num_coeffs(sh_degree)
    coeffs = trilinear(sh, rows, corner_w)
    full = sh_to_rgb(coeffs, sh_basis(dirs, sh_degree).index_select(0, ray_id))
    dc = _dc_rgb(coeffs[:, ::k])
    return (_composite(full, ray_id, weight, t_final, background),
            _composite(dc, ray_id, weight, t_final, background))


def render_rays(
    grid: SparseGrid,
    origins: torch.Tensor,
    dirs: torch.Tensor,
    background: Sequence[float] | torch.Tensor,
    opts: RenderOptions,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Colour [B, 3] in the grid's light (grid.color_space; trainer.engine.colour.to_display encodes it)
    and accumulated opacity [B] of rays (world space, unit directions). `background` is an encoded colour,
    as an image holds it.

    Differentiable with respect to grid.density and grid.sh when they require gradients. A grid with a
    learnt background (grid.background_map) shows that behind it instead of `background`.
    """
    s = visible_samples(grid, origins, dirs, opts)
    dp = density_pass(grid.density, s.rows, s)
    if grid.background_map is not None:  # a learnt background replaces the colour; its texels are light
        background = environment_colours(grid.background_map, dirs)
    else:
        background = to_light(torch.as_tensor(background, dtype=torch.float32, device=grid.device), grid.color_space)
    rgb = color_pass(
        grid.sh, s.rows, s.corner_w, s.ray_id, dp.weight, dirs, dp.t_final, background, grid.sh_degree, opts.dc_only
    )
    return rgb, 1.0 - dp.t_final


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
    supersample: int = 1,
) -> torch.Tensor:
    """Renders one view [H, W, 3] (no gradients); c2w [4, 4] OpenGL axes, intrinsics fx, fy, cx, cy.
    supersample n: each pixel is the mean of n x n rays on a stratified grid over its area (a box
    filter, as the loader's area downscale), instead of the one ray through its centre; the mean is taken
    in the grid's light, then encoded, as Blender's pixel filter does."""
    opts = RenderOptions(**{**(opts or RenderOptions()).__dict__, "dc_only": dc_only})
    out = torch.zeros((height * width, 3), device=grid.device)
    points = [((a + 0.5) / supersample, (b + 0.5) / supersample) for b in range(supersample) for a in range(supersample)]
    for offset in points:
        origins, dirs = camera_rays(c2w[None], intrinsics[None], width, height, grid.device, offset)
        for s in range(0, origins.shape[0], chunk):
            out[s : s + chunk] += render_rays(grid, origins[s : s + chunk], dirs[s : s + chunk], background, opts)[0]
    return to_display(out / len(points), grid.color_space).reshape(height, width, 3).clamp(0.0, 1.0)


@torch.no_grad()
def max_weights(
    grid: SparseGrid, origins: torch.Tensor, dirs: torch.Tensor, opts: RenderOptions, chunk: int = 16384
) -> torch.Tensor:
    """Each row's largest rendering weight over the given rays [N] (a sample credits its 8 corners)."""
    best = torch.zeros(grid.n_active, device=grid.device)
    for i in range(0, origins.shape[0], chunk):
        o = origins[i : i + chunk].to(grid.device)
        d = dirs[i : i + chunk].to(grid.device)
        s = visible_samples(grid, o, d, opts)
        dp = density_pass(grid.density, s.rows, s)
        credit = torch.where(s.corner_w > 0, dp.weight[:, None], torch.zeros_like(s.corner_w))
        best.scatter_reduce_(0, s.rows.reshape(-1), credit.reshape(-1), reduce="amax")
    return best
