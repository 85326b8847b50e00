"""Layer 3: capture in real Blender (bpy 5.0.1, Cycles on the CPU).

Checked against Blender itself: projection by bpy_extras.object_utils.world_to_camera_view, where a
Cycles render puts an emissive sphere, the camera matrices Blender evaluates, and the scene state before
and after.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import bpy
import imageio.v3 as iio
import numpy as np
import pytest
from bpy_extras.object_utils import world_to_camera_view
from mathutils import Vector

import blender_plenox
from blender_plenox.batch import script_argv
from blender_plenox.capture.session import CaptureSession, camera_intrinsics, run_blocking
from blender_plenox.capture.sources import RIG_COLLECTION
from blender_plenox.capture.targets import CaptureError
from blender_plenox.compat import image_format_attributes, node_tree_of
from blender_plenox.utils.camera_math import Intrinsics, camera_to_world, project

REPO = Path(__file__).resolve().parents[2]
TRAINER_PYTHON = REPO / ".venv" / "bin" / "python"


@pytest.fixture(scope="module", autouse=True)
def addon() -> Iterator[None]:
    blender_plenox.register()
    yield
    blender_plenox.unregister()


@pytest.fixture(autouse=True)
def empty_scene() -> bpy.types.Scene:
    bpy.ops.wm.read_factory_settings(use_empty=True)
    return bpy.context.scene


def add_sphere(name: str, location: tuple[float, float, float], radius: float, emission: bool = False,
               ) -> bpy.types.Object:
    bpy.ops.mesh.primitive_uv_sphere_add(radius=radius, location=location, segments=48, ring_count=24)
    obj = bpy.context.active_object
    obj.name = name
    bpy.ops.object.shade_smooth()
    if emission:
        mat = bpy.data.materials.new(name + "_emit")
        tree = node_tree_of(mat)
        tree.nodes.clear()
        emit = tree.nodes.new("ShaderNodeEmission")
        emit.inputs["Strength"].default_value = 2.0
        out = tree.nodes.new("ShaderNodeOutputMaterial")
        tree.links.new(emit.outputs[0], out.inputs["Surface"])
        obj.data.materials.append(mat)
    return obj


def small_scene() -> bpy.types.Scene:
    scene = bpy.context.scene
    add_sphere("Ball", (0.2, 0.1, 0.3), 0.5)
    bpy.ops.mesh.primitive_cube_add(size=0.6, location=(-0.4, 0.0, 0.0))
    light = bpy.data.objects.new("Sun", bpy.data.lights.new("Sun", "SUN"))
    scene.collection.objects.link(light)
    cam = bpy.data.objects.new("UserCam", bpy.data.cameras.new("UserCam"))
    cam.location = (5, -5, 3)
    scene.collection.objects.link(cam)
    scene.camera = cam
    scene.frame_set(7)
    bpy.ops.object.select_all(action="DESELECT")
    bpy.data.objects["Ball"].select_set(True)
    bpy.context.view_layer.objects.active = cam
    return scene


def settings(**values: Any) -> Any:
    s = bpy.context.scene.plenox.capture
    for key, value in values.items():
        setattr(s, key, value)
    return s


def fingerprint(scene: bpy.types.Scene) -> dict[str, Any]:
    """Everything a capture could disturb, the rig collection aside."""
    r = scene.render
    rig = bpy.data.collections.get(RIG_COLLECTION)
    rig_objects = set(rig.objects.keys()) if rig else set()
    view_layer = bpy.context.view_layer
    return {
        "render": (r.engine, r.resolution_x, r.resolution_y, r.resolution_percentage, r.film_transparent,
                   r.filepath, r.pixel_aspect_x, r.pixel_aspect_y, r.use_file_extension),
        "image": (*(getattr(r.image_settings, a) for a in image_format_attributes()),
                  r.image_settings.color_mode, r.image_settings.color_depth),
        "cycles": (scene.cycles.samples, scene.cycles.use_denoising, scene.cycles.device),
        "view": (scene.view_settings.view_transform, scene.view_settings.look, scene.view_settings.exposure,
                 scene.view_settings.gamma),
        "camera": scene.camera.name if scene.camera else None,
        "frame": (scene.frame_current, scene.frame_subframe),
        "selected": sorted(o.name for o in view_layer.objects if o.select_get()),
        "active": view_layer.objects.active.name if view_layer.objects.active else None,
        "objects": {o.name: [list(row) for row in o.matrix_world] for o in bpy.data.objects
                    if o.name not in rig_objects},
        "cameras": {c.name: (c.lens, c.shift_x, c.shift_y, c.sensor_fit) for c in bpy.data.cameras
                    if not c.name.startswith("PlenoxCam")},
    }


def test_register_twice_leaves_nothing_behind() -> None:
    from blender_plenox import operators, panels, preferences, properties

    classes = [*preferences.classes, *properties.classes, *operators.classes, *panels.classes]
    names = ("PLENOX_OT_capture", "PLENOX_OT_rig_preview", "PLENOX_OT_rig_remove", "VIEW3D_PT_plenox_capture",
             "VIEW3D_PT_plenox_train", "VIEW3D_PT_plenox_import")
    blender_plenox.unregister()
    for _ in range(2):
        blender_plenox.register()
        assert all(cls.is_registered for cls in classes)
        assert all(hasattr(bpy.types, n) for n in names)
        assert bpy.context.scene.plenox.capture.rig_views == 100
        panel = bpy.types.VIEW3D_PT_plenox_capture
        assert (panel.bl_space_type, panel.bl_region_type, panel.bl_category) == ("VIEW_3D", "UI", "Reconstruct")
        blender_plenox.unregister()
        assert not any(cls.is_registered for cls in classes)
        assert not any(hasattr(bpy.types, n) for n in names)
        assert not hasattr(bpy.types.Scene, "plenox")
    blender_plenox.register()
    blender_plenox.register()  # twice in a row without unregistering re-registers cleanly
    assert all(cls.is_registered for cls in classes) and hasattr(bpy.types.Scene, "plenox")


def test_capture_rig_writes_dataset_and_restores_scene(tmp_path: Path) -> None:
    scene = small_scene()
    scene.view_settings.view_transform = "AgX"  # the user's tone mapping, replaced by Standard for the capture
    scene.view_settings.exposure = 0.5
    before = fingerprint(scene)
    out = tmp_path / "ds"
    s = settings(rig_views=8, resolution_x=64, resolution_y=64, samples=4, output_dir=str(out), target="VISIBLE")
    assert bpy.ops.plenox.capture() == {"FINISHED"}
    assert fingerprint(scene) == before
    assert s.status.startswith(f"captured 7 train + 1 test views in {out}")

    train = json.loads((out / "transforms_train.json").read_text())
    test = json.loads((out / "transforms_test.json").read_text())
    assert len(train["frames"]) == 7 and len(test["frames"]) == 1
    assert train["blender_plenox"]["view_transform"] == "Standard"
    assert scene.view_settings.view_transform == "AgX"
    assert train["blender_plenox"]["source"] == "RIG" and train["blender_plenox"]["version"] == 1
    for doc in (train, test):
        assert (doc["w"], doc["h"]) == (64, 64)
        assert doc["fl_x"] == pytest.approx(doc["fl_y"]) and (doc["cx"], doc["cy"]) == (32.0, 32.0)
        for frame in doc["frames"]:
            image = iio.imread(out / (frame["file_path"] + ".png"))
            assert image.shape == (64, 64, 4) and image.dtype == np.uint8
            assert image[..., 3].max() == 255 and image[0, 0, 3] == 0  # object over transparent film
            # the pose is the rig camera's own matrix as Blender evaluates it
            cam = bpy.data.objects[frame["camera"]]
            np.testing.assert_allclose(frame["transform_matrix"], np.array(cam.matrix_world), atol=1e-6)
    # the aabb holds every vertex of the captured objects, with the margin on top
    verts = np.concatenate([
        np.array([tuple(o.matrix_world @ v.co) for v in o.data.vertices])
        for o in bpy.data.objects if o.type == "MESH"
    ])
    lo, hi = np.array(train["aabb"])
    assert (verts > lo).all() and (verts < hi).all()
    np.testing.assert_allclose(lo, verts.min(0) - 0.05 * (verts.max(0) - verts.min(0)).max(), atol=1e-4)
    # the rig stays for inspection in its own collection and can be removed completely
    assert len(bpy.data.collections[RIG_COLLECTION].objects) == 8
    assert bpy.ops.plenox.rig_remove() == {"FINISHED"}
    assert RIG_COLLECTION not in bpy.data.collections
    assert not [c for c in bpy.data.cameras if c.name.startswith("PlenoxCam")]
    assert fingerprint(scene) == before


@pytest.mark.parametrize("case", [
    {"shift_x": 0.13, "shift_y": -0.07, "sensor_fit": "AUTO", "res": (80, 60), "aspect": (1.0, 1.0)},
    {"shift_x": -0.05, "shift_y": 0.2, "sensor_fit": "VERTICAL", "res": (60, 90), "aspect": (1.0, 1.0)},
    {"shift_x": 0.1, "shift_y": 0.1, "sensor_fit": "HORIZONTAL", "res": (64, 48), "aspect": (2.0, 1.0)},
    {"shift_x": 0.0, "shift_y": -0.15, "sensor_fit": "AUTO", "res": (100, 64), "aspect": (1.0, 3.0)},
    {"shift_x": 0.2, "shift_y": 0.0, "sensor_fit": "VERTICAL", "res": (90, 70), "aspect": (1.5, 1.0), "pct": 50},
])
def test_pose_exactness_against_world_to_camera_view(case: dict[str, Any]) -> None:
    scene = bpy.context.scene
    data = bpy.data.cameras.new("Cam")
    data.lens, data.sensor_width, data.sensor_height = 42.0, 30.0, 20.0
    data.sensor_fit, data.shift_x, data.shift_y = case["sensor_fit"], case["shift_x"], case["shift_y"]
    cam = bpy.data.objects.new("Cam", data)
    scene.collection.objects.link(cam)
    cam.location = (1.0, -6.0, 2.5)
    cam.rotation_euler = (1.25, 0.05, 0.2)
    cam.scale = (1.7, 0.6, 2.0)  # Blender renders without the scale; so must the dataset
    r = scene.render
    r.resolution_x, r.resolution_y = case["res"]
    r.pixel_aspect_x, r.pixel_aspect_y = case["aspect"]
    r.resolution_percentage = case.get("pct", 100)
    bpy.context.view_layer.update()

    intr = camera_intrinsics(scene, cam)
    c2w = camera_to_world(np.array(cam.matrix_world))
    rng = np.random.default_rng(5)
    # points spread over (and past) the frame at several depths
    rot = np.array(cam.matrix_world.to_3x3().normalized())
    local = np.stack([rng.uniform(-2, 2, 200), rng.uniform(-2, 2, 200), -rng.uniform(2, 8, 200)], axis=1)
    world = local @ rot.T + np.array(cam.matrix_world.translation)
    ours = project(world, c2w, intr)
    ref = np.array([tuple(world_to_camera_view(scene, cam, Vector(p))) for p in world])
    ref_uv = np.stack([ref[:, 0] * intr.w, (1.0 - ref[:, 1]) * intr.h], axis=1)
    assert np.abs(ours[:, :2] - ref_uv).max() < 0.01
    np.testing.assert_allclose(ours[:, 2], ref[:, 2], rtol=1e-5)


def test_emissive_sphere_lands_where_the_json_says(tmp_path: Path) -> None:
    scene = bpy.context.scene
    centre = np.array([0.35, -0.2, 0.25])
    add_sphere("Glow", tuple(centre), 0.12, emission=True)
    rig = bpy.data.collections.new("Shots")
    scene.collection.children.link(rig)
    for name, loc, fit, shift in (("A", (0.5, -3.5, 1.2), "VERTICAL", (0.08, -0.1)),
                                  ("B", (-2.8, -1.5, 2.0), "AUTO", (-0.12, 0.05))):
        data = bpy.data.cameras.new(name)
        data.lens, data.sensor_fit, data.shift_x, data.shift_y = 45.0, fit, *shift
        data.sensor_height = 20.0
        cam = bpy.data.objects.new(name, data)
        cam.location = loc
        # aim at the origin, so the sphere sits off-centre, then the shift moves it further
        cam.rotation_euler = (Vector((0, 0, 0)) - Vector(loc)).to_track_quat("-Z", "Y").to_euler()
        rig.objects.link(cam)
    scene.render.pixel_aspect_x, scene.render.pixel_aspect_y = 1.25, 1.0
    cycles = scene.cycles
    cycles.use_adaptive_sampling = False
    settings(source="COLLECTION", camera_collection=rig, resolution_x=96, resolution_y=80, samples=16,
             use_denoising=False, test_every=2, output_dir=str(tmp_path / "ds"))
    assert bpy.ops.plenox.capture() == {"FINISHED"}

    for split in ("train", "test"):
        doc = json.loads((tmp_path / "ds" / f"transforms_{split}.json").read_text())
        (frame,) = doc["frames"]
        cam = {**doc, **frame}  # per-frame intrinsics override the file's (the two cameras differ)
        intr = Intrinsics(cam["fl_x"], cam["fl_y"], cam["cx"], cam["cy"], cam["w"], cam["h"])
        alpha = iio.imread(tmp_path / "ds" / (frame["file_path"] + ".png"))[..., 3].astype(np.float64)
        v, u = np.mgrid[0 : intr.h, 0 : intr.w] + 0.5
        seen = np.array([(alpha * u).sum(), (alpha * v).sum()]) / alpha.sum()
        expected = project([centre], np.array(frame["transform_matrix"]), intr)[0, :2]
        assert alpha.sum() > 20 * 255  # the sphere covers a few dozen pixels
        assert np.abs(seen - expected).max() < 0.25, (split, seen, expected)


def test_cancel_keeps_the_views_written_and_restores_the_scene(tmp_path: Path) -> None:
    scene = small_scene()
    before = fingerprint(scene)
    s = settings(rig_views=6, resolution_x=32, resolution_y=32, samples=1, use_denoising=False,
                 test_every=3, output_dir=str(tmp_path / "ds"))
    session = CaptureSession(bpy.context, s)
    for _ in range(4):  # what the modal operator does until Esc
        session.render_next()
    session.finish()
    assert fingerprint(scene) == before
    train = json.loads((tmp_path / "ds" / "transforms_train.json").read_text())
    test = json.loads((tmp_path / "ds" / "transforms_test.json").read_text())
    assert [f["file_path"] for f in train["frames"]] == ["./train/r_0", "./train/r_1", "./train/r_2"]
    assert [f["file_path"] for f in test["frames"]] == ["./test/r_0"]
    assert "stopped after 4 of 6 views" in session.summary()


def test_refusals_leave_scene_and_files_alone(tmp_path: Path) -> None:
    scene = small_scene()
    coll = bpy.data.collections.new("Ortho")
    scene.collection.children.link(coll)
    ortho = bpy.data.cameras.new("Flat")
    ortho.type = "ORTHO"
    coll.objects.link(bpy.data.objects.new("Flat", ortho))
    before = fingerprint(scene)
    s = settings(source="COLLECTION", camera_collection=coll, output_dir=str(tmp_path / "a"))
    with pytest.raises(CaptureError, match="Flat: orthographic cameras cannot be captured"):
        run_blocking(bpy.context, s)
    ortho.type = "PANO"
    with pytest.raises(CaptureError, match="panoramic"):
        run_blocking(bpy.context, s)
    assert not (tmp_path / "a").exists()

    existing = tmp_path / "b"
    existing.mkdir()
    (existing / "keep.txt").write_text("mine")
    settings(source="RIG", rig_views=2, output_dir=str(existing))
    with pytest.raises(RuntimeError, match="not empty"):  # an operator's error report, in background mode
        bpy.ops.plenox.capture()
    assert "not empty" in s.status
    assert [p.name for p in existing.iterdir()] == ["keep.txt"]
    assert RIG_COLLECTION not in bpy.data.collections  # refused before the rig was built
    assert fingerprint(scene) == before

    settings(source="RIG", target="SELECTED", output_dir=str(tmp_path / "c"))
    bpy.ops.object.select_all(action="DESELECT")
    with pytest.raises(CaptureError, match="no renderable object is selected"):
        run_blocking(bpy.context, s)


def test_animated_camera_over_frames(tmp_path: Path) -> None:
    scene = small_scene()
    cam = scene.camera
    cam.rotation_euler = (1.1, 0, 0.8)
    for frame, x in ((2, 4.0), (5, 1.0)):
        cam.location.x = x
        cam.keyframe_insert("location", frame=frame)
    scene.frame_set(7)
    before = fingerprint(scene)
    settings(source="ANIMATION", use_scene_frames=False, frame_start=2, frame_end=5, frame_step=1, test_every=0,
             resolution_x=32, resolution_y=24, samples=1, output_dir=str(tmp_path / "ds"))
    # invoked as from the panel's button: without an event loop it must block instead of going modal
    assert bpy.ops.plenox.capture("INVOKE_DEFAULT") == {"FINISHED"}
    assert fingerprint(scene) == before
    frames = json.loads((tmp_path / "ds" / "transforms_train.json").read_text())["frames"]
    assert [f["frame"] for f in frames] == [2, 3, 4, 5]
    for f in frames:
        scene.frame_set(f["frame"])
        np.testing.assert_allclose(f["transform_matrix"], np.array(cam.matrix_world), atol=1e-6)
    xs = [f["transform_matrix"][0][3] for f in frames]
    assert xs[0] == pytest.approx(4.0) and xs[-1] == pytest.approx(1.0) and len(set(xs)) == 4


def test_dataset_loads_in_the_trainer(tmp_path: Path) -> None:
    small_scene()
    settings(rig_views=5, test_every=4, resolution_x=40, resolution_y=30, samples=2,
             output_dir=str(tmp_path / "ds"))
    assert bpy.ops.plenox.capture() == {"FINISHED"}
    code = (
        "import sys, json; from trainer.io.data import load_dataset; d = load_dataset(sys.argv[1]);"
        "print(json.dumps({'train': list(d.train.images.shape), 'test': list(d.test.images.shape),"
        "'k': d.train.intrinsics[0].tolist(), 'aabb': d.aabb.tolist(), 'c2w': d.test.c2w[0].tolist()}))"
    )
    proc = subprocess.run([str(TRAINER_PYTHON), "-c", code, str(tmp_path / "ds")], cwd=REPO,
                          capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stderr
    loaded = json.loads(proc.stdout)
    doc = json.loads((tmp_path / "ds" / "transforms_test.json").read_text())
    assert loaded["train"] == [4, 30, 40, 3] and loaded["test"] == [1, 30, 40, 3]
    np.testing.assert_allclose(loaded["k"], [doc["fl_x"], doc["fl_y"], doc["cx"], doc["cy"]], rtol=1e-6)
    np.testing.assert_allclose(loaded["aabb"], doc["aabb"], rtol=1e-6)
    np.testing.assert_allclose(loaded["c2w"], doc["frames"][0]["transform_matrix"], atol=1e-6)


def test_batch_script_headless(tmp_path: Path) -> None:
    small_scene()
    blend = tmp_path / "scene.blend"
    bpy.ops.wm.save_as_mainfile(filepath=str(blend))
    script = REPO / "blender_plenox" / "batch.py"
    # under the bpy module the arguments on both sides of `--` are the script's
    assert script_argv(["batch.py", "--blend", "a.blend", "--", "--out", "d"]) == ["--blend", "a.blend", "--out", "d"]
    out = tmp_path / "ds"
    args = ["--out", str(out), "--views", "3", "--width", "24", "--height", "24", "--samples", "1",
            "--no-denoise", "--test-every", "3", "--layout", "sphere", "--seed", "4"]
    run = [sys.executable, str(script), "--blend", str(blend), "--", *args]
    proc = subprocess.run(run, cwd=tmp_path, capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stderr
    assert "captured 2 train + 1 test views" in proc.stdout
    doc = json.loads((out / "transforms_train.json").read_text())
    assert doc["w"] == 24 and len(doc["frames"]) == 2
    # the same settings in the panel give the same rig (seeded) and so the same poses
    settings(rig_views=3, rig_layout="SPHERE", rig_seed=4, resolution_x=24, resolution_y=24)
    bpy.ops.plenox.rig_preview()
    np.testing.assert_allclose(doc["frames"][0]["transform_matrix"],
                               np.array(bpy.data.objects["PlenoxCam.0"].matrix_world), atol=1e-6)

    again = subprocess.run(run, cwd=tmp_path, capture_output=True, text=True, check=False)
    assert again.returncode == 2 and again.stderr.strip().startswith("error:") and "not empty" in again.stderr
    bad = subprocess.run([sys.executable, str(script), "--", "--out", str(tmp_path / "x"), "--layout", "cube"],
                         cwd=tmp_path, capture_output=True, text=True, check=False)
    assert bad.returncode == 2
    zero = subprocess.run([sys.executable, str(script), "--", "--out", str(tmp_path / "x"), "--views", "0"],
                          cwd=tmp_path, capture_output=True, text=True, check=False)  # the field's range
    assert zero.returncode == 2 and "error: --views: must be 1 or more, got 0" in zero.stderr
    assert not (tmp_path / "x").exists()
    helped = subprocess.run([sys.executable, str(script), "--help"], capture_output=True, text=True, check=False)
    assert helped.returncode == 0 and "--views" in helped.stdout and "(default: 100)" in helped.stdout
