"""io/ray_surface.py against closed forms: where a ray's light is half stopped in an analytic ramp, a
clean solid that the fill leaves as it is, and a shell open underneath whose inner wall no camera can
reach (the enclosed-void fill cannot remove it: its hollow is open)."""

from __future__ import annotations

import numpy as np
import pytest

from blender_plenox.io.enclosed_voids import fill_enclosed_voids
from blender_plenox.io.field_sampling import density_for_opacity
from blender_plenox.io.ray_surface import (
    FIELD_CLAMP,
    Block,
    PinholeCamera,
    fill_hidden,
    seen_field,
    surface_distances,
    trilinear_density,
)

RES = 32
H = 2.0 / RES
CENTRE = np.array([0.1, -0.05, 0.03])
RADIUS = 0.55


def sample_points() -> np.ndarray:
    r = np.arange(RES)
    return -1.0 + (np.stack(np.meshgrid(r, r, r, indexing="ij"), -1) + 0.5) * H


def block(density: np.ndarray) -> Block:
    return Block(density.astype(np.float32), np.full(3, -1.0 + 0.5 * H), np.full(3, H))


def sphere_block() -> Block:
    """σ = σ½·(1 + (R − r)/(2h)), clamped at 0, σ½ the density of opacity 1/2 per voxel: along a ray
    through the centre σ rises linearly from r = R + 2h with slope σ½/(2h), so the optical depth
    after a distance s past that point is σ½·s²/(4h) and reaches ln 2 = σ½·h at s = 2h: half the
    light is stopped exactly at r = R."""
    level = density_for_opacity(0.5, H)
    r = np.linalg.norm(sample_points() - CENTRE, axis=-1)
    return block(np.maximum(level * (1.0 + (RADIUS - r) / (2.0 * H)), 0.0))


def look_at(eye: np.ndarray, target: np.ndarray | None = None, size: int = 48) -> PinholeCamera:
    target = np.zeros(3) if target is None else target
    forward = (target - eye) / np.linalg.norm(target - eye)
    up = np.array([0.0, 0.0, 1.0]) if abs(forward[2]) < 0.9 else np.array([0.0, 1.0, 0.0])
    x = np.cross(forward, up)
    x /= np.linalg.norm(x)
    m = np.eye(4)
    m[:3, 0], m[:3, 1], m[:3, 2], m[:3, 3] = x, np.cross(x, forward), -forward, eye
    focal = size * 1.3  # about 42° across: the [−1, 1]³ box seen from 3.5 away
    return PinholeCamera(m, focal, focal, size / 2, size / 2, size, size)


def ring_cameras(elevations: list[float], count: int = 8, distance: float = 3.5) -> list[PinholeCamera]:
    cams = []
    for elevation in elevations:
        for k in range(count):
            a = 2 * np.pi * (k + 0.5 * (elevation > 0)) / count
            eye = distance * np.array([np.cos(a) * np.cos(elevation), np.sin(a) * np.cos(elevation), np.sin(elevation)])
            cams.append(look_at(eye))
    return cams


def test_ray_stops_where_half_the_light_is_stopped() -> None:
    rng = np.random.default_rng(1)
    dirs = rng.normal(size=(64, 3))
    dirs /= np.linalg.norm(dirs, axis=1, keepdims=True)
    origins = CENTRE + 3.0 * dirs
    hit = surface_distances(sphere_block(), origins, -dirs, 0.5)
    assert np.abs((hit - (3.0 - RADIUS)) / H).max() < 0.1  # voxels


def test_ray_that_is_never_stopped_is_infinite() -> None:
    hit = surface_distances(sphere_block(), np.array([[3.0, 0.9, 0.9]]), np.array([[-1.0, 0.0, 0.0]]), 0.5)
    assert np.isinf(hit[0])


def test_seen_field_crosses_zero_at_the_half_opacity_sphere() -> None:
    """The field's zero level (cameras all round) lies on r = R: a voxel counts as seen through by the
    second-best camera, which looks at it at an angle, so it may lie a little outside (bound 1 voxel)."""
    sphere = sphere_block()
    field = seen_field(sphere, ring_cameras([-0.6, 0.0, 0.6]) + [look_at(np.array([0, 0, 3.5])), look_at(np.array([0, 0, -3.5]))],
                       density_for_opacity(0.5, H))
    rng = np.random.default_rng(2)
    dirs = rng.normal(size=(300, 3))
    dirs /= np.linalg.norm(dirs, axis=1, keepdims=True)
    radii = np.linspace(RADIUS - 3 * H, RADIUS + 3 * H, 241)
    points = CENTRE + dirs[:, None, :] * radii[None, :, None]
    shifted = Block(field + 2 * FIELD_CLAMP, sphere.origin, sphere.voxel_size)  # trilinear_density clamps at 0
    values = trilinear_density(shifted, ((points.reshape(-1, 3) - sphere.origin) / H).astype(np.float32)).reshape(len(dirs), -1) - 2 * FIELD_CLAMP
    assert np.all(values[:, 0] < 0) and np.all(values[:, -1] > 0)
    crossing = (radii[np.argmax(values > 0, axis=1)] - RADIUS) / H
    assert crossing.min() > -0.25 and crossing.max() < 1.0 and abs(np.median(crossing)) < 0.5


def test_fill_leaves_a_clean_solid_alone() -> None:
    sphere = sphere_block()
    level = density_for_opacity(0.3, H)
    field = seen_field(sphere, ring_cameras([-0.5, 0.5]), level)
    carved = fill_hidden(sphere.density, level, field)
    inner = (slice(1, -1),) * 3  # fill_hidden empties the block's outer layer
    assert np.array_equal(carved[inner] >= level, sphere.density[inner] >= level)


def open_box(wall: bool) -> tuple[np.ndarray, np.ndarray]:
    """(density, interior mask): a box shell two voxels thick, closed on top and the four sides but
    open underneath (like a trained object on a base no camera sees the bottom of), optionally with a
    wall inside it (the plane x = 0, from the open bottom halfway up), σ = 4·level in the walls."""
    p = sample_points()
    lo, hi = np.array([-0.5, -0.5, -0.4]), np.array([0.5, 0.5, 0.5])
    inside_outer = np.all((p > lo) & (p < hi), axis=-1)
    inner_lo, inner_hi = lo + 2 * H, hi - 2 * H
    inner_lo[2] = lo[2] - 1.0  # no bottom wall
    inside_inner = np.all((p > inner_lo) & (p < inner_hi), axis=-1)
    shell = inside_outer & ~inside_inner
    if wall:
        shell |= inside_inner & (np.abs(p[..., 0]) < H) & (p[..., 2] > lo[2]) & (p[..., 2] < 0.05)
    level = density_for_opacity(0.3, H)
    return np.where(shell, 4.0 * level, 0.0).astype(np.float32), inside_inner & (p[..., 2] > lo[2] + 2 * H)


def test_hidden_inner_wall_is_removed() -> None:
    level = density_for_opacity(0.3, H)
    density, interior = open_box(wall=True)
    # the enclosed-void fill keeps the wall: the hollow opens downwards to the block's boundary
    filled, count = fill_enclosed_voids(density, level)
    assert count == 0 and np.any(filled[interior] < level)
    cameras = ring_cameras([0.3, 0.8]) + [look_at(np.array([0.0, 0.0, 3.5]))]  # none from below
    carved = fill_hidden(density, level, seen_field(block(density), cameras, level))
    assert np.all(carved[interior] >= level)  # solid throughout: no surface inside the box
    # and the outside the cameras see stays empty: everything two voxels or more above the box or
    # beside it (above its bottom)
    p = sample_points()
    outside = (np.max(np.abs(p[..., :2]), axis=-1) > 0.5 + 2 * H) | (p[..., 2] > 0.5 + 2 * H)
    outside &= p[..., 2] > -0.4
    outside[[0, -1]], outside[:, [0, -1]], outside[:, :, [0, -1]] = False, False, False
    assert np.all(carved[outside] < level)


@pytest.mark.parametrize("cameras", [[], "far away"])
def test_voxels_no_camera_holds_keep_the_density(cameras: object) -> None:
    level = density_for_opacity(0.3, H)
    sphere = sphere_block()
    cams = [] if cameras == [] else [look_at(np.array([0.0, 0.0, 50.0]), np.array([0.0, 30.0, 50.0]))]  # looks away
    field = seen_field(sphere, cams, level)
    assert np.array_equal(field < 0, sphere.density >= level)


def test_large_images_are_scaled_to_the_grid() -> None:
    from blender_plenox.io.ray_surface import _at_most

    cam = PinholeCamera(np.eye(4), 500.0, 500.0, 200.0, 150.0, 400, 300)
    small = _at_most(cam, 100)
    assert (small.width, small.height) == (100, 75)
    # the same view: a point projects to the same place relative to the image
    x, y, z = 0.3, -0.2, -2.0
    for c in (cam, small):
        u, v = c.fl_x * x / -z + c.cx, -c.fl_y * y / -z + c.cy
        np.testing.assert_allclose([u / c.width, v / c.height], [(500 * 0.15 + 200) / 400, (500 * 0.1 + 150) / 300])
    assert _at_most(cam, 1000) is cam
