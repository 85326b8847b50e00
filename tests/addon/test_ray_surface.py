"""io/ray_surface.py against closed forms: where a ray's light is half stopped in an analytic ramp, a
clean solid that the fill leaves as it is, a shell open underneath whose inner wall no camera can
reach (the enclosed-void fill cannot remove it: its hollow is open) and whose underside the fill
closes at its bottom, not at the block's, and the hull's polytope against a cube's and a sphere's."""

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
    hull_directions,
    hull_distance,
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


def test_fill_closes_an_unseen_underside_at_the_last_seen_points() -> None:
    """No camera sees under the open box, down to the block's bottom 9 voxels below it; the lowest
    points the cameras saw are on its side walls' bottom edge (z = −0.4, between two rows of samples),
    so the fill ends there, flush: solid from the first row above it, nothing below it."""
    level = density_for_opacity(0.3, H)
    density, _ = open_box(wall=False)
    cameras = ring_cameras([0.3, 0.8]) + [look_at(np.array([0.0, 0.0, 3.5]))]
    carved = fill_hidden(density, level, seen_field(block(density), cameras, level))
    p = sample_points()
    under = np.all(np.abs(p[..., :2]) < 0.5 - 3 * H, axis=-1)  # away from the side walls
    assert np.all(carved[under & (p[..., 2] > -0.4) & (p[..., 2] < 0.5 - 2 * H)] >= level)
    assert np.all(carved[under & (p[..., 2] < -0.4)] < level)


def test_one_camera_alone_does_not_stretch_the_hull() -> None:
    """A small ball under the open box (2.5 voxels below it), which the box hides from every camera
    above (none lower than 46°); one camera from below sees it. The space between the box and the ball is hidden (one camera is not AGREE), and
    with the ball's stops the hull would take it in; a single camera's stops do not count, so the
    fill still ends at the box's bottom."""
    level = density_for_opacity(0.3, H)
    density, _ = open_box(wall=False)
    p = sample_points()
    ball = np.linalg.norm(p - [0.0, 0.0, -0.65], axis=-1) < 2.5 * H
    density = np.where(ball, 4.0 * level, density).astype(np.float32)
    above = ring_cameras([0.8, 1.2]) + [look_at(np.array([0.0, 0.0, 3.5]))]
    gap = (np.max(np.abs(p[..., :2]), axis=-1) < 0.1) & (p[..., 2] > -0.48) & (p[..., 2] < -0.4)
    one = [look_at(np.array([0.0, 0.0, -3.5]))]
    alone = fill_hidden(density, level, seen_field(block(density), above + one, level))
    assert np.all(alone[gap] < level)
    assert np.all(alone[ball] >= level)  # the ball itself stays, as the density has it
    # two cameras from below do count: the hull reaches down to the ball and the gap is inside it
    below = [look_at(np.array([x, 0.0, -3.5])) for x in (-0.3, 0.3)]
    seen_twice = fill_hidden(density, level, seen_field(block(density), above + below, level))
    assert np.all(seen_twice[gap] >= level)


def test_hull_of_a_cube_is_the_cube() -> None:
    """The polytope holds the 26 neighbour directions: for a cube's corners it is the cube, and the
    field is the distance to the face, edge or corner along those directions, never more than the
    Euclidean distance to the cube."""
    corners = (np.indices((2, 2, 2)).reshape(3, -1).T * 2.0 - 1.0).astype(np.float32)
    dirs = hull_directions()
    support = (corners @ dirs.T).max(axis=0)
    rng = np.random.default_rng(3)
    points = rng.uniform(-3.0, 3.0, size=(5000, 3)).astype(np.float32)
    field = hull_distance(points, support, dirs)
    euclid = np.linalg.norm(np.maximum(np.abs(points) - 1.0, 0.0), axis=1)
    inside = np.all(np.abs(points) < 1.0, axis=1)
    np.testing.assert_allclose(field[inside], (np.abs(points[inside]) - 1.0).max(axis=1), atol=1e-5)
    assert np.all(field[~inside] <= euclid[~inside] + 1e-5)
    on_face = np.array([[1.7, 0.2, -0.3], [-0.1, 0.0, -2.5]], np.float32)  # straight out of a face
    np.testing.assert_allclose(hull_distance(on_face, support, dirs), [0.7, 1.5], atol=1e-5)
    corner = np.array([[2.0, 2.0, 2.0]], np.float32)  # along a diagonal: exact too
    np.testing.assert_allclose(hull_distance(corner, support, dirs), [np.sqrt(3.0)], atol=1e-5)


def test_hull_of_a_sphere_overshoots_by_at_most_its_bound() -> None:
    """Points all over the unit sphere: the polytope's boundary, along any direction, lies between
    radius 1 and 1.011 (hull_directions' bound)."""
    rng = np.random.default_rng(4)
    on = rng.normal(size=(200_000, 3))
    on = (on / np.linalg.norm(on, axis=1, keepdims=True)).astype(np.float32)
    dirs = hull_directions()
    support = (on @ dirs.T).max(axis=0)
    probe = rng.normal(size=(2000, 3))
    probe /= np.linalg.norm(probe, axis=1, keepdims=True)
    # the field is linear along a ray from the centre within one face: bisect its zero crossing
    lo, hi = np.full(len(probe), 0.5), np.full(len(probe), 2.0)
    for _ in range(40):
        mid = 0.5 * (lo + hi)
        out = hull_distance((probe * mid[:, None]).astype(np.float32), support, dirs) > 0
        lo, hi = np.where(out, lo, mid), np.where(out, mid, hi)
    assert lo.min() > 1.0 - 1e-4 and hi.max() < 1.011


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
