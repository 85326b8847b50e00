"""Rendering against closed forms, a brute-force dense reference, and finite differences."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from srgb import decode_srgb, encode_srgb

from trainer.engine.grid import SparseGrid
from trainer.engine.render import RenderOptions, ray_box, render_image, render_rays, segment_transmittance
from trainer.engine.sh import C0

BG = (1.0, 1.0, 1.0)


def box_grid(sigma: float, sh_dc: tuple[float, float, float], sparse: bool) -> SparseGrid:
    """12^3 voxels of 0.1 over [0, 1.2]^3; voxels 3..8 on every axis hold sigma, the rest empty or zero."""
    res, lo, hi = 12, 3, 9
    ijk = torch.stack(torch.meshgrid(*(torch.arange(res),) * 3, indexing="ij"), -1).reshape(-1, 3)
    inner = ((ijk >= lo) & (ijk < hi)).all(-1)
    coords = ijk[inner] if sparse else ijk
    density = torch.where(inner[inner] if sparse else inner, sigma, 0.0).float()
    sh = torch.zeros((coords.shape[0], 3 * 4))
    sh[:, 0::4] = torch.tensor(sh_dc)
    aabb = torch.tensor([[0.0, 0.0, 0.0], [1.2, 1.2, 1.2]])
    return SparseGrid.from_coords((res,) * 3, coords, density, sh, aabb, 1)


def test_constant_density_box_matches_closed_form() -> None:
    sh_dc = (1.0, -0.5, 0.2)
    colour = torch.relu(torch.tensor(sh_dc) * C0 + 0.5)
    for sparse in (True, False):
        for sigma in (0.5, 4.0, 20.0):
            grid = box_grid(sigma, sh_dc, sparse)
            # axis-aligned rays through voxel centres along x, y and z (both directions)
            o = torch.tensor([[-1.0, 0.55, 0.65], [0.55, 3.0, 0.45], [0.75, 0.55, -2.0], [2.0, 0.45, 0.55]])
            d = torch.tensor([[1.0, 0.0, 0.0], [0.0, -1.0, 0.0], [0.0, 0.0, 1.0], [-1.0, 0.0, 0.0]])
            for stop in (0.0, 1e-3):
                rgb, opacity = render_rays(grid, o, d, BG, RenderOptions(stop_transmittance=stop))
                # trilinear tents integrate to one voxel each: optical depth = sigma * 6 voxels * 0.1
                t = math.exp(-sigma * 0.6)
                torch.testing.assert_close(opacity, torch.full((4,), 1.0 - t), atol=1e-5, rtol=1e-5)
                if sparse:
                    continue  # empty neighbours have SH 0, so the colour fades at the box's skin
                expect = (1.0 - t) * colour + t * torch.tensor(BG)
                atol = 1e-5 if stop == 0.0 else 2e-3
                torch.testing.assert_close(rgb, expect.expand(4, 3), atol=atol, rtol=0)


def test_a_linear_grid_mixes_light_and_its_images_encode_the_mix() -> None:
    """color_space "linear": the ray sums linear colours and the decoded background; render_image encodes
    the pixel's mean (reference: the standard sRGB curve in float64 numpy, tests/fixtures/srgb.py)."""
    sh_dc, sigma, bg = (1.0, -0.5, 0.2), 2.0, (0.2, 0.3, 0.9)
    grid = box_grid(sigma, sh_dc, sparse=False)
    grid.color_space = "linear"
    colour = np.maximum(np.array(sh_dc) * C0 + 0.5, 0.0)
    t = math.exp(-sigma * 0.6)
    light = (1.0 - t) * colour + t * decode_srgb(np.array(bg))
    o, d = torch.tensor([[-1.0, 0.55, 0.65]]), torch.tensor([[1.0, 0.0, 0.0]])
    rgb, _ = render_rays(grid, o, d, bg, RenderOptions())
    np.testing.assert_allclose(rgb[0].numpy(), light, atol=1e-5)
    # one pixel of an orthographic-like narrow camera along -z through the same kind of ray
    c2w = torch.eye(4)
    c2w[:3, 3] = torch.tensor([0.55, 0.65, 5.0])
    k = torch.tensor([1e4, 1e4, 0.5, 0.5])
    img = render_image(grid, c2w, k, 1, 1, bg, supersample=2)
    np.testing.assert_allclose(img[0, 0].numpy(), encode_srgb(light), atol=1e-4)
    # mixing the encoded values instead is visibly different here
    assert np.abs(encode_srgb(light) - ((1.0 - t) * encode_srgb(colour) + t * np.array(bg))).max() > 0.02


def test_rays_that_miss_show_the_background() -> None:
    grid = box_grid(10.0, (1.0, 1.0, 1.0), sparse=True)
    o = torch.tensor([[-1.0, 5.0, 0.5], [0.6, 0.6, 3.0]])
    d = torch.tensor([[1.0, 0.0, 0.0], [0.0, 0.0, 1.0]])  # parallel outside; pointing away
    rgb, opacity = render_rays(grid, o, d, (0.2, 0.3, 0.4), RenderOptions())
    torch.testing.assert_close(rgb, torch.tensor([[0.2, 0.3, 0.4]] * 2))
    assert torch.all(opacity == 0)


def test_ray_box_slabs() -> None:
    o = torch.tensor([[-1.0, 0.5, 0.5], [0.5, 0.5, 0.5]])
    d = F.normalize(torch.tensor([[1.0, 0.0, 0.0], [1.0, 1.0, 0.0]]), dim=-1)
    near, far = ray_box(o, d, torch.zeros(3), torch.ones(3))
    torch.testing.assert_close(near, torch.tensor([1.0, 0.0]))
    torch.testing.assert_close(far, torch.tensor([2.0, 0.5 * math.sqrt(2.0)]))


def test_segment_transmittance_is_exclusive_per_ray() -> None:
    g = torch.Generator().manual_seed(0)
    counts = torch.tensor([3, 0, 5, 1, 4])
    ray_id = torch.repeat_interleave(torch.arange(5), counts)
    optical = torch.rand(int(counts.sum()), generator=g)
    t, t_final = segment_transmittance(optical, ray_id, 5)
    start = 0
    for r, n in enumerate(counts.tolist()):
        seg = optical[start : start + n]
        expect = torch.exp(-torch.cat((torch.zeros(1), torch.cumsum(seg, 0)[:-1]))) if n else seg
        torch.testing.assert_close(t[start : start + n], expect)
        torch.testing.assert_close(t_final[r], torch.exp(-seg.sum()))
        start += n


def per_ray_float64(optical: torch.Tensor, counts: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    """Exclusive transmittance and final transmittance, ray by ray in numpy float64."""
    t, t_final = [], []
    for seg in np.split(optical.double().numpy(), np.cumsum(counts.numpy())[:-1]):
        depth = np.cumsum(seg)
        t.append(np.exp(-(depth - seg)))
        t_final.append(np.exp(-depth[-1]) if len(seg) else 1.0)
    return np.concatenate(t), np.array(t_final)


@pytest.mark.parametrize("skewed", [False, True])
def test_segment_transmittance_keeps_float32_precision_over_thousands_of_rays(skewed: bool) -> None:
    g = torch.Generator().manual_seed(1)
    if skewed:  # a few long rays among short ones: the longest ray sets the tables' widths
        counts = torch.randint(0, 40, (4000,), generator=g)
        counts[::400] = 2000
    else:
        counts = torch.randint(0, 600, (4000,), generator=g)
    ray_id = torch.repeat_interleave(torch.arange(4000), counts)
    optical = 10.0 ** (-7.0 + 6.0 * torch.rand(int(counts.sum()), generator=g))  # 1e-7 .. 0.1 per sample
    t, t_final = segment_transmittance(optical, ray_id, 4000)
    assert t.dtype == t_final.dtype == torch.float32
    t_ref, final_ref = per_ray_float64(optical, counts)
    assert np.max(np.abs(t.double().numpy() - t_ref) / t_ref) < 2e-5
    assert np.max(np.abs(t_final.double().numpy() - final_ref) / final_ref) < 2e-5
    if skewed:
        return
    # the case is a hard one: one float32 running sum over its 1.2M samples, less each ray's start, is far off
    exclusive = torch.cumsum(optical, 0) - optical
    first = torch.cumsum(counts, 0) - counts
    naive = torch.exp(-(exclusive - exclusive[first.clamp(max=len(optical) - 1)][ray_id]))
    assert np.max(np.abs(naive.double().numpy() - t_ref) / t_ref) > 1e-3


def test_segment_transmittance_gradient() -> None:
    counts = torch.tensor([3, 0, 5, 1, 4, 9])
    ray_id = torch.repeat_interleave(torch.arange(6), counts)
    optical = torch.rand(int(counts.sum()), generator=torch.Generator().manual_seed(2), dtype=torch.float64)

    def both(od: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return segment_transmittance(od, ray_id, 6)

    assert torch.autograd.gradcheck(both, (optical.requires_grad_(),))


def dense_reference(grid: SparseGrid, o: torch.Tensor, d: torch.Tensor, bg: torch.Tensor, step: float) -> torch.Tensor:
    """Brute force: fine uniform samples over the whole box, grid_sample on a dense volume, padded tensors."""
    vol = torch.zeros((*grid.resolution, 1 + grid.sh.shape[1]), dtype=torch.float64)
    c = grid.coords()
    vol[c[:, 0], c[:, 1], c[:, 2]] = torch.cat((grid.density[:, None], grid.sh), 1).double()
    lo, hi = grid.aabb[0].double(), grid.aabb[1].double()
    near, far = ray_box(o.double(), d.double(), lo, hi)
    n = 4000
    t = near[:, None] + (far - near).clamp(min=0)[:, None] * (torch.arange(n, dtype=torch.float64) + 0.5) / n
    dt = ((far - near).clamp(min=0) / n)[:, None]
    p = o.double()[:, None] + t[..., None] * d.double()[:, None]
    norm = ((p - lo) / (hi - lo) * 2.0 - 1.0)[..., [2, 1, 0]]
    vals = F.grid_sample(vol.permute(3, 0, 1, 2)[None], norm[None, None], align_corners=False)[0, :, 0]
    sigma = torch.relu(vals[0])
    sh = vals[1:].permute(1, 2, 0).reshape(o.shape[0], n, 3, -1)
    k = sh.shape[-1]
    from trainer.engine.sh import sh_basis

    rgb = torch.relu((sh * sh_basis(d.double(), round(math.sqrt(k)) - 1)[:, None, None, :]).sum(-1) + 0.5)
    od = sigma * dt
    trans = torch.exp(-(torch.cumsum(od, 1) - od))
    w = trans * (1 - torch.exp(-od))
    return (w[..., None] * rgb).sum(1) + torch.exp(-od.sum(1))[:, None] * bg.double()


def test_oblique_rays_match_dense_brute_force() -> None:
    g = torch.Generator().manual_seed(1)
    res = (10, 9, 8)
    active = torch.rand(res, generator=g) < 0.5
    coords = torch.nonzero(active)
    density = torch.rand(coords.shape[0], generator=g) * 8.0 - 1.0  # some negative: ReLU'd away
    sh = torch.randn((coords.shape[0], 27), generator=g) * 0.7
    grid = SparseGrid.from_coords(res, coords, density, sh, torch.tensor([[-1.0, -0.9, -0.8], [1.0, 0.9, 0.8]]), 2)
    o = torch.randn((64, 3), generator=g) * 0.3 + torch.tensor([0.0, 0.0, 3.0])
    target = torch.randn((64, 3), generator=g) * 0.4
    d = F.normalize(target - o, dim=-1)
    bg = torch.tensor([0.1, 0.5, 0.9])
    rgb, _ = render_rays(grid, o, d, bg, RenderOptions(step_size=0.05, stop_transmittance=0.0))
    ref = dense_reference(grid, o, d, bg, 0.05).float()
    torch.testing.assert_close(rgb, ref, atol=5e-3, rtol=0)


def test_gradients_match_finite_differences() -> None:
    g = torch.Generator().manual_seed(2)
    res = (4, 4, 4)
    density = (torch.rand(64, generator=g, dtype=torch.float64) * 3.0 + 0.5).requires_grad_()
    sh = (torch.randn((64, 12), generator=g, dtype=torch.float64) * 0.3).requires_grad_()
    aabb = torch.tensor([[0.0, 0.0, 0.0], [1.0, 1.0, 1.0]])
    o = torch.tensor([[0.3, 0.45, -1.0], [0.6, -1.0, 0.55], [-1.0, 0.35, 0.4]], dtype=torch.float64)
    d = F.normalize(torch.tensor([[0.1, 0.05, 1.0], [-0.05, 1.0, 0.1], [1.0, 0.1, -0.05]], dtype=torch.float64), dim=-1)

    def f(dens: torch.Tensor, coeffs: torch.Tensor) -> torch.Tensor:
        grid = SparseGrid(torch.arange(64, dtype=torch.int32).reshape(res), dens, coeffs, aabb, 1)
        grid.aabb = aabb.double()
        return render_rays(grid, o, d, (1.0, 1.0, 1.0), RenderOptions(stop_transmittance=0.0))[0]

    assert torch.autograd.gradcheck(f, (density, sh), eps=1e-6, atol=1e-5, fast_mode=True)


def test_render_image_dc_only_ignores_view_dependence() -> None:
    grid = box_grid(5.0, (0.3, 0.1, -0.2), sparse=True)
    grid.sh[:, 1:4] = 0.8  # strong degree-1 terms on the red channel
    c2w = torch.eye(4)
    c2w[:3, 3] = torch.tensor([0.6, 0.6, 3.0])
    k = torch.tensor([20.0, 20.0, 8.0, 8.0])
    full = render_image(grid, c2w, k, 16, 16, BG)
    dc = render_image(grid, c2w, k, 16, 16, BG, dc_only=True)
    grid.sh[:, 1:4] = 0.0
    plain = render_image(grid, c2w, k, 16, 16, BG)
    torch.testing.assert_close(dc, plain)
    assert (full - plain).abs().max() > 0.05


def test_colour_and_dc_in_one_pass_equal_the_two_separate_passes() -> None:
    from trainer.engine.render import color_and_dc_pass, color_pass, density_pass, visible_samples

    torch.manual_seed(3)
    grid = SparseGrid.dense(6, torch.tensor([[-1.0] * 3, [1.0] * 3]), 2, density=2.0)
    grid.sh = torch.randn_like(grid.sh) * 0.3
    origins = torch.tensor([[-3.0, 0.1, 0.2], [0.3, -3.0, -0.1], [0.2, 0.1, 3.0]])
    dirs = F.normalize(-origins + 0.05 * torch.randn(3, 3), dim=1)
    s = visible_samples(grid, origins, dirs, RenderOptions())
    dp = density_pass(grid.density, s.rows, s)
    args = (grid.sh, s.rows, s.corner_w, s.ray_id, dp.weight, dirs, dp.t_final, (1.0, 1.0, 1.0), 2)
    full, dc = color_and_dc_pass(*args)
    assert torch.allclose(full, color_pass(*args, False), atol=1e-6)
    assert torch.allclose(dc, color_pass(*args, True), atol=1e-6)
    assert not torch.allclose(full, dc, atol=1e-3)  # the view-dependent terms do matter here


def march_every_sample(grid: SparseGrid, origins: torch.Tensor, dirs: torch.Tensor, opts: RenderOptions):
    """The march without its segment pass or the density volume, one ray at a time: every sample in the
    box around the positive voxels, kept where the trilinear density over the rows is positive."""
    live = grid.coords()[grid.density > 0].float()
    top = torch.tensor(grid.resolution, dtype=torch.float32)
    lo, hi = (live.min(0).values - 0.5).clamp(min=0.0), torch.minimum(live.max(0).values + 1.5, top)
    vs = grid.voxel_size
    o, d = (origins - grid.aabb[0]) / vs, dirs / vs
    t_near, t_far = ray_box(o, d, lo, hi)
    delta = opts.step_size * grid.unit
    ids, xs, sigmas = [], [], []
    for r in range(origins.shape[0]):
        n = int(torch.ceil((t_far[r] - t_near[r]) / delta).clamp(min=0))
        t = t_near[r] + (torch.arange(n, dtype=torch.float32) + 0.5) * delta
        x = o[r] + t[:, None] * d[r]
        sigma, _ = grid.interpolate(x)
        keep = sigma > 0
        ids.append(torch.full((int(keep.sum()),), r))
        xs.append(x[keep])
        sigmas.append(sigma[keep])
    return torch.cat(ids), torch.cat(xs), torch.cat(sigmas)


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("step_size", [0.5, 0.3, 1.0])
def test_march_skips_empty_segments_without_losing_a_sample(seed: int, step_size: float) -> None:
    from trainer.engine.render import march

    g = torch.Generator().manual_seed(seed)
    # non-cubic voxels, a few small clusters of live voxels in a large empty grid, some dense voxels
    # negative (not live)
    box = torch.tensor([[-1.0, -1.5, -0.7], [1.0, 1.2, 0.9]])
    grid = SparseGrid.dense((40, 33, 27), box, 0, density=-1.0)
    coords = grid.coords()
    for _ in range(4):
        centre = torch.stack([torch.randint(0, n, (1,), generator=g) for n in grid.resolution], 1)
        near = (coords - centre).abs().amax(1) <= 1
        grid.density[near] = torch.rand(int(near.sum()), generator=g) + 0.1
    opts = RenderOptions(step_size=step_size)
    origins = torch.randn((300, 3), generator=g) * 2.0
    origins[:20] *= 0.1  # some rays start inside the box
    # aimed near live voxels (and a few anywhere)
    live = coords[grid.density > 0]
    aim = live[torch.randint(live.shape[0], (300,), generator=g)].float() + torch.rand((300, 3), generator=g)
    aim = grid.aabb[0] + aim * grid.voxel_size
    dirs = F.normalize(aim - origins + 0.05 * torch.randn((300, 3), generator=g), dim=1)
    dirs[-30:] = F.normalize(torch.randn((30, 3), generator=g), dim=1)
    marched = march(grid, origins, dirs, opts)
    ref_id, ref_x, ref_sigma = march_every_sample(grid, origins, dirs, opts)
    assert ref_id.numel() > 100  # the case has samples to find
    assert torch.equal(marched.ray_id, ref_id)
    torch.testing.assert_close(marched.x, ref_x, rtol=0, atol=1e-4)  # t is summed in another order
    torch.testing.assert_close(marched.sigma, ref_sigma, rtol=0, atol=5e-4)  # (x within 1e-4; density steps < 2)
