"""A phone-style capture with known ground truth: a Blender scene rendered opaque, environment and all,
through a lens with known OpenCV distortion, written as instant-ngp's colmap2nerf writes a dataset.

    .venv-blender/bin/python benchmarks/make_real_capture.py [--out /tmp/realcap] [--views 80]
        [--size 270x480] [--samples 4] [--seed 0] [--no-distortion] [--undistorted-out DIR]

The scene (built here, procedurally): a table with a few textured primitives in the middle (what is
worth reconstructing), a ground plane and courtyard walls well beyond the instant-ngp box that the file's
`aabb_scale` declares, buildings further out, and a sky with a gradient and clouds. The camera walks once
around the table at a varying distance and height, handheld (jittered aim, a little roll).

Lens: every view is rendered as an undistorted pinhole image, wider than the final one (so that the
distorted image's corners, pulled in by barrel distortion, are covered) and `--oversample` times finer,
then resampled in numpy to the distorted image: each output sub-pixel's distorted normalised point is
undistorted by fixed-point iteration of the OpenCV radial-tangential model (written here, independently
of trainer/io/lens.py, which uses Newton's method) and the render is sampled there bilinearly, in linear
light. `--no-distortion` writes the same capture with k = p = 0 (a pinhole of the same fl/cx/cy);
`--undistorted-out DIR` writes that one too, from the same renders, for the distortion on/off comparison.

Files: OUT/images/NNNN.png (8-bit sRGB, RGB without alpha: the film is opaque, Standard view transform)
and OUT/transforms.json (one file, as colmap2nerf writes it: fl_x, fl_y, cx, cy, w, h, k1, k2, p1, p2,
camera_angle_x/_y, aabb_scale, frames with file_path and transform_matrix in NeRF's OpenGL camera axes).
The test views are the trainer's holdout of a single transforms.json: every 8th frame (0, 8, 16, ...),
which lie on the same walk between training views. `--views` counts the training views.

The lighting is chosen so that a few samples give a noise-free ground truth: one sun lamp of zero angle
(a delta light: direct light without sampling noise), fill and ambient light as emission terms, no
bounces, and a sky that is seen by the camera but lights nothing; the samples only antialias.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

HOLDOUT_EVERY = 8   # the trainer's holdout for a single transforms.json (trainer/io/data.py)
# A phone's main camera, roughly (barrel distortion, slight decentring); the lens is part of the data.
PHONE_LENS = {"k1": -0.12, "k2": 0.03, "p1": 0.001, "p2": -0.0008}
NO_LENS = {"k1": 0.0, "k2": 0.0, "p1": 0.0, "p2": 0.0}
FOCAL_PER_HEIGHT = 0.75      # fl / image height: a 67 deg vertical (long side) field of view, ~26 mm equiv.
PRINCIPAL_OFFSET = (0.6, -1.1)  # px from the image centre at 270x480: real calibrations are never centred


@dataclass
class Intrinsics:
    fl_x: float
    fl_y: float
    cx: float
    cy: float
    w: int
    h: int


# --------------------------------------------------------------------------------------------------
# Lens model (numpy, independent of the trainer)

def distort(x: np.ndarray, y: np.ndarray, lens: dict[str, float]) -> tuple[np.ndarray, np.ndarray]:
    """OpenCV's forward model: undistorted normalised (x, y) -> distorted (xd, yd)."""
    k1, k2, p1, p2 = lens["k1"], lens["k2"], lens["p1"], lens["p2"]
    r2 = x * x + y * y
    radial = 1.0 + k1 * r2 + k2 * r2 * r2
    return (x * radial + 2.0 * p1 * x * y + p2 * (r2 + 2.0 * x * x),
            y * radial + p1 * (r2 + 2.0 * y * y) + 2.0 * p2 * x * y)


def undistort(xd: np.ndarray, yd: np.ndarray, lens: dict[str, float],
              tol: float = 1e-13, max_iter: int = 200) -> tuple[np.ndarray, np.ndarray]:
    """The undistorted (x, y) that `distort` maps to (xd, yd), by OpenCV's fixed-point iteration
    x <- (xd - tangential(x, y)) / radial(x, y). It contracts by about |2 k1 r²|, so a phone lens
    converges to float64 precision in a few dozen steps; a lens it cannot invert is an error here rather
    than a silently wrong dataset."""
    k1, k2, p1, p2 = lens["k1"], lens["k2"], lens["p1"], lens["p2"]
    x, y = xd.astype(np.float64), yd.astype(np.float64)
    for _ in range(max_iter):
        r2 = x * x + y * y
        radial = 1.0 + k1 * r2 + k2 * r2 * r2
        nx = (xd - 2.0 * p1 * x * y - p2 * (r2 + 2.0 * x * x)) / radial
        ny = (yd - p1 * (r2 + 2.0 * y * y) - 2.0 * p2 * x * y) / radial
        change = max(float(np.abs(nx - x).max(initial=0.0)), float(np.abs(ny - y).max(initial=0.0)))
        x, y = nx, ny
        if change < tol:
            break
    ex, ey = distort(x, y, lens)
    if max(float(np.abs(ex - xd).max(initial=0.0)), float(np.abs(ey - yd).max(initial=0.0))) > 1e-9:
        raise ValueError(f"lens {lens}: the fixed-point undistortion did not converge")
    return x, y


@dataclass
class RenderCamera:
    """The undistorted pinhole render: centred principal point, square pixels."""
    focal: float
    w: int
    h: int


def render_camera_for(k: Intrinsics, lens: dict[str, float], oversample: float, margin_px: float = 3.0) -> RenderCamera:
    """The smallest centred pinhole render, `oversample` times finer than the output, that covers every
    undistorted point the output's pixels (their whole area, border included) come from."""
    border_u = np.concatenate([np.linspace(0, k.w, 200), np.full(200, k.w), np.linspace(0, k.w, 200), np.zeros(200)])
    border_v = np.concatenate([np.zeros(200), np.linspace(0, k.h, 200), np.full(200, k.h), np.linspace(0, k.h, 200)])
    x, y = undistort((border_u - k.cx) / k.fl_x, (border_v - k.cy) / k.fl_y, lens)
    focal = oversample * max(k.fl_x, k.fl_y)
    # the bilinear sample needs one more render pixel beyond the extreme point, plus a safety margin
    half_w = focal * float(np.abs(x).max()) + margin_px
    half_h = focal * float(np.abs(y).max()) + margin_px
    return RenderCamera(focal, 2 * math.ceil(half_w), 2 * math.ceil(half_h))


def bilinear(img: np.ndarray, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """img [H, W, C] sampled at continuous pixel positions (u, v), pixel centres at +0.5."""
    h, w = img.shape[:2]
    fu, fv = u - 0.5, v - 0.5
    u0 = np.floor(fu).astype(np.int64)
    v0 = np.floor(fv).astype(np.int64)
    if u0.min() < 0 or v0.min() < 0 or u0.max() + 1 >= w or v0.max() + 1 >= h:
        raise ValueError("resample: a sample falls outside the rendered image (render_camera_for too small)")
    a = (fu - u0)[..., None]
    b = (fv - v0)[..., None]
    return ((1 - a) * (1 - b) * img[v0, u0] + a * (1 - b) * img[v0, u0 + 1]
            + (1 - a) * b * img[v0 + 1, u0] + a * b * img[v0 + 1, u0 + 1])


def sample_map(rc: RenderCamera, k: Intrinsics, lens: dict[str, float],
               subsamples: int = 2) -> tuple[np.ndarray, np.ndarray]:
    """Where in the render each output sub-pixel samples: render pixel positions (u, v), each
    [k.h * s, k.w * s]. The same for every view of one lens, so computed once."""
    offsets = (np.arange(subsamples) + 0.5) / subsamples
    u = (np.arange(k.w)[:, None] + offsets[None, :]).reshape(-1)
    v = (np.arange(k.h)[:, None] + offsets[None, :]).reshape(-1)
    uu, vv = np.meshgrid(u, v)
    x, y = undistort((uu - k.cx) / k.fl_x, (vv - k.cy) / k.fl_y, lens)
    return rc.focal * x + rc.w / 2, rc.focal * y + rc.h / 2


def distort_image(src: np.ndarray, where: tuple[np.ndarray, np.ndarray], subsamples: int = 2) -> np.ndarray:
    """The distorted camera's image from the undistorted render `src` [rc.h, rc.w, C], at the sample
    positions of sample_map: each output pixel averages its subsamples² points (the render is finer
    than the output, so a single bilinear tap would alias)."""
    samples = bilinear(src, *where)
    s = subsamples
    h, w = samples.shape[0] // s, samples.shape[1] // s
    return samples.reshape(h, s, w, s, -1).mean(axis=(1, 3))


def srgb_to_linear(c: np.ndarray) -> np.ndarray:
    return np.where(c <= 0.04045, c / 12.92, ((c + 0.055) / 1.055) ** 2.4)


def linear_to_srgb(c: np.ndarray) -> np.ndarray:
    c = np.clip(c, 0.0, 1.0)
    return np.where(c <= 0.0031308, c * 12.92, 1.055 * c ** (1 / 2.4) - 0.055)


# --------------------------------------------------------------------------------------------------
# Camera path (numpy)

def look_at(eye: np.ndarray, target: np.ndarray, roll: float) -> np.ndarray:
    """camera-to-world [4, 4], OpenGL axes (looks down -z, +y up, world +z up), rolled about its axis."""
    fwd = target - eye
    fwd = fwd / np.linalg.norm(fwd)
    right = np.cross(fwd, [0.0, 0.0, 1.0])
    right /= np.linalg.norm(right)
    up = np.cross(right, fwd)
    c, s = math.cos(roll), math.sin(roll)
    right, up = c * right + s * up, -s * right + c * up
    m = np.eye(4)
    m[:3, 0], m[:3, 1], m[:3, 2], m[:3, 3] = right, up, -fwd, eye
    return m


def frames_for(train_views: int) -> int:
    """The fewest frames whose holdout (every 8th) leaves `train_views` for training."""
    n = train_views
    while n - math.ceil(n / HOLDOUT_EVERY) < train_views:
        n += 1
    return n


def walk_poses(n: int, seed: int) -> list[np.ndarray]:
    """One loop around the table like a person with a phone: distance 3.6-4.6, eye 1.5-2.1 above the
    ground (z = -1.5), aim wandering about the objects, a few degrees of roll; evenly spaced in angle
    with a little jitter, so that every 8th frame (a test view) lies between training views."""
    rng = np.random.default_rng(seed)
    t = (np.arange(n) + rng.uniform(-0.25, 0.25, n)) / n
    angle = 2 * math.pi * t + 0.3
    radius = 4.1 + 0.35 * np.sin(3 * angle + 0.5) + rng.normal(0, 0.08, n)
    height = 0.3 + 0.25 * np.sin(2 * angle + 1.0) + rng.normal(0, 0.06, n)
    eyes = np.stack([radius * np.cos(angle), radius * np.sin(angle), height], axis=1)
    targets = np.array([0.0, 0.0, -0.15]) + rng.normal(0, 0.12, (n, 3))
    rolls = np.radians(rng.normal(0, 2.5, n))
    return [look_at(e, c, r) for e, c, r in zip(eyes, targets, rolls)]


# --------------------------------------------------------------------------------------------------
# Scene (bpy)

# Cycles picks one light per sample, so several lamps would be noisy at few samples. One delta sun is
# sampled exactly; the fill light and ambient are emission terms, base colour x (AMBIENT + FILL x max(0,
# n . FILL_DIR)), which need no sampling at all.
AMBIENT = 0.14
FILL = 0.22
FILL_DIR = (-0.5, 0.6, 0.62)


def _material(name: str, base, roughness: float = 0.6) -> object:
    """A material whose base colour comes from `base(nodes, links)` (an output socket): the sun lights
    it through a Principled BSDF, the fill and ambient are added as emission (see AMBIENT)."""
    import bpy

    mat = bpy.data.materials.new(name)
    mat.use_nodes = True
    # emissive triangles would otherwise join the lights Cycles samples from, one per sample: noise
    mat.cycles.emission_sampling = "NONE"
    nodes, links = mat.node_tree.nodes, mat.node_tree.links
    bsdf = nodes["Principled BSDF"]
    bsdf.inputs["Roughness"].default_value = roughness
    colour = base(nodes, links)
    links.new(colour, bsdf.inputs["Base Color"])
    geometry = nodes.new("ShaderNodeNewGeometry")
    facing = nodes.new("ShaderNodeVectorMath")
    facing.operation = "DOT_PRODUCT"
    facing.inputs[1].default_value = FILL_DIR
    links.new(geometry.outputs["Normal"], facing.inputs[0])
    lit = nodes.new("ShaderNodeMath")
    lit.operation = "MAXIMUM"
    lit.inputs[1].default_value = 0.0
    links.new(facing.outputs["Value"], lit.inputs[0])
    level = nodes.new("ShaderNodeMath")
    level.operation = "MULTIPLY_ADD"
    level.inputs[1].default_value = FILL
    level.inputs[2].default_value = AMBIENT
    links.new(lit.outputs["Value"], level.inputs[0])
    tint = nodes.new("ShaderNodeVectorMath")
    tint.operation = "SCALE"
    links.new(colour, tint.inputs[0])
    links.new(level.outputs["Value"], tint.inputs["Scale"])
    glow = nodes.new("ShaderNodeEmission")
    links.new(tint.outputs["Vector"], glow.inputs["Color"])
    both = nodes.new("ShaderNodeAddShader")
    links.new(bsdf.outputs["BSDF"], both.inputs[0])
    links.new(glow.outputs["Emission"], both.inputs[1])
    links.new(both.outputs["Shader"], nodes["Material Output"].inputs["Surface"])
    return mat


def _checker(a: tuple, b: tuple, scale: float):
    def base(nodes, links):
        tex = nodes.new("ShaderNodeTexChecker")
        tex.inputs["Color1"].default_value = (*a, 1.0)
        tex.inputs["Color2"].default_value = (*b, 1.0)
        tex.inputs["Scale"].default_value = scale
        return tex.outputs["Color"]
    return base


def _noise(a: tuple, b: tuple, scale: float):
    def base(nodes, links):
        tex = nodes.new("ShaderNodeTexNoise")
        tex.inputs["Scale"].default_value = scale
        ramp = nodes.new("ShaderNodeValToRGB")
        ramp.color_ramp.elements[0].color = (*a, 1.0)
        ramp.color_ramp.elements[1].color = (*b, 1.0)
        links.new(tex.outputs["Fac"], ramp.inputs["Fac"])
        return ramp.outputs["Color"]
    return base


def _brick(mortar: tuple, a: tuple, b: tuple, scale: float):
    def base(nodes, links):
        tex = nodes.new("ShaderNodeTexBrick")
        tex.inputs["Color1"].default_value = (*a, 1.0)
        tex.inputs["Color2"].default_value = (*b, 1.0)
        tex.inputs["Mortar"].default_value = (*mortar, 1.0)
        tex.inputs["Scale"].default_value = scale
        return tex.outputs["Color"]
    return base


def _plain(colour: tuple):
    def base(nodes, links):
        rgb = nodes.new("ShaderNodeRGB")
        rgb.outputs["Color"].default_value = (*colour, 1.0)
        return rgb.outputs["Color"]
    return base


def _add(kind: str, mat, *, location, scale=(1, 1, 1), rotation=(0, 0, 0), smooth: bool = False, **kw) -> None:
    import bpy

    getattr(bpy.ops.mesh, f"primitive_{kind}_add")(location=location, rotation=rotation, **kw)
    obj = bpy.context.active_object
    obj.scale = scale
    if smooth:
        bpy.ops.object.shade_smooth()
    obj.data.materials.append(mat)


def _sky(world) -> None:
    """A gradient from a pale horizon to a deep zenith with noise clouds: structure to learn, lighting
    nothing (camera-only visibility keeps the renders noise-free)."""
    world.use_nodes = True
    nodes, links = world.node_tree.nodes, world.node_tree.links
    background = nodes["Background"]
    coords = nodes.new("ShaderNodeTexCoord")
    sep = nodes.new("ShaderNodeSeparateXYZ")
    links.new(coords.outputs["Generated"], sep.inputs["Vector"])
    gradient = nodes.new("ShaderNodeValToRGB")
    gradient.color_ramp.elements[0].color = (0.75, 0.82, 0.9, 1.0)
    gradient.color_ramp.elements[1].position = 0.6
    gradient.color_ramp.elements[1].color = (0.12, 0.3, 0.7, 1.0)
    links.new(sep.outputs["Z"], gradient.inputs["Fac"])
    clouds = nodes.new("ShaderNodeTexNoise")
    clouds.inputs["Scale"].default_value = 2.5
    clouds.inputs["Detail"].default_value = 4.0
    links.new(coords.outputs["Generated"], clouds.inputs["Vector"])
    cover = nodes.new("ShaderNodeMapRange")
    cover.inputs["From Min"].default_value = 0.5
    cover.inputs["From Max"].default_value = 0.7
    links.new(clouds.outputs["Fac"], cover.inputs["Value"])
    mix = nodes.new("ShaderNodeMix")
    mix.data_type = "RGBA"
    links.new(cover.outputs["Result"], mix.inputs["Factor"])
    links.new(gradient.outputs["Color"], mix.inputs["A"])
    mix.inputs["B"].default_value = (0.95, 0.95, 0.97, 1.0)
    links.new(mix.outputs["Result"], background.inputs["Color"])
    background.inputs["Strength"].default_value = 1.0
    world.cycles.sampling_method = "NONE"     # not a light either
    for ray in ("diffuse", "glossy", "transmission", "scatter"):
        setattr(world.cycles_visibility, ray, False)


def build_scene() -> None:
    """Units: metres-ish; the objects sit about the origin, the ground at z = -1.5."""
    import bpy

    bpy.ops.wm.read_factory_settings(use_empty=True)
    # what is worth reconstructing: a table and objects on it, within about 1 of the origin
    wood = _material("wood", _noise((0.35, 0.2, 0.08), (0.6, 0.38, 0.18), 6.0))
    _add("cube", wood, location=(0, 0, -0.5), scale=(0.9, 0.6, 0.04))
    for sx in (-0.8, 0.8):
        for sy in (-0.5, 0.5):
            _add("cylinder", wood, location=(sx, sy, -1.02), scale=(0.04, 0.04, 0.5), vertices=16)
    _add("uv_sphere", _material("ball", _checker((0.9, 0.15, 0.1), (0.95, 0.9, 0.8), 6.0)),
         location=(0.35, 0.15, -0.2), radius=0.26, smooth=True)
    _add("cube", _material("crate", _brick((0.9, 0.9, 0.9), (0.1, 0.3, 0.7), (0.2, 0.5, 0.9), 4.0)),
         location=(-0.4, -0.15, -0.26), rotation=(0, 0, 0.5), size=0.44)
    _add("cone", _material("cone", _plain((0.95, 0.75, 0.1))), location=(-0.45, 0.32, -0.22), radius1=0.16,
         depth=0.5, vertices=32)
    _add("torus", _material("ring", _noise((0.1, 0.6, 0.2), (0.7, 0.9, 0.3), 12.0)),
         location=(0.3, -0.32, -0.42), major_radius=0.18, minor_radius=0.06, rotation=(0.3, 0, 0))
    _add("monkey", _material("monkey", _plain((0.8, 0.35, 0.6)), roughness=0.35), location=(0.0, 0.05, 0.0),
         rotation=(0, 0, math.pi / 2), scale=(0.25, 0.25, 0.25), smooth=True)
    # beyond the box: the ground, courtyard walls, buildings
    _add("plane", _material("ground", _checker((0.45, 0.45, 0.42), (0.62, 0.6, 0.55), 60.0)),
         location=(0, 0, -1.5), size=80)
    bricks = _material("walls", _brick((0.75, 0.72, 0.68), (0.55, 0.22, 0.15), (0.7, 0.3, 0.2), 3.0))
    for i, (x, y) in enumerate(((9.5, 0), (0, 9.5), (-9.5, 0), (0, -9.5))):
        _add("cube", bricks, location=(x, y, -0.3), rotation=(0, 0, i * math.pi / 2), scale=(0.2, 9.5, 1.2))
    for i, (angle, dist, height, colour) in enumerate((
            (0.4, 16, 5, (0.8, 0.8, 0.75)), (1.5, 18, 8, (0.5, 0.55, 0.6)), (2.6, 15, 4, (0.85, 0.7, 0.5)),
            (3.7, 17, 7, (0.6, 0.65, 0.5)), (4.8, 16, 6, (0.75, 0.6, 0.65)), (5.7, 19, 9, (0.55, 0.5, 0.45)))):
        _add("cube", _material(f"building{i}", _checker(colour, tuple(0.6 * c for c in colour), 8.0)),
             location=(dist * math.cos(angle), dist * math.sin(angle), -1.5 + height / 2),
             rotation=(0, 0, angle), scale=(2.0, 3.0, height / 2))
    sun = bpy.data.lights.new("sun", "SUN")
    sun.energy, sun.angle = 2.8, 0.0          # a delta light: its shadows need no sampling
    obj = bpy.data.objects.new("sun", sun)
    obj.rotation_euler = (0.7, 0.15, 2.2)
    bpy.context.scene.collection.objects.link(obj)
    bpy.context.scene.world = bpy.data.worlds.new("sky")
    _sky(bpy.context.scene.world)


def setup_render(rc: RenderCamera, samples: int) -> object:
    import bpy

    scene = bpy.context.scene
    scene.render.engine = "CYCLES"
    scene.cycles.device = "CPU"
    scene.cycles.samples = samples
    scene.cycles.use_adaptive_sampling = False
    scene.cycles.use_denoising = False
    scene.cycles.max_bounces = 0        # direct light only: with delta suns, noise-free
    scene.cycles.seed = 0
    scene.render.use_persistent_data = True   # keep the scene synced between views: most of a small render
    scene.render.film_transparent = False
    scene.render.resolution_x, scene.render.resolution_y = rc.w, rc.h
    scene.render.resolution_percentage = 100
    scene.render.pixel_aspect_x = scene.render.pixel_aspect_y = 1.0
    scene.view_settings.view_transform = "Standard"
    scene.view_settings.look = "None"
    scene.view_settings.exposure = 0.0
    scene.view_settings.gamma = 1.0
    scene.display_settings.display_device = "sRGB"
    scene.render.image_settings.file_format = "PNG"
    scene.render.image_settings.color_mode = "RGB"
    scene.render.image_settings.color_depth = "16"
    cam_data = bpy.data.cameras.new("phone")
    cam_data.sensor_fit = "HORIZONTAL"
    cam_data.sensor_width = 36.0
    cam_data.lens = rc.focal * 36.0 / rc.w   # focal in px across the fitted (horizontal) side
    cam_data.clip_start, cam_data.clip_end = 0.05, 500.0
    cam = bpy.data.objects.new("phone", cam_data)
    scene.collection.objects.link(cam)
    scene.camera = cam
    return cam


def render_view(cam, c2w: np.ndarray, path: Path) -> np.ndarray:
    """Linear-light float [H, W, 3] of the undistorted render from pose c2w."""
    import bpy
    from mathutils import Matrix

    cam.matrix_world = Matrix(c2w.tolist())
    bpy.context.scene.render.filepath = str(path)
    bpy.ops.render.render(write_still=True)
    img = read_png(path)
    return srgb_to_linear(img)


def read_png(path: Path) -> np.ndarray:
    """float [H, W, 3] in [0, 1]; Blender's 16-bit PNG read with Blender's own loader, since Pillow
    reduces 16-bit RGB to 8 bits."""
    import bpy

    image = bpy.data.images.load(str(path))
    try:
        image.colorspace_settings.name = "Non-Color"   # the stored (sRGB-encoded) values, unconverted
        w, h = image.size
        px = np.empty(w * h * 4, dtype=np.float32)
        image.pixels.foreach_get(px)
    finally:
        bpy.data.images.remove(image)
    return px.reshape(h, w, 4)[::-1, :, :3].astype(np.float64)   # Blender's rows run bottom-up


# --------------------------------------------------------------------------------------------------
# Dataset

def intrinsics_for(width: int, height: int) -> Intrinsics:
    fl = FOCAL_PER_HEIGHT * height
    return Intrinsics(fl, fl, width / 2 + PRINCIPAL_OFFSET[0] * width / 270,
                      height / 2 + PRINCIPAL_OFFSET[1] * height / 480, width, height)


def transforms(k: Intrinsics, lens: dict[str, float], aabb_scale: int, poses: list[np.ndarray],
               names: list[str], seed: int) -> dict:
    """The file as colmap2nerf writes it (its key order), plus a note on how it was made."""
    meta: dict = {
        "camera_angle_x": 2 * math.atan(k.w / (2 * k.fl_x)),
        "camera_angle_y": 2 * math.atan(k.h / (2 * k.fl_y)),
        "fl_x": k.fl_x, "fl_y": k.fl_y, "k1": lens["k1"], "k2": lens["k2"], "k3": 0.0, "k4": 0.0,
        "p1": lens["p1"], "p2": lens["p2"], "is_fisheye": False, "cx": k.cx, "cy": k.cy, "w": k.w, "h": k.h,
        "aabb_scale": aabb_scale,
        "generator": {"source": "benchmarks/make_real_capture.py", "seed": seed,
                      "test_views": f"every {HOLDOUT_EVERY}th frame (0, {HOLDOUT_EVERY}, ...): the trainer's holdout"},
        "frames": [{"file_path": f"./images/{name}", "transform_matrix": pose.tolist()}
                   for name, pose in zip(names, poses)],
    }
    return meta


def write_png(path: Path, linear: np.ndarray) -> None:
    import imageio.v3 as iio

    iio.imwrite(path, np.round(linear_to_srgb(linear) * 255).astype(np.uint8))


def make_capture(outs: dict[Path, dict[str, float]], *, width: int, height: int, train_views: int,
                 samples: int, seed: int, oversample: float, aabb_scale: int) -> int:
    """Renders once and writes one dataset per (folder, lens); returns the number of frames."""
    k = intrinsics_for(width, height)
    # one render covers every lens asked for: the widest one's footprint
    rcs = [render_camera_for(k, lens, oversample) for lens in outs.values()]
    rc = RenderCamera(rcs[0].focal, max(r.w for r in rcs), max(r.h for r in rcs))
    n = frames_for(train_views)
    poses = walk_poses(n, seed)
    names = [f"{i:04d}.png" for i in range(n)]
    for out in outs:
        (out / "images").mkdir(parents=True, exist_ok=True)
    build_scene()
    cam = setup_render(rc, samples)
    print(f"{n} frames ({n - math.ceil(n / HOLDOUT_EVERY)} train, {math.ceil(n / HOLDOUT_EVERY)} test) at "
          f"{width}x{height}; undistorted renders {rc.w}x{rc.h}, focal {rc.focal:.1f} px, {samples} samples",
          flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        maps = {out: sample_map(rc, k, lens) for out, lens in outs.items()}
        for i, (pose, name) in enumerate(zip(poses, names)):
            src = render_view(cam, pose, Path(tmp) / "render.png")
            for out in outs:
                write_png(out / "images" / name, distort_image(src, maps[out]))
            if i % 10 == 0:
                print(f"  view {i + 1}/{n}", flush=True)
    for out, lens in outs.items():
        meta = transforms(k, lens, aabb_scale, poses, names, seed)
        (out / "transforms.json").write_text(json.dumps(meta, indent=2))
    return n


def parse_size(text: str) -> tuple[int, int]:
    w, _, h = text.lower().partition("x")
    return int(w), int(h)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=Path("/tmp/realcap"))
    ap.add_argument("--views", type=int, default=80, help="training views (every 8th frame more is a test view)")
    ap.add_argument("--size", type=parse_size, default=(270, 480), help="WxH of the images (default 270x480)")
    ap.add_argument("--samples", type=int, default=4, help="Cycles samples per pixel (antialiasing only)")
    ap.add_argument("--oversample", type=float, default=1.25, help="render resolution over the output's")
    ap.add_argument("--aabb-scale", type=int, default=2, help="the file's aabb_scale (2: box +-3.03)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--no-distortion", action="store_true", help="write a pinhole capture (k = p = 0)")
    ap.add_argument("--undistorted-out", type=Path, default=None,
                    help="also write the pinhole version of the same renders here")
    args = ap.parse_args(sys.argv[sys.argv.index("--") + 1:] if "--" in sys.argv else sys.argv[1:])
    start = time.perf_counter()
    outs = {args.out: NO_LENS if args.no_distortion else PHONE_LENS}
    if args.undistorted_out is not None:
        outs[args.undistorted_out] = NO_LENS
    n = make_capture(outs, width=args.size[0], height=args.size[1], train_views=args.views, samples=args.samples,
                     seed=args.seed, oversample=args.oversample, aabb_scale=args.aabb_scale)
    for out, lens in outs.items():
        print(f"wrote {out}: {n} frames, lens {lens}")
    print(f"generation took {time.perf_counter() - start:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
