"""Novel-view camera paths: an orbit around the grid's box, for `python -m trainer render --views orbit`."""

from __future__ import annotations

import math

import torch

from trainer.engine.grid import SparseGrid


def look_at(eye: torch.Tensor, target: torch.Tensor, up: torch.Tensor) -> torch.Tensor:
    """Camera-to-world [4, 4] in OpenGL axes (the camera looks down -z, +y is up in the image)."""
    back = torch.nn.functional.normalize(eye - target, dim=0)
    right = torch.nn.functional.normalize(torch.linalg.cross(up, back), dim=0)
    c2w = torch.eye(4, dtype=eye.dtype)
    c2w[:3, 0], c2w[:3, 1], c2w[:3, 2], c2w[:3, 3] = right, torch.linalg.cross(back, right), back, eye
    return c2w


def content_box(grid: SparseGrid, trim: float = 0.005) -> torch.Tensor:
    """World box [2, 3] around the voxels with positive density, ignoring the `trim` fraction of them
    that lie furthest out along each axis (stray floaters would otherwise frame a mostly empty view).
    The grid's own box when no voxel has density."""
    # on the CPU: Apple's MPS has no float64
    coords = grid.coords()[grid.density.detach() > 0].cpu().double()
    aabb = grid.aabb.detach().cpu().double()
    if coords.shape[0] == 0:
        return aabb.clone()
    lo = torch.quantile(coords, trim, dim=0)
    hi = torch.quantile(coords, 1.0 - trim, dim=0) + 1.0
    size = grid.voxel_size.detach().cpu().double()
    return torch.stack((aabb[0] + lo.floor() * size, aabb[0] + hi.ceil() * size))


def fit_distance(aabb: torch.Tensor, fov: float) -> float:
    """Distance from the box centre at which the box's bounding sphere just fits a field of view `fov`."""
    half_diagonal = 0.5 * float((aabb[1] - aabb[0]).norm())
    return half_diagonal / math.sin(0.5 * fov)


def orbit_poses(aabb: torch.Tensor, frames: int, distance: float, elevation_deg: float = 30.0) -> torch.Tensor:
    """[frames, 4, 4] cameras circling the world z axis through the box centre (Blender's up is +z),
    `elevation_deg` above the centre's horizon, looking at the centre, one full turn, evenly spaced."""
    centre = 0.5 * (aabb[0] + aabb[1]).double()
    up = torch.tensor([0.0, 0.0, 1.0], dtype=torch.float64)
    azimuth = torch.arange(frames, dtype=torch.float64) * (2 * math.pi / frames)
    elevation = math.radians(elevation_deg)
    offsets = distance * torch.stack([math.cos(elevation) * torch.cos(azimuth),
                                      math.cos(elevation) * torch.sin(azimuth),
                                      torch.full_like(azimuth, math.sin(elevation))], dim=1)
    return torch.stack([look_at(centre + o, centre, up) for o in offsets]).float()


def pinhole_intrinsics(width: int, height: int, fov_x: float) -> torch.Tensor:
    """fx, fy, cx, cy for square pixels and a centred principal point."""
    f = 0.5 * width / math.tan(0.5 * fov_x)
    return torch.tensor([f, f, width / 2, height / 2], dtype=torch.float32)
