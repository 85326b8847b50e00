"""The world box the grid spans, and where it came from.

In order of precedence:

1. ``config``: the config's ``scene_box`` (``--set scene_box=[[...],[...]]``), when set.
2. ``aabb``: the dataset's ``aabb`` key (world coordinates).
3. ``aabb_scale``: instant-ngp's convention (see :func:`ngp_box`).
4. ``cameras``: the region the training cameras look at (see :func:`camera_box`).

Boxes are computed with numpy in float64 on the CPU at load time; the trainer gets float32.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

# instant-ngp (src/nerf_loader.cu, include/neural-graphics-primitives/nerf_loader.h): NERF_SCALE and
# the default offset that place a NeRF-synthetic scene (about +-1.5) inside its unit cube.
NGP_SCALE = 0.33
NGP_OFFSET = (0.5, 0.5, 0.5)

LATTICE = 48            # lattice points per axis for the camera-derived box
# A lattice point belongs to the box when at least this share of the training cameras sees it. All of
# them would be fragile (one camera looking elsewhere shrinks the box) and cut objects that leave some
# frames; half of them reaches far below hemisphere captures (lego: 4.5 wide against its 3). Three
# quarters gives lego [-1.63, 1.63]^2 x [-1.97, 1.46], about NeRF-synthetic's +-1.5. Too large a box
# only costs coarse-stage resolution (fit_box shrinks it at upsampling); too small cuts the scene.
SEEN_BY_FRACTION = 0.75


@dataclass
class SceneBox:
    box: torch.Tensor   # float32 [2, 3]: [[xmin, ymin, zmin], [xmax, ymax, zmax]], CPU
    source: str         # "config" | "aabb" | "aabb_scale" | "cameras"
    reason: str         # one line: how it was obtained

    def to_json(self) -> dict[str, Any]:
        return {"box": self.box.tolist(), "source": self.source, "reason": self.reason}

    @classmethod
    def from_json(cls, value: dict[str, Any]) -> SceneBox:
        return cls(torch.tensor(value["box"], dtype=torch.float32), str(value["source"]), str(value["reason"]))


def _fmt(values: np.ndarray | list[float]) -> str:
    return "[" + ", ".join(f"{float(v):.4g}" for v in values) + "]"


def ngp_box(aabb_scale: float, scale: float = NGP_SCALE,
            offset: tuple[float, float, float] = NGP_OFFSET) -> np.ndarray:
    """instant-ngp's training box for `aabb_scale`, in the dataset's (NeRF) world coordinates [2, 3].

    instant-ngp maps a world point p to its own coordinates q = p · scale + offset (then cycles the
    axes, x y z <- y z x, which a cube centred on (0.5, 0.5, 0.5) does not notice) and trains in the
    unit cube [0, 1]³ grown about its centre 0.5 to side aabb_scale:
    q ∈ [0.5 − aabb_scale/2, 0.5 + aabb_scale/2]³. Mapped back with p = (q − offset) / scale, per axis:

        box_min = (0.5 − aabb_scale/2 − offset) / scale
        box_max = (0.5 + aabb_scale/2 − offset) / scale

    With instant-ngp's defaults (scale 0.33, offset 0.5): ±aabb_scale / 0.66 = ±1.515·aabb_scale about
    the origin, so aabb_scale 1 is about the NeRF-synthetic box ±1.5. A file's own `scale` and `offset`
    keys (which instant-ngp reads too) replace the defaults.
    """
    off = np.asarray(offset, dtype=np.float64).reshape(3)
    half = 0.5 * float(aabb_scale)
    return np.stack(((0.5 - half - off) / scale, (0.5 + half - off) / scale))


def ngp_scene_box(aabb_scale: float, scale: float = NGP_SCALE,
                  offset: tuple[float, float, float] = NGP_OFFSET) -> SceneBox:
    box = ngp_box(aabb_scale, scale, offset)
    reason = (f"instant-ngp's aabb_scale {aabb_scale:g}: its unit cube grown to side {aabb_scale:g} about "
              f"0.5, mapped back by p = (q - offset) / scale with scale {scale:g}, offset {_fmt(list(offset))}")
    return SceneBox(torch.from_numpy(box.astype(np.float32)), "aabb_scale", reason)


def _axes_meeting_point(origins: np.ndarray, axes: np.ndarray) -> np.ndarray | None:
    """The least-squares point nearest to every optical axis (lines o + t d): it minimises
    sum |(I - d dᵀ)(c - o)|², so c = (sum (I - d dᵀ))⁻¹ sum (I - d dᵀ) o. None when the axes are
    (nearly) parallel, as in a forward-facing capture, or meet behind the cameras."""
    projectors = np.eye(3)[None] - axes[:, :, None] * axes[:, None, :]
    a = projectors.sum(0)
    if np.linalg.eigvalsh(a / len(axes)).min() < 1e-3:
        return None
    centre = np.linalg.solve(a, np.einsum("nij,nj->i", projectors, origins))
    if float(np.mean(np.sum((centre - origins) * axes, axis=1))) <= 0:
        return None
    return centre


def camera_box(c2w: torch.Tensor, intrinsics: torch.Tensor, width: int, height: int) -> SceneBox:
    """The region the training cameras look at: the box around the points most of them see.

    1. Centre c: the point nearest (least squares) to all cameras' optical axes. If the axes do not
       meet in front of the cameras (a forward-facing capture), c is the cameras' mean position moved
       along their mean viewing direction by twice the cameras' spread (at least 1 world unit).
    2. Candidate region: the cube about c whose half-side R is the largest camera distance from c
       (inward-looking cameras surround what they look at).
    3. A LATTICE³ lattice of points over that cube; a point is seen by a camera when it lies in front
       of it and projects inside its image (pinhole part of the intrinsics; lens distortion is ignored
       in this estimate). The box is the bounding box of the points seen by at least SEEN_BY_FRACTION
       (three quarters) of the cameras, grown by one lattice step, within the cube.
    """
    # numpy float64 on the CPU: load-time geometry, not training-device work
    pose = c2w.detach().cpu().numpy().astype(np.float64)
    k = intrinsics.detach().cpu().numpy().astype(np.float64)
    origins = pose[:, :3, 3]
    axes = -pose[:, :3, 2]
    axes = axes / np.linalg.norm(axes, axis=1, keepdims=True)
    centre = _axes_meeting_point(origins, axes)
    if centre is None:
        spread = float(np.linalg.norm(origins - origins.mean(0), axis=1).max()) if len(origins) > 1 else 0.0
        mean_axis = axes.mean(0)
        mean_axis = mean_axis / max(float(np.linalg.norm(mean_axis)), 1e-12)
        centre = origins.mean(0) + mean_axis * max(2.0 * spread, 1.0)
        how = "the cameras' axes do not meet (forward-facing?): centred ahead of them"
    else:
        how = "centred where the cameras' optical axes pass closest together"
    radius = max(float(np.linalg.norm(origins - centre, axis=1).max()), 1e-6)
    ticks = np.linspace(-radius, radius, LATTICE)
    step = ticks[1] - ticks[0]
    grid = np.stack(np.meshgrid(ticks, ticks, ticks, indexing="ij"), -1).reshape(-1, 3) + centre
    votes = np.zeros(grid.shape[0], dtype=np.int32)
    for i in range(len(pose)):  # one pass per camera over all lattice points (vectorised within)
        local = (grid - origins[i]) @ pose[i, :3, :3]     # world -> camera (OpenGL axes: looks down -z)
        depth = -local[:, 2]
        front = depth > 1e-9
        safe = np.where(front, depth, 1.0)
        u = k[i, 0] * local[:, 0] / safe + k[i, 2]
        v = -k[i, 1] * local[:, 1] / safe + k[i, 3]
        votes += front & (u >= 0) & (u <= width) & (v >= 0) & (v <= height)
    need = max(1, math.ceil(SEEN_BY_FRACTION * len(pose)))
    seen = grid[votes >= need]
    cube_lo, cube_hi = centre - radius, centre + radius
    if seen.shape[0] == 0:
        lo, hi = cube_lo, cube_hi
        how += f"; no point is seen by {need} of the {len(pose)} cameras, so the whole cube around them"
    else:
        lo = np.maximum(seen.min(0) - step, cube_lo)
        hi = np.minimum(seen.max(0) + step, cube_hi)
        how += f"; the points seen by at least {need} of the {len(pose)} training cameras"
    return SceneBox(torch.from_numpy(np.stack((lo, hi)).astype(np.float32)), "cameras", how)


def config_scene_box(box: list[list[float]]) -> SceneBox:
    return SceneBox(torch.tensor(box, dtype=torch.float32), "config", "the config's scene_box")


def aabb_scene_box(box: torch.Tensor) -> SceneBox:
    return SceneBox(box.detach().cpu().float(), "aabb", "the dataset's aabb")
