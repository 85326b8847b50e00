"""A learned background: what a ray sees once it leaves the grid, as an environment map.

Photos of a real scene show its surroundings (walls, sky, furniture) beyond any box the grid can afford.
Rendered over a fixed colour, that view has to be painted onto the grid's far faces, which costs voxels
and still looks wrong from elsewhere; an environment map gives every direction its own learnt colour at
infinity, as Plenoxels' background model does for 360° captures (coarsely: one map, no depth layers).

The map is equirectangular exactly as Blender's Environment Texture reads one, so that the import can hand
it to the World unchanged: a world direction d (z up) looks up
    u = 0.5 - atan2(d_y, d_x) / 2π,   v = 0.5 + atan2(d_z, hypot(d_x, d_y)) / π,
with texel centres at ((j + 0.5) / W, (i + 0.5) / H); here rows are stored top (v = 1) first, as image
files are (+x looks at the middle column, +y at the first quarter, the zenith along the top row; checked
against Cycles 5.0 rendering a world whose map encodes u and v). Bilinear between texel centres, wrapping
in u and clamping in v (Blender's periodic extension for environments). Values are colours in [0, 1] (the images' own, display-referred values).
"""

from __future__ import annotations

import math

import torch


def equirect_uv(dirs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Texture coordinates (u, v) in [0, 1] of unit directions [B, 3]."""
    x, y, z = dirs.unbind(-1)
    u = 0.5 - torch.atan2(y, x) / (2 * math.pi)
    v = torch.atan2(z, torch.hypot(x, y)) / math.pi + 0.5
    return u, v


def environment_colours(texels: torch.Tensor, dirs: torch.Tensor) -> torch.Tensor:
    """Colours [B, 3] that the map texels [H, W, 3] (top row first) shows in directions dirs [B, 3];
    differentiable with respect to texels."""
    height, width = texels.shape[0], texels.shape[1]
    u, v = equirect_uv(dirs)
    x = u * width - 0.5
    y = (1.0 - v) * height - 0.5  # rows from the top
    x0, y0 = torch.floor(x), torch.floor(y)
    fx, fy = (x - x0)[:, None], (y - y0)[:, None]
    j0 = torch.remainder(x0.long(), width)
    j1 = torch.remainder(j0 + 1, width)
    i0 = y0.long().clamp(0, height - 1)
    i1 = (y0.long() + 1).clamp(0, height - 1)
    flat = texels.reshape(-1, 3)
    top = (1 - fx) * flat[i0 * width + j0] + fx * flat[i0 * width + j1]
    bottom = (1 - fx) * flat[i1 * width + j0] + fx * flat[i1 * width + j1]
    return (1 - fy) * top + fy * bottom


def blank_environment(height: int, device: torch.device, value: float = 0.5) -> torch.Tensor:
    """A uniform map [height, 2 * height, 3] (2:1, as equirectangular maps are)."""
    return torch.full((height, 2 * height, 3), value, dtype=torch.float32, device=device)
