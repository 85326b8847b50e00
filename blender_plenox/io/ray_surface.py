"""What the training cameras could see of a trained field, as a signed field on its voxels (no bpy):
used to leave out of the surface mesh the surfaces no camera could reach (fill_hidden).

Only what some ray reached is constrained by the images: behind the first surface the density is
whatever the training left (pruned hollows, inner walls, two voxels of dilation around what rays
saw), and its level set there makes inner surfaces that no camera could see, often open to the
outside through a face no camera saw either (an object's bottom), so that filling enclosed voids
(io/enclosed_voids.py) cannot remove them.

Every training camera casts one ray per pixel through the density (σ = max(0, trilinear), the
contract's field, marched in half-voxel steps like the trainer) and records the distance d_c(pixel)
at which the accumulated opacity 1 − exp(−∫σ) first reaches 1/2 (∞ if it never does): what a pixel
shows comes mostly from around there. A voxel sample at distance r from camera c, at pixel p, lies
(d_c(p) − r) in front of that camera's surface; its field value, in voxels, clamped to ±FIELD_CLAMP,
is the AGREE-th largest of these over the cameras whose image holds it: positive where cameras saw
through it, negative where every camera (but one) that looks there had already been stopped: the
inside of solids and what lies behind them. Voxels that fewer than AGREE cameras' images hold keep the
density's own verdict. d_c is interpolated bilinearly between pixel centres except across
silhouettes (_depth_at), so the field is smooth where the surface is.

What no camera saw has no depth to place it by: under an object standing on a base, every camera's
ray stops on the base's top, and the space behind reaches as far as the block does, a few voxels or
a hundred below the base's real bottom. So nothing counts as inside beyond the convex hull of the
points where the rays stopped (a polytope of many directions, hull_distance; as far out in each
direction as AGREE cameras saw), so that the fill closes a surface no camera saw flat across the
last points the cameras saw (a base's bottom across its lowest seen rim), instead of wherever the
block happens to end. The hull only ever takes away from the fill: its points are all stops, on or
in front of what the cameras saw.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

FIELD_CLAMP = 4.0  # voxels: wide enough that the interpolation between samples around 0 is unclipped
STEP = 0.5  # voxels per marching step (the trainer's default step size)
MAX_CAMERAS = 64  # evenly picked from the training cameras: enough to see all round
MAX_RAYS = 1_000_000  # in all (the demo: 53 cameras of 100 × 100 pixels, 530 k)
AGREE = 2  # cameras that must see through a voxel for it to count as seen through
DEPTH_JUMP = 2.0  # voxels: neighbouring pixels' depths further apart than this straddle a silhouette
HULL_SPIRAL = 300  # directions of the hull's polytope besides the grid's 26 neighbour directions
HULL_CHUNK = 1 << 16  # samples per matrix product against the hull's directions (bounded memory)
HIDDEN_MARGIN = 1.0  # voxels behind every camera's surface from which space counts as inside


@dataclass(frozen=True)
class PinholeCamera:
    matrix_world: np.ndarray  # 4×4 camera to world, Blender axes (looks down −z, +y up)
    fl_x: float
    fl_y: float
    cx: float
    cy: float
    width: int
    height: int


@dataclass(frozen=True)
class Block:
    """A dense block of the field: density[i, j, k] is the sample at world origin + (ijk) · voxel_size."""
    density: np.ndarray  # float32 (dx, dy, dz), raw (σ = max(0, trilinear))
    origin: np.ndarray  # float64 (3,)
    voxel_size: np.ndarray  # float64 (3,)


def trilinear_density(block: Block, q: np.ndarray) -> np.ndarray:
    """σ = max(0, trilinear) at block index coordinates q (N, 3), each within [0, shape − 1]."""
    shape = block.density.shape
    base = np.minimum(q.astype(np.int32), np.array(shape, np.int32) - 2)  # truncation is floor for q ≥ 0
    fx, fy, fz = (q - base).T
    flat = block.density.ravel()
    sy, sx = shape[2], shape[1] * shape[2]
    i = (base[:, 0] * sx + base[:, 1] * sy + base[:, 2]).astype(np.intp)
    # along z, then y, then x: 7 lerps of the 8 corners
    c00 = flat[i] + fz * (flat[i + 1] - flat[i])
    c01 = flat[i + sy] + fz * (flat[i + sy + 1] - flat[i + sy])
    c10 = flat[i + sx] + fz * (flat[i + sx + 1] - flat[i + sx])
    c11 = flat[i + sx + sy] + fz * (flat[i + sx + sy + 1] - flat[i + sx + sy])
    c0 = c00 + fy * (c01 - c00)
    c1 = c10 + fy * (c11 - c10)
    return np.maximum(c0 + fx * (c1 - c0), 0.0)


def _rays(cam: PinholeCamera) -> tuple[np.ndarray, np.ndarray]:
    """(origin (3,), unit directions (H·W, 3)) through the pixel centres, row by row."""
    v, u = np.mgrid[0:cam.height, 0:cam.width].astype(np.float64) + 0.5
    local = np.stack([(u - cam.cx) / cam.fl_x, -(v - cam.cy) / cam.fl_y, -np.ones_like(u)], -1).reshape(-1, 3)
    dirs = local @ cam.matrix_world[:3, :3].T
    return cam.matrix_world[:3, 3].copy(), dirs / np.linalg.norm(dirs, axis=1, keepdims=True)


def _box_span(block: Block, origin: np.ndarray, dirs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Entry and exit distances of the rays through the block's sample box (slab test)."""
    lo = block.origin
    hi = block.origin + (np.array(block.density.shape) - 1) * block.voxel_size
    with np.errstate(divide="ignore", invalid="ignore"):
        inv = 1.0 / dirs
        t_a, t_b = (lo - origin) * inv, (hi - origin) * inv
    t_near = np.nanmax(np.minimum(t_a, t_b), axis=1).clip(min=0.0)
    t_far = np.nanmin(np.maximum(t_a, t_b), axis=1)
    return t_near, t_far


def surface_distances(block: Block, origins: np.ndarray, dirs: np.ndarray, opacity: float) -> np.ndarray:
    """Per ray (origins and unit dirs (N, 3)), the distance at which its accumulated opacity reaches
    `opacity`; ∞ where it never does. Marches all rays together, step by step, keeping only those
    still inside the block and not yet stopped: no Python loop over rays."""
    target = -np.log1p(-opacity)  # optical depth τ at which 1 − exp(−τ) = opacity
    step = STEP * float(block.voxel_size.min())
    t_near, t_far = _box_span(block, origins, dirs)
    result = np.full(len(dirs), np.inf)
    live = np.flatnonzero(t_near < t_far)
    # in the block's index space, float32: the ray's sample at distance t is q0 + dq · t
    q0 = ((origins[live] - block.origin) / block.voxel_size).astype(np.float32)
    dq = (dirs[live] / block.voxel_size).astype(np.float32)
    t, end, tau = t_near[live].astype(np.float32), t_far[live].astype(np.float32), np.zeros(len(live), np.float32)
    top = np.array(block.density.shape, np.float32) - 1.0
    while live.size:
        q = np.clip(q0 + dq * (t + np.float32(0.5 * step))[:, None], 0.0, top)  # inside by the box span
        new_tau = tau + trilinear_density(block, q) * np.float32(step)
        hit = new_tau >= target
        # σ is taken as constant over the step (its midpoint value), so τ is linear within it
        result[live[hit]] = t[hit] + step * (target - tau[hit]) / (new_tau[hit] - tau[hit])
        t = t + np.float32(step)
        keep = np.flatnonzero(~hit & (t < end))
        live, q0, dq, t, end, tau = live[keep], q0[keep], dq[keep], t[keep], end[keep], new_tau[keep]
    return result


def _depth_at(image: np.ndarray, u: np.ndarray, v: np.ndarray, jump: float) -> np.ndarray:
    """A depth map (H, W) at continuous pixel coordinates (pixel centres at i + 0.5, inside their
    hull): bilinear where the four pixels around agree within `jump`, else the nearest of them.
    Interpolating across a silhouette would put an object's edge part way to the background behind
    it, i.e. report its outermost voxel as seen through, and every camera's silhouettes would eat
    into every object; the nearest depth keeps the object whole (another camera sees past it)."""
    x, y = u - 0.5, v - 0.5
    x0 = np.clip(np.floor(x).astype(np.int64), 0, image.shape[1] - 2)
    y0 = np.clip(np.floor(y).astype(np.int64), 0, image.shape[0] - 2)
    fx, fy = x - x0, y - y0
    a, b = image[y0, x0], image[y0, x0 + 1]
    c, d = image[y0 + 1, x0], image[y0 + 1, x0 + 1]
    smooth = (a + (b - a) * fx) * (1 - fy) + (c + (d - c) * fx) * fy
    lo = np.minimum(np.minimum(a, b), np.minimum(c, d))
    hi = np.maximum(np.maximum(a, b), np.maximum(c, d))
    return np.where(hi - lo <= jump, smooth, lo)


def _at_most(cam: PinholeCamera, side: int) -> PinholeCamera:
    """The camera with its image scaled down to at most `side` pixels across (the same view)."""
    scale = side / max(cam.width, cam.height)
    if scale >= 1.0:
        return cam
    w, h = max(1, round(cam.width * scale)), max(1, round(cam.height * scale))
    sx, sy = w / cam.width, h / cam.height
    return PinholeCamera(cam.matrix_world, cam.fl_x * sx, cam.fl_y * sy, cam.cx * sx, cam.cy * sy, w, h)


def hull_directions(spiral: int = HULL_SPIRAL) -> np.ndarray:
    """Unit normals (N, 3) of the polytope that stands for a convex hull (a k-DOP): the grid's 26
    neighbour directions, so that axis-aligned floors and walls are cut exactly, and a golden spiral
    over the sphere between them (with 300: no direction more than 8.4° from one of them, so that the
    polytope lies within 1.1 % of a round hull's radius outside it)."""
    lattice = np.indices((3, 3, 3)).reshape(3, -1).T - 1.0
    lattice = lattice[np.any(lattice != 0, axis=1)]
    k = np.arange(spiral) + 0.5
    z = 1.0 - 2.0 * k / spiral
    phi = np.pi * (1.0 + np.sqrt(5.0)) * k
    ring = np.sqrt(1.0 - z * z)
    dirs = np.concatenate([lattice / np.linalg.norm(lattice, axis=1, keepdims=True),
                           np.stack([ring * np.cos(phi), ring * np.sin(phi), z], axis=1)])
    return dirs.astype(np.float32)


def hull_distance(points: np.ndarray, support: np.ndarray, directions: np.ndarray) -> np.ndarray:
    """Signed distance-like field of the polytope {p : d·p ≤ support(d) for every direction d} at
    points (N, 3): max_d (d·p − support(d)), > 0 outside. Exact on its faces' normals, and never more
    than the true distance, so its zero level is the polytope's boundary."""
    out = np.empty(len(points), np.float32)
    for start in range(0, len(points), HULL_CHUNK):  # chunks of samples, each one matrix product
        chunk = slice(start, start + HULL_CHUNK)
        out[chunk] = (points[chunk] @ directions.T - support).max(axis=1)
    return out


def seen_field(block: Block, cameras: list[PinholeCamera], level: float, opacity: float = 0.5) -> np.ndarray:
    """Per sample of the block (its shape, float32, voxels): how far in front of the surface the
    cameras saw it lies (module docstring), clamped to ±FIELD_CLAMP; > 0 outside, < 0 inside. Never
    less than the distance outside the convex hull of the points the rays stopped at, less
    HIDDEN_MARGIN: the fill, which begins that margin behind the surfaces the cameras saw, ends at
    the hull itself, flush with the last points they saw."""
    shape = block.density.shape
    points = (block.origin + np.indices(shape).reshape(3, -1).T * block.voxel_size).astype(np.float32)
    voxel = float(block.voxel_size.min())
    # the AGREE largest values so far, largest first: a voxel counts as seen through only when AGREE
    # cameras saw through it, so one ray slipping through a pinhole of a thin trained shell does
    # not hollow out the whole object behind it
    top = np.full((AGREE, len(points)), -np.inf, np.float32)
    directions = hull_directions()
    # per direction, the AGREE largest supports of single cameras' stops, largest first: one
    # camera's stray ray (a floater) does not stretch the hull
    support = np.full((AGREE, len(directions)), -np.inf, np.float32)
    # bounded work: every few cameras up to MAX_CAMERAS, at most a pixel per voxel of the block's
    # longest side (finer pixels see no more of a field this coarse) and MAX_RAYS rays in all
    cameras = cameras[:: -(-len(cameras) // MAX_CAMERAS) or 1]
    side = min(max(shape), int(np.sqrt(MAX_RAYS / max(len(cameras), 1))))
    cameras = [_at_most(c, side) for c in cameras]
    for cam in cameras:  # each vectorised over rays and voxels
        origin, dirs = _rays(cam)
        hits = surface_distances(block, np.broadcast_to(origin, dirs.shape), dirs, opacity)
        stopped = np.isfinite(hits)
        if stopped.any():
            ends = (origin + dirs[stopped] * hits[stopped, None]).astype(np.float32)
            reach = (ends @ directions.T).max(axis=0)
            support = np.sort(np.vstack([support, reach]), axis=0)[::-1][:AGREE]
        hits = hits.reshape(cam.height, cam.width)
        # a voxel some camera already saw FIELD_CLAMP voxels in front of its surface is decided
        todo = np.flatnonzero(top[-1] < FIELD_CLAMP)
        rel = points[todo] - origin.astype(np.float32)
        local = rel @ cam.matrix_world[:3, :3].astype(np.float32)
        depth = -local[:, 2]
        with np.errstate(divide="ignore", invalid="ignore"):
            u = cam.fl_x * local[:, 0] / depth + cam.cx
            v = -cam.fl_y * local[:, 1] / depth + cam.cy
        inside = (depth > 0) & (u >= 0.5) & (u <= cam.width - 0.5) & (v >= 0.5) & (v <= cam.height - 0.5)
        r = np.linalg.norm(rel[inside], axis=1)
        # a ray that never stops counts as stopped well past every voxel: finite, so it interpolates
        far = np.where(np.isfinite(hits), hits, r.max(initial=0.0) + 2 * FIELD_CLAMP * voxel)
        ahead = (_depth_at(far, u[inside], v[inside], DEPTH_JUMP * voxel) - r) / voxel
        sel = todo[inside]
        for row in top:  # insertion into the sorted rows
            kept = row[sel]
            row[sel] = np.maximum(kept, ahead)
            ahead = np.minimum(kept, ahead)
    best = top[-1]
    unseen = ~np.isfinite(best)
    dense = block.density.ravel() >= level
    best[unseen] = np.where(dense[unseen], -FIELD_CLAMP, FIELD_CLAMP)
    near = np.flatnonzero(best < FIELD_CLAMP)  # the rest is outside already, whatever the hull says
    if np.isfinite(support[-1]).all():  # AGREE cameras' rays stopped: nothing beyond is inside
        outside = hull_distance(points[near], support[-1], directions) / np.float32(voxel)
        best[near] = np.maximum(best[near], outside - np.float32(HIDDEN_MARGIN))
    return np.clip(best, -FIELD_CLAMP, FIELD_CLAMP).reshape(shape)


def training_cameras(dataset: str | None) -> list[PinholeCamera]:
    """The pinhole cameras of the dataset's training split (the rays the field was fitted to); [] when
    there is no such dataset (moved, or a grid from elsewhere): the caller falls back on the density."""
    from .dataset_cameras import DatasetCameraError, read_dataset_cameras

    if not dataset:
        return []
    try:
        cameras = read_dataset_cameras(dataset).cameras
    except (DatasetCameraError, OSError):
        return []
    train = [c for c in cameras if c.name.startswith("train_")] or cameras
    return [PinholeCamera(np.asarray(c.matrix_world, np.float64), c.fl_x, c.fl_y, c.cx, c.cy, *c.lens.resolution)
            for c in train]


def fill_hidden(density: np.ndarray, level: float, field: np.ndarray) -> np.ndarray:
    """The density with the space no camera reached raised above `level`, so that its level set at
    `level` has no surface there: inner walls, the hollows behind them and the bubbles in between
    vanish into the solid, whether or not the hollow is closed (io/enclosed_voids.py needs it closed,
    and a trained hollow is often open through a face no camera saw, such as an object's bottom).

    The field only adds: where the cameras saw, the density's own level set stays the surface. It
    places visible surfaces better than the cameras' depth of half opacity would (the trained opacity
    builds up over a voxel or two from where the images put the surface, so that depth lies inside;
    on the demo scene about a voxel deeper), and HIDDEN_MARGIN keeps the added solid behind it.
    Union is the max of two fields scaled to the same level; the raw values, negative ones included,
    stay as they are (they pull the interpolated density down, contract 4)."""
    hidden = level * (1.0 + (-HIDDEN_MARGIN - field) / FIELD_CLAMP)
    out = np.maximum(density, hidden).astype(np.float32)
    out[[0, -1], :, :] = np.minimum(out[[0, -1], :, :], 0.0)  # the block's outer layer below the level:
    out[:, [0, -1], :] = np.minimum(out[:, [0, -1], :], 0.0)  # every surface closes inside the block
    out[:, :, [0, -1]] = np.minimum(out[:, :, [0, -1]], 0.0)
    return out
