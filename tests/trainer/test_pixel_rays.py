"""Training rays through any point of their pixel, against the pinhole model written independently in
numpy (tests/fixtures/scenes.py), and against the lens-exact camera_rays (itself checked against an
independent forward model in test_lens.py)."""

from __future__ import annotations

import numpy as np
import torch
from scenes import Camera, look_at, pixel_rays

from trainer.engine.grid import SparseGrid
from trainer.engine.pixel_rays import PixelRays
from trainer.engine.render import render_image
from trainer.io.data import camera_rays

W, H = 7, 5


def cameras() -> list[Camera]:
    eyes = [np.array([3.0, 0.5, 1.0]), np.array([-1.0, 2.5, -0.5]), np.array([0.3, -2.0, 2.0])]
    # per-view intrinsics differ (focal, principal point), as in datasets with one camera per frame
    return [Camera(look_at(e, np.zeros(3)), 6.0 + i, 5.5 + 0.5 * i, 3.2 + 0.3 * i, 2.4 - 0.2 * i, W, H)
            for i, e in enumerate(eyes)]


def as_tensors(cams: list[Camera]) -> tuple[torch.Tensor, torch.Tensor]:
    c2w = torch.tensor(np.stack([c.c2w for c in cams]), dtype=torch.float32)
    k = torch.tensor([[c.fx, c.fy, c.cx, c.cy] for c in cams], dtype=torch.float32)
    return c2w, k


def test_centre_rays_match_the_pinhole_reference() -> None:
    cams = cameras()
    rays = PixelRays(*as_tensors(cams), W, H, torch.device("cpu"))
    origins, dirs = rays.at(torch.arange(rays.count))
    ref_o = np.concatenate([pixel_rays(c)[0].reshape(-1, 3) for c in cams])
    ref_d = np.concatenate([pixel_rays(c)[1].reshape(-1, 3) for c in cams])
    assert np.abs(origins.numpy() - ref_o).max() < 1e-6
    assert np.abs(dirs.numpy() - ref_d).max() < 1e-6


def test_jittered_rays_pass_through_the_chosen_point_of_their_pixel() -> None:
    cams = cameras()
    rays = PixelRays(*as_tensors(cams), W, H, torch.device("cpu"))
    gen = torch.Generator().manual_seed(3)
    index = torch.randint(rays.count, (500,), generator=gen)
    within = torch.rand((500, 2), generator=gen)
    _, dirs = rays.at(index, within)
    view, pixel = index // (W * H), index % (W * H)
    for i, cam in enumerate(cams):
        sel = (view == i).numpy()
        d_cam = dirs.numpy()[sel] @ cam.c2w[:3, :3]  # world -> camera (rotation's inverse is its transpose)
        u = cam.cx + cam.fx * d_cam[:, 0] / -d_cam[:, 2]
        v = cam.cy - cam.fy * d_cam[:, 1] / -d_cam[:, 2]
        col, row = pixel.numpy()[sel] % W, pixel.numpy()[sel] // W
        assert np.abs(u - (col + within.numpy()[sel, 0])).max() < 1e-4
        assert np.abs(v - (row + within.numpy()[sel, 1])).max() < 1e-4


def test_lens_rays_match_the_exact_inverse_at_any_point_of_the_pixel() -> None:
    # 64 x 48 px at a 50 px focal length: the corners sit at r ~ 0.8 in normalised coordinates, as a
    # wide phone lens's do
    w, h, f = 64, 48, 50.0
    c2w = torch.tensor(np.stack([look_at(np.array([3.0, 0.5, 1.0]), np.zeros(3))]), dtype=torch.float32)
    lens = [-0.12, 0.03, 0.0, 0.0, 0.001, -0.0008, 0.0]  # k1 k2 k3 k4 p1 p2, radial-tangential
    k = torch.tensor([[f, f, 31.0, 25.0, *lens]])
    rays = PixelRays(c2w, k, w, h, torch.device("cpu"))
    for offset in ((0.5, 0.5), (0.1, 0.8), (0.95, 0.05)):
        _, exact = camera_rays(c2w, k, w, h, offset=offset)
        within = torch.tensor(offset).expand(rays.count, 2)
        _, blended = rays.at(torch.arange(rays.count), within)
        # a bilinear blend of a smooth map's corner directions, one pixel apart: the angle between the
        # two directions times the focal length is the error in pixels
        assert ((blended - exact).norm(dim=-1) * f).max() < 2e-3


def test_supersampled_render_is_the_mean_of_renders_through_the_sub_pixel_points() -> None:
    gen = torch.Generator().manual_seed(0)
    res = 8
    ijk = torch.stack(torch.meshgrid(*(torch.arange(res),) * 3, indexing="ij"), -1).reshape(-1, 3)
    density = torch.rand(ijk.shape[0], generator=gen) * 6.0
    sh = torch.rand((ijk.shape[0], 12), generator=gen) * 0.4 - 0.2  # colours stay inside [0, 1]: no clamping
    grid = SparseGrid.from_coords((res,) * 3, ijk, density, sh, torch.tensor([[-1.0] * 3, [1.0] * 3]), 1)
    cam = cameras()[0]
    c2w = torch.tensor(cam.c2w, dtype=torch.float32)
    k = torch.tensor([cam.fx, cam.fy, cam.cx, cam.cy])
    mean = torch.zeros(H, W, 3)
    for a in (0.25, 0.75):
        for b in (0.25, 0.75):
            # the ray through (u + a, v + b) is the centre ray of a camera whose principal point moved by
            # (0.5 - a, 0.5 - b): an independent way to aim at the sub-pixel point
            shifted = k + torch.tensor([0.0, 0.0, 0.5 - a, 0.5 - b])
            mean += render_image(grid, c2w, shifted, W, H, (1.0, 1.0, 1.0)) / 4
    ss = render_image(grid, c2w, k, W, H, (1.0, 1.0, 1.0), supersample=2)
    assert (ss - mean).abs().max() < 1e-5
    assert (ss - render_image(grid, c2w, k, W, H, (1.0, 1.0, 1.0))).abs().max() > 1e-3  # it does differ
