"""EEVEE with the import's volumetric settings (option "Sharp EEVEE Volumes"): a perspective render of
an imported grid against Cycles from the same camera, with Blender's default volumetrics and with the
import's own; the settings are only changed when the option is on, and never made coarser."""

from __future__ import annotations

import time

import numpy as np

from volume_render_helpers import psnr, render_linear, setup_cycles  # isort: skip

import bpy
from grid_helpers import sh_for_color

from blender_plenox.compat import eevee_engine_id, read_eevee_volumetrics
from blender_plenox.io.grid_reader import PlenoxGrid, write_grid
from blender_plenox.operators.import_volume import PLENOX_OT_import_volume

SIZE = 40  # pixels: tiny, 2 CPU cores render both engines


def _ball_coords(res: int = 16) -> np.ndarray:
    idx = np.stack(np.meshgrid(*[np.arange(res)] * 3, indexing="ij"), -1).reshape(-1, 3)
    return idx[np.linalg.norm((idx + 0.5) / res - 0.5, axis=1) < 0.45].astype(np.int32)


def _write_ball(path, sh: np.ndarray, sh_degree: int) -> None:
    coords = _ball_coords()
    density = np.full(len(coords), 12.0, np.float32)
    write_grid(path, PlenoxGrid(np.array([16] * 3), np.array([[-0.5] * 3, [0.5] * 3]), coords, density,
                                sh, sh_degree))


def _textured_ball(path) -> None:
    """A ball of 16³ voxels over 1 m (density 12 per metre) with a random colour per voxel: detail at
    the voxel scale, which EEVEE's default froxels (8 px, 64 slices over 0.1–100 m) blur away."""
    n = len(_ball_coords())
    _write_ball(path, sh_for_color(np.random.default_rng(3).uniform(0.05, 0.95, (n, 3))), 0)


def _camera(scene) -> None:
    cam = bpy.data.cameras.new("Cam")
    cam.lens = 50.0
    obj = bpy.data.objects.new("Cam", cam)
    obj.location = (2.2, -1.6, 1.4)
    direction = -obj.location.copy()
    obj.rotation_euler = direction.to_track_quat("-Z", "Y").to_euler()
    scene.collection.objects.link(obj)
    scene.camera = obj


def _render_eevee(scene, path: str) -> tuple[np.ndarray, float]:
    scene.render.engine = eevee_engine_id()
    scene.eevee.taa_render_samples = 16  # EEVEE jitters the froxels over its samples
    start = time.perf_counter()
    image = render_linear(scene, path)
    return image, time.perf_counter() - start


def test_import_sharpens_eevee_volumes(registered_scene, tmp_path):
    scene = registered_scene
    _textured_ball(tmp_path / "ball.npz")
    setup_cycles(scene, SIZE, SIZE, samples=16, background=(0.1, 0.2, 0.4))
    _camera(scene)
    scene.plenox.import_settings.color_space = "TRAINER"
    scene.plenox.import_settings.sharp_eevee = False
    default = read_eevee_volumetrics(scene.eevee)
    assert bpy.ops.plenox.import_volume(filepath=str(tmp_path / "ball.npz")) == {"FINISHED"}
    assert read_eevee_volumetrics(scene.eevee) == default  # option off: the scene is not touched
    assert "EEVEE" not in scene.plenox.import_settings.status

    t0 = time.perf_counter()
    cycles = render_linear(scene, str(tmp_path / "cycles.exr"))
    t_cycles = time.perf_counter() - t0
    eevee_default, t_default = _render_eevee(scene, str(tmp_path / "default.exr"))

    scene.plenox.import_settings.sharp_eevee = True
    assert bpy.ops.plenox.import_volume(filepath=str(tmp_path / "ball.npz")) == {"FINISHED"}
    status = scene.plenox.import_settings.status
    tile, samples, start, end = read_eevee_volumetrics(scene.eevee)
    assert f"EEVEE volumetrics: tile {tile} px, {samples} samples" in status
    # the ball's box seen from ~3 m: the range hugs it, every slice lands inside it
    assert start is not None and end is not None and 1.5 < start < end < 4.5
    assert tile <= 2 and samples >= 64
    eevee_sharp, t_sharp = _render_eevee(scene, str(tmp_path / "sharp.exr"))

    p_default, p_sharp = psnr(eevee_default, cycles), psnr(eevee_sharp, cycles)
    print(f"\n{bpy.app.version_string}: EEVEE vs Cycles, default volumetrics {p_default:.2f} dB "
          f"({t_default:.1f} s), import's ({status.split('EEVEE volumetrics: ')[1]}) {p_sharp:.2f} dB "
          f"({t_sharp:.1f} s); Cycles {t_cycles:.1f} s")
    assert p_sharp >= 30.0 and p_sharp >= p_default + 5.0


def test_import_never_coarsens_the_scenes_settings(registered_scene, tmp_path):
    scene = registered_scene
    _textured_ball(tmp_path / "ball.npz")
    _camera(scene)
    scene.eevee.volumetric_tile_size = "1"
    scene.eevee.volumetric_samples = 200
    assert bpy.ops.plenox.import_volume(filepath=str(tmp_path / "ball.npz")) == {"FINISHED"}
    tile, samples, _, _ = read_eevee_volumetrics(scene.eevee)
    assert (tile, samples) == (1, 200)


def test_import_is_undoable():
    # Ctrl-Z restores the scene's EEVEE settings with the rest of the import (global undo of the
    # operator); the bpy module has no window to undo in, so the flag is what can be checked here.
    assert "UNDO" in PLENOX_OT_import_volume.bl_options


def test_eevee_shows_view_dependent_colour(registered_scene, tmp_path):
    """EEVEE gives the SH group the view direction (Geometry → Incoming) as Cycles does: with strong
    degree-1 terms its render matches Cycles' SH render, far from Cycles' view-independent one."""
    scene = registered_scene
    n = len(_ball_coords())
    sh = np.zeros((n, 3, 4), np.float32)
    sh[:, :, 0] = sh_for_color(np.full((n, 3), 0.5))[:, :, 0]
    sh[:, 0, 3], sh[:, 2, 3], sh[:, 1, 1] = 0.8, -0.8, 0.8
    _write_ball(tmp_path / "sh.npz", sh, 1)
    setup_cycles(scene, SIZE, SIZE, samples=16, background=(0.1, 0.2, 0.4))
    _camera(scene)
    scene.plenox.import_settings.color_space = "TRAINER"
    assert bpy.ops.plenox.import_volume(filepath=str(tmp_path / "sh.npz")) == {"FINISHED"}
    cycles = render_linear(scene, str(tmp_path / "cycles.exr"))
    eevee, _ = _render_eevee(scene, str(tmp_path / "eevee.exr"))
    scene.render.engine = "CYCLES"
    scene.plenox.import_settings.view_independent_only = True
    assert bpy.ops.plenox.import_volume(filepath=str(tmp_path / "sh.npz")) == {"FINISHED"}
    cycles_dc = render_linear(scene, str(tmp_path / "dc.exr"))
    p_sh, p_dc = psnr(eevee, cycles), psnr(eevee, cycles_dc)
    print(f"\n{bpy.app.version_string}: EEVEE (SH 1) vs Cycles SH {p_sh:.2f} dB, vs Cycles DC {p_dc:.2f} dB")
    assert p_sh >= 30.0 and p_sh >= p_dc + 5.0
