"""Layer 3: a dataset's cameras imported into real Blender project like the cameras that made it.

Round trip: cameras of varied lens, shift, sensor fit, sensor size and pixel aspect, captured by the
add-on (landscape and portrait renders, 1 sample), imported into a fresh scene; random points must land
on the same pixel (Blender's world_to_camera_view × the render size) within 0.01 px. An instant-ngp file
(off-centre principal point, fl_x ≠ fl_y, distortion) is checked against the closed-form pinhole.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import bpy
import numpy as np
import pytest
from bpy_extras.object_utils import world_to_camera_view
from mathutils import Vector

import blender_plenox
from blender_plenox.camera_import import DATASET_PROP, import_dataset_cameras
from blender_plenox.capture.session import camera_intrinsics
from blender_plenox.io.dataset_cameras import DatasetCameraError

REPO = Path(__file__).resolve().parents[2]
TOLERANCE_PX = 0.01

# name: lens mm, sensor (w, h) mm, fit, shift (x, y), location
CAMERAS = {
    "A": (28.0, (36.0, 24.0), "AUTO", (0.12, -0.08), (3.0, -4.0, 2.0)),
    "B": (50.0, (30.0, 20.0), "HORIZONTAL", (-0.2, 0.15), (-4.5, -2.0, 1.0)),
    "C": (85.0, (23.5, 15.6), "VERTICAL", (0.05, 0.3), (0.5, 5.5, 3.0)),
    "D": (35.0, (36.0, 24.0), "VERTICAL", (-0.1, -0.25), (4.0, 3.0, -1.5)),
}


@pytest.fixture(scope="module", autouse=True)
def addon() -> Iterator[None]:
    blender_plenox.register()
    yield
    blender_plenox.unregister()


@pytest.fixture(autouse=True)
def empty_scene() -> bpy.types.Scene:
    bpy.ops.wm.read_factory_settings(use_empty=True)
    return bpy.context.scene


def pixels(scene: Any, cam: Any, points: np.ndarray) -> np.ndarray:
    """Where Blender projects world points in the rendered image (u right, v down, in pixels)."""
    r = scene.render
    w, h = r.resolution_x * r.resolution_percentage // 100, r.resolution_y * r.resolution_percentage // 100
    ndc = np.array([tuple(world_to_camera_view(scene, cam, Vector(p))) for p in points])
    return np.stack([ndc[:, 0] * w, (1.0 - ndc[:, 1]) * h], axis=1)


def points_in_front(cam: Any, n: int, seed: int) -> np.ndarray:
    """World points over (and past) the camera's frame at several depths."""
    rng = np.random.default_rng(seed)
    local = np.stack([rng.uniform(-1.5, 1.5, n), rng.uniform(-1.5, 1.5, n), -rng.uniform(1.0, 9.0, n)], axis=1)
    m = np.array(cam.matrix_world.normalized())
    return local @ m[:3, :3].T + m[:3, 3]


def build_shots() -> bpy.types.Collection:
    scene = bpy.context.scene
    bpy.ops.mesh.primitive_cube_add(size=1.0)   # something to bound and render
    shots = bpy.data.collections.new("Shots")
    scene.collection.children.link(shots)
    for name, (lens, sensor, fit, shift, loc) in CAMERAS.items():
        data = bpy.data.cameras.new(name)
        data.lens, (data.sensor_width, data.sensor_height), data.sensor_fit = lens, sensor, fit
        data.shift_x, data.shift_y = shift
        obj = bpy.data.objects.new(name, data)
        obj.location = loc
        obj.rotation_euler = (Vector((0.2, -0.1, 0.0)) - Vector(loc)).to_track_quat("-Z", "Y").to_euler()
        obj.scale = (1.3, 0.7, 1.1)   # Blender renders without the scale, and so must the import
        shots.objects.link(obj)
    return shots


def capture(shots: Any, out: Path, size: tuple[int, int]) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Capture the shots at `size` (tiny, 1 sample); returns, per camera, random world points and
    where the camera projects them under the same render settings."""
    scene = bpy.context.scene
    s = scene.plenox.capture
    s.source, s.camera_collection = "COLLECTION", shots
    s.resolution_x, s.resolution_y, s.resolution_percentage = *size, 100
    s.samples, s.use_denoising, s.test_every, s.output_dir = 1, False, 2, str(out)
    assert bpy.ops.plenox.capture() == {"FINISHED"}
    scene.render.resolution_x, scene.render.resolution_y = size
    scene.render.resolution_percentage = 100
    bpy.context.view_layer.update()
    out_refs = {}
    for i, name in enumerate(CAMERAS):
        cam = bpy.data.objects[name]
        points = points_in_front(cam, 100, i)
        out_refs[name] = (points, pixels(scene, cam, points))
    return out_refs


def frames_by_camera(root: Path) -> dict[str, str]:
    """Original camera name → the imported camera's frame path (the capture records the camera)."""
    out = {}
    for split in ("train", "test"):
        for frame in json.loads((root / f"transforms_{split}.json").read_text())["frames"]:
            out[frame["camera"]] = frame["file_path"]
    return out


def imported_by_frame() -> dict[str, Any]:
    return {o["plenox_frame"]: o for o in bpy.data.objects if o.type == "CAMERA" and DATASET_PROP in o}


@pytest.mark.parametrize("pixel_aspect", [(1.0, 1.0), (1.25, 1.0), (1.0, 1.6)])
def test_capture_then_import_reproduces_the_projection(tmp_path: Path, pixel_aspect: tuple[float, float]) -> None:
    """Landscape and portrait captures of the same cameras; each imported camera projects random points
    where the original did (same points, same render settings) within 0.01 px."""
    shots = build_shots()
    bpy.context.scene.render.pixel_aspect_x, bpy.context.scene.render.pixel_aspect_y = pixel_aspect
    datasets = {size: tmp_path / f"ds_{size[0]}x{size[1]}" for size in ((24, 18), (16, 26))}
    references = {size: capture(shots, root, size) for size, root in datasets.items()}
    worst = 0.0
    for size, root in datasets.items():
        bpy.ops.wm.read_factory_settings(use_empty=True)
        assert bpy.ops.plenox.import_cameras(directory=str(root)) == {"FINISHED"}
        scene = bpy.context.scene
        assert (scene.render.resolution_x, scene.render.resolution_y) == size
        assert "warning" not in scene.plenox.import_settings.status
        imported = imported_by_frame()
        assert len(imported) == len(CAMERAS)
        for name, frame in frames_by_camera(root).items():
            points, reference = references[size][name]
            error = float(np.abs(pixels(scene, imported[frame], points) - reference).max())
            worst = max(worst, error)
            assert error < TOLERANCE_PX, (size, name, error)
    print(f"round trip, pixel aspect {pixel_aspect}: max error {worst:.2e} px")


def closed_form(points: np.ndarray, c2w: np.ndarray, k: dict[str, float]) -> np.ndarray:
    """The pinhole with K: OpenGL camera axes (looks down −z, +y up) to pixels (v down)."""
    cam = (points - c2w[:3, 3]) @ c2w[:3, :3]
    depth = -cam[:, 2]
    return np.stack([k["cx"] + k["fl_x"] * cam[:, 0] / depth, k["cy"] - k["fl_y"] * cam[:, 1] / depth], axis=1)


def look_at(eye: tuple[float, float, float]) -> np.ndarray:
    q = (Vector((0.0, 0.0, 0.0)) - Vector(eye)).to_track_quat("-Z", "Y")
    m = np.eye(4)
    m[:3, :3] = np.array(q.to_matrix())
    m[:3, 3] = eye
    return m


NGP = {"fl_x": 41.3, "fl_y": 37.9, "cx": 27.1, "cy": 16.4, "w": 48, "h": 36,
       "k1": -0.04, "k2": 0.002, "p1": 0.0007, "p2": -0.0003}


def write_ngp(root: Path) -> list[np.ndarray]:
    poses = [look_at(e) for e in ((3.0, -2.0, 1.5), (-2.5, -3.0, 0.8), (0.5, 3.5, 2.5))]
    root.mkdir(parents=True, exist_ok=True)
    frames = [{"file_path": f"./images/{i:04d}.jpg", "transform_matrix": p.tolist()} for i, p in enumerate(poses)]
    (root / "transforms.json").write_text(json.dumps({**NGP, "aabb_scale": 2, "frames": frames}))
    return poses


def test_instant_ngp_cameras_against_the_closed_form(tmp_path: Path) -> None:
    poses = write_ngp(tmp_path / "ngp")
    scene = bpy.context.scene
    result = import_dataset_cameras(scene, tmp_path / "ngp")
    assert result.cameras == ["0000", "0001", "0002"] and result.collection == "ngp Cameras"
    assert (scene.render.resolution_x, scene.render.resolution_y) == (48, 36)
    assert scene.camera is not None and scene.camera.name == "0000"
    (note,) = result.notes
    assert str(tmp_path / "ngp") in note and "k1, k2, p1, p2" in note
    rng = np.random.default_rng(3)
    worst = 0.0
    for name, c2w in zip(result.cameras, poses):
        cam = bpy.data.objects[name]
        assert dict(cam.data["plenox_distortion"]) == pytest.approx({k: NGP[k] for k in ("k1", "k2", "p1", "p2")})
        # capturing from the imported camera would write the file's pinhole again
        intr = camera_intrinsics(scene, cam)
        assert (intr.w, intr.h) == (NGP["w"], NGP["h"])
        np.testing.assert_allclose([intr.fl_x, intr.fl_y, intr.cx, intr.cy],
                                   [NGP["fl_x"], NGP["fl_y"], NGP["cx"], NGP["cy"]], rtol=1e-5)
        local = np.stack([rng.uniform(-1, 1, 100), rng.uniform(-1, 1, 100), -rng.uniform(1, 6, 100)], axis=1)
        world = local @ c2w[:3, :3].T + c2w[:3, 3]
        expected = closed_form(world, c2w, NGP)
        error = float(np.abs(pixels(scene, cam, world) - expected).max())
        worst = max(worst, error)
        assert error < TOLERANCE_PX, (name, error)
        # the check sees the shift's sign: flipped, the points move by pixels
        cam.data.shift_x, cam.data.shift_y = -cam.data.shift_x, -cam.data.shift_y
        assert np.abs(pixels(scene, cam, world) - expected).max() > 1.0
    print(f"instant-ngp cameras vs closed form: max error {worst:.2e} px")


def test_reimport_replaces_and_keeps_the_users_objects(tmp_path: Path) -> None:
    write_ngp(tmp_path / "ngp")
    scene = bpy.context.scene
    first = import_dataset_cameras(scene, tmp_path / "ngp")
    coll = bpy.data.collections[first.collection]
    mine = bpy.data.objects.new("MyEmpty", None)
    coll.objects.link(mine)
    scene.camera = bpy.data.objects["0001"]
    again = import_dataset_cameras(scene, str(tmp_path / "ngp") + "/")   # the same folder, spelt differently
    assert again.collection == first.collection and again.replaced == 3
    assert sorted(o.name for o in coll.objects) == ["0000", "0001", "0002", "MyEmpty"]
    assert len([c for c in bpy.data.collections if DATASET_PROP in c]) == 1
    assert len(bpy.data.cameras) == 3   # the replaced cameras' data went with them
    assert scene.camera.name == "0001"  # the active camera's successor


def test_errors_create_nothing(tmp_path: Path) -> None:
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "transforms.json").write_text('{"fl_x": 10, "frames": [')
    before = (len(bpy.data.objects), len(bpy.data.cameras), len(bpy.data.collections))
    with pytest.raises(DatasetCameraError, match="transforms.json: malformed JSON"):
        import_dataset_cameras(bpy.context.scene, tmp_path / "bad")
    with pytest.raises(RuntimeError, match="no transforms_train.json or transforms.json"):
        bpy.ops.plenox.import_cameras(directory=str(tmp_path))
    assert (len(bpy.data.objects), len(bpy.data.cameras), len(bpy.data.collections)) == before
    assert "no transforms_train.json" in bpy.context.scene.plenox.import_settings.status


def test_batch_imports_cameras_headless(tmp_path: Path) -> None:
    write_ngp(tmp_path / "ngp")
    script = REPO / "blender_plenox" / "batch.py"
    saved = tmp_path / "cams.blend"
    run = [sys.executable, str(script), "--", "--import-cameras", str(tmp_path / "ngp"), "--save", str(saved)]
    proc = subprocess.run(run, cwd=tmp_path, capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stderr
    assert "Imported 3 cameras" in proc.stdout and "scene resolution 48x36" in proc.stdout
    assert proc.stderr.count("warning:") == 1 and "k1, k2, p1, p2" in proc.stderr
    bpy.ops.wm.open_mainfile(filepath=str(saved))
    assert sorted(o.name for o in bpy.data.collections["ngp Cameras"].objects) == ["0000", "0001", "0002"]
    assert math.isclose(bpy.data.objects["0000"].data["plenox_intrinsics"]["fl_y"], NGP["fl_y"])

    bad = subprocess.run([sys.executable, str(script), "--", "--import-cameras", str(tmp_path / "nothing")],
                         cwd=tmp_path, capture_output=True, text=True, check=False)
    assert bad.returncode == 2 and bad.stderr.strip().count("\n") == 0
    assert bad.stderr.startswith("error: import cameras: ") and "no such dataset folder" in bad.stderr
    helped = subprocess.run([sys.executable, str(script), "--help"], capture_output=True, text=True, check=False)
    assert "--import-cameras" in helped.stdout
