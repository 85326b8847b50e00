"""A dataset's cameras as Blender camera settings (no bpy): the inverse of utils/camera_math.

Reads the transforms files of contract 1 (docs/CONTRACTS.md) with the keys and conventions the trainer
accepts (trainer/io/data.py: `camera_angle_x`/`camera_angle_y` or `fl_x fl_y cx cy w h`, file-level and
overridden per frame, `transform_matrix` camera-to-world in OpenGL axes, transforms_{train,val,test}.json
or a single transforms.json) and turns every frame into the settings of a Blender perspective camera that
projects exactly like the frame's pinhole: lens and sensor, shift for the principal point, pixel aspect
for fl_x ≠ fl_y, and the render size. Unlike the trainer, every listed frame becomes a camera, its image
present or not (BlenderNeRF writes test poses without images; they are still viewpoints to render from).

Lens distortion (k1.., p1.., fisheye) has no Blender perspective equivalent: the pinhole part is
imported and the coefficients are kept on the camera for whoever needs them, with one warning.
"""

from __future__ import annotations

import json
import math
import struct
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import numpy.typing as npt

from ..utils.camera_math import camera_to_world

# Both are the sizes of a 35 mm film frame, Blender's defaults; the sensor width spans the image's
# longer side (sensor fit AUTO), so the lens reads as the familiar full-frame equivalent.
SENSOR_WIDTH_MM = 36.0
SENSOR_HEIGHT_MM = 24.0
SPLIT_FILES = ("transforms_train.json", "transforms_val.json", "transforms_test.json")
SINGLE_FILE = "transforms.json"
INTRINSIC_KEYS = ("camera_angle_x", "camera_angle_y", "fl_x", "fl_y", "cx", "cy", "w", "h", "near", "far")
DISTORTION_KEYS = ("k1", "k2", "k3", "k4", "k5", "k6", "p1", "p2")
LENS_MODEL_KEYS = ("is_fisheye", "camera_model")
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".PNG", ".JPG", ".JPEG")
# Blender's limits on an ID name (bytes) and on pixel aspect (each of x, y in [1, 200]).
MAX_NAME_BYTES = 63
MAX_PIXEL_ASPECT = 200.0
# Blender's hard limits on a camera's lens, clip start and display size.
MIN_LENS_MM = 1.0
MIN_CLIP = 1e-6
DISPLAY_SIZE_RANGE = (0.01, 1000.0)


SensorFit = Literal["AUTO", "HORIZONTAL", "VERTICAL"]


class DatasetCameraError(ValueError):
    """str(e) is one line: 'PATH: problem'."""


@dataclass(frozen=True)
class BlenderLens:
    """A perspective Blender camera's lens settings and the render settings it needs."""

    lens: float                         # mm
    sensor_width: float                 # mm; with sensor fit AUTO it spans the longer (aspect-corrected) side
    sensor_height: float                # mm; unused by AUTO, kept at Blender's default
    sensor_fit: SensorFit
    shift_x: float                      # in units of the fitted side (Blender's convention)
    shift_y: float
    resolution: tuple[int, int]
    pixel_aspect: tuple[float, float]   # (x, y), each ≥ 1 as Blender requires


@dataclass(frozen=True)
class DatasetCamera:
    name: str                           # unique within the dataset: split prefix and image name
    source: str                         # "FILE: frames[i]", for messages
    file_path: str                      # the frame's file_path as written
    matrix_world: npt.NDArray[np.float64]   # 4x4, rigid (scale removed), Blender camera axes
    fl_x: float
    fl_y: float
    cx: float
    cy: float
    lens: BlenderLens
    clip_start: float
    clip_end: float
    distortion: dict[str, Any]          # the lens keys the pinhole leaves out ({} for a pinhole)


@dataclass
class DatasetCameras:
    root: Path
    name: str                           # the dataset folder's name
    cameras: list[DatasetCamera]
    resolution: tuple[int, int]         # the scene's: the most common among the cameras
    pixel_aspect: tuple[float, float]   # likewise
    display_size: float                 # camera display size in the viewport, scaled to the scene
    notes: list[str] = field(default_factory=list)   # one-line warnings for the user

    @property
    def uniform_resolution(self) -> bool:
        return all(c.lens.resolution == self.resolution and _aspect_key(c.lens.pixel_aspect) ==
                   _aspect_key(self.pixel_aspect) for c in self.cameras)


def _aspect_key(aspect: tuple[float, float]) -> tuple[float, float]:
    """Pixel aspects equal but for float noise (fl_x / fl_y of one camera at two sizes) compare equal."""
    return round(aspect[0], 6), round(aspect[1], 6)


def blender_lens(fl_x: float, fl_y: float, cx: float, cy: float, w: int, h: int,
                 sensor_width: float = SENSOR_WIDTH_MM) -> BlenderLens:
    """The Blender camera and render settings whose pinhole is (fl_x, fl_y, cx, cy) at w × h pixels:
    the exact inverse of camera_math.intrinsics (Blender's BKE_camera_params_compute_viewplane)."""
    if min(fl_x, fl_y) <= 0 or w <= 0 or h <= 0:
        raise ValueError(f"focal lengths and image size must be positive, got fl {fl_x}, {fl_y} at {w}x{h}")
    # Blender's pixel aspect: a pixel is pixel_aspect_x wide by pixel_aspect_y tall, and
    # fl_y = fl_x · aspect_x / aspect_y. Both must be ≥ 1, so the larger one carries the ratio.
    ycor = fl_x / fl_y                 # aspect_y / aspect_x
    if not 1.0 / MAX_PIXEL_ASPECT <= ycor <= MAX_PIXEL_ASPECT:
        raise ValueError(f"fl_x / fl_y = {ycor:g} is beyond Blender's pixel aspect range (1/200 to 200)")
    aspect = (1.0, ycor) if ycor >= 1.0 else (1.0 / ycor, 1.0)
    # AUTO fits the sensor width to the longer side after pixel aspect, as Blender decides it
    horizontal = aspect[0] * w >= aspect[1] * h
    viewfac = float(w) if horizontal else ycor * h   # the fitted side in x-pixels
    # Blender's lens is at least 1 mm: a field of view wider than that gives on 36 mm (over 173°)
    # gets a wider sensor instead, which projects the same.
    sensor_width = max(sensor_width, MIN_LENS_MM * viewfac / fl_x)
    return BlenderLens(
        lens=fl_x * sensor_width / viewfac,
        sensor_width=sensor_width,
        sensor_height=SENSOR_HEIGHT_MM,
        sensor_fit="AUTO",
        # camera_math: cx = w/2 − shift_x·viewfac, cy = h/2 + shift_y·viewfac/ycor
        shift_x=(0.5 * w - cx) / viewfac,
        shift_y=(cy - 0.5 * h) * ycor / viewfac,
        resolution=(w, h),
        pixel_aspect=aspect,
    )


def image_size(path: Path) -> tuple[int, int] | None:
    """(width, height) from a PNG or JPEG file's header, None when it is neither or unreadable. Reading
    the header only keeps the import fast on datasets of thousands of photos."""
    try:
        with path.open("rb") as f:
            head = f.read(26)
            if head[:8] == b"\x89PNG\r\n\x1a\n" and head[12:16] == b"IHDR":
                w, h = struct.unpack(">II", head[16:24])
                return int(w), int(h)
            if head[:2] == b"\xff\xd8":
                f.seek(2)
                return _jpeg_size(f)
    except OSError:
        return None
    return None


def _jpeg_size(f: Any) -> tuple[int, int] | None:
    # Walk the marker segments to the first start-of-frame (SOF0..SOF15 but DHT, JPG and DAC).
    while True:
        marker = f.read(2)
        if len(marker) < 2 or marker[0] != 0xFF:
            return None
        kind = marker[1]
        if kind == 0xFF:          # fill byte: the marker starts one byte later
            f.seek(-1, 1)
            continue
        if kind in (0xD8, 0x01) or 0xD0 <= kind <= 0xD7:   # markers without a length
            continue
        length_bytes = f.read(2)
        if len(length_bytes) < 2:
            return None
        (length,) = struct.unpack(">H", length_bytes)
        if 0xC0 <= kind <= 0xCF and kind not in (0xC4, 0xC8, 0xCC):
            data = f.read(5)
            if len(data) < 5:
                return None
            h, w = struct.unpack(">HH", data[1:5])
            return int(w), int(h)
        f.seek(length - 2, 1)


@dataclass
class _Frame:
    split: str                 # "train", "val", "test"; "" for a single transforms.json
    source: str
    file_path: str
    image: Path | None
    c2w: npt.NDArray[np.float64]
    camera: dict[str, Any]


def _read_json(path: Path) -> dict[str, Any]:
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise DatasetCameraError(f"{path}: unreadable ({e})") from None
    try:
        meta = json.loads(text)
    except json.JSONDecodeError as e:
        raise DatasetCameraError(f"{path}: malformed JSON (line {e.lineno}: {e.msg})") from None
    if not isinstance(meta, dict):
        raise DatasetCameraError(f"{path}: expected a JSON object, found {type(meta).__name__}")
    return meta


def _image_path(root: Path, file_path: str) -> Path | None:
    """The image a frame names, as the trainer finds it: `\\` read as `/`, extension optional."""
    p = root / file_path.replace("\\", "/")
    if p.is_file():
        return p
    return next((c for c in (Path(str(p) + s) for s in IMAGE_SUFFIXES) if c.is_file()), None)


def _parse_frames(path: Path, split: str, meta: dict[str, Any], root: Path) -> list[_Frame]:
    frames = meta.get("frames")
    if not isinstance(frames, list):
        raise DatasetCameraError(f"{path}: no 'frames' list")
    keys = INTRINSIC_KEYS + DISTORTION_KEYS + LENS_MODEL_KEYS
    shared = {k: meta[k] for k in keys if k in meta}
    out = []
    for i, f in enumerate(frames):
        where = f"{path}: frames[{i}]"
        if not isinstance(f, dict) or not isinstance(f.get("file_path"), str):
            raise DatasetCameraError(f"{where}: missing 'file_path'")
        try:
            c2w = np.asarray(f["transform_matrix"], dtype=np.float64)
        except (KeyError, ValueError, TypeError):
            raise DatasetCameraError(f"{where}: missing or non-numeric 'transform_matrix'") from None
        if c2w.shape != (4, 4) or not np.isfinite(c2w).all():
            raise DatasetCameraError(f"{where}: 'transform_matrix' must be 4x4 finite numbers")
        camera = {**shared, **{k: f[k] for k in keys if k in f}}
        out.append(_Frame(split, where, f["file_path"], _image_path(root, f["file_path"]), c2w, camera))
    return out


def _number(where: str, camera: dict[str, Any], key: str) -> float | None:
    if key not in camera:
        return None
    value = camera[key]
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise DatasetCameraError(f"{where}: '{key}' must be a finite number, got {value!r}")
    return float(value)


def _focal(where: str, camera: dict[str, Any], fl_key: str, angle_key: str, size: int) -> float | None:
    focal = _number(where, camera, fl_key)
    if focal is None:
        angle = _number(where, camera, angle_key)
        if angle is None:
            return None
        if not 0 < angle < math.pi:
            raise DatasetCameraError(f"{where}: '{angle_key}' must be in (0, pi) radians, got {angle}")
        focal = 0.5 * size / math.tan(0.5 * angle)
    if focal <= 0:
        raise DatasetCameraError(f"{where}: focal length '{fl_key}' must be positive, got {focal}")
    return focal


def _declared_size(frame: _Frame) -> tuple[int, int] | None:
    w, h = _number(frame.source, frame.camera, "w"), _number(frame.source, frame.camera, "h")
    if w is None or h is None:
        return None
    if int(w) < 1 or int(h) < 1:
        raise DatasetCameraError(f"{frame.source}: image size w={w:g}, h={h:g} is empty")
    return int(w), int(h)   # BlenderNeRF writes floats; the trainer reads them as int() too


def _sizes(frames: list[_Frame], path_of_first: Path) -> list[tuple[int, int]]:
    """Each frame's image size: its `w`/`h`, else its image's header, else the most common size of the
    other frames, in any split (a pose listed without its image, as BlenderNeRF's test poses)."""
    found = [_declared_size(f) or (image_size(f.image) if f.image else None) for f in frames]
    known = Counter(s for s in found if s is not None)
    if not known:
        raise DatasetCameraError(f"{path_of_first}: no image size: no 'w'/'h' keys and no readable image")
    common = known.most_common(1)[0][0]
    return [s or common for s in found]


def _distortion(frame: _Frame) -> dict[str, Any]:
    """The lens keys that a pinhole cannot express: non-zero coefficients and a non-pinhole model."""
    cam = frame.camera
    kept: dict[str, Any] = {}
    for key in DISTORTION_KEYS:
        value = _number(frame.source, cam, key)
        if value:
            kept[key] = value
    if cam.get("is_fisheye") is True:
        kept["is_fisheye"] = True
    model = cam.get("camera_model")
    if isinstance(model, str) and model not in ("SIMPLE_PINHOLE", "PINHOLE") and (kept or "FISHEYE" in model):
        kept["camera_model"] = model
    return kept


def _camera_name(frame: _Frame) -> str:
    stem = Path(frame.file_path.replace("\\", "/")).name
    for suffix in IMAGE_SUFFIXES:
        if stem.endswith(suffix):
            stem = stem[: -len(suffix)]
            break
    return f"{frame.split}_{stem}" if frame.split else stem


def _unique_names(names: list[str]) -> list[str]:
    """Names as Blender can hold them (≤ 63 bytes), made unique in frame order with a counter."""
    out: list[str] = []
    seen: set[str] = set()
    for name in names:
        base = name.encode("utf-8")[: MAX_NAME_BYTES - 6].decode("utf-8", "ignore")
        candidate, n = base, 1
        while candidate in seen:
            candidate = f"{base}.{n:03d}"
            n += 1
        seen.add(candidate)
        out.append(candidate)
    return out


def _scene_extent(frames: list[_Frame], metas: list[dict[str, Any]]) -> float:
    """Diagonal of the box around the camera positions and the dataset's own box (`aabb`), 0 if none."""
    points = [f.c2w[:3, 3] for f in frames]
    for meta in metas:
        box = meta.get("aabb")
        try:
            arr = np.asarray(box, dtype=np.float64)
        except (ValueError, TypeError):
            continue
        if arr.shape == (2, 3) and np.isfinite(arr).all():
            points.extend(arr)
    pts = np.asarray(points)
    return float(np.linalg.norm(pts.max(axis=0) - pts.min(axis=0)))


def _clip_range(frame: _Frame, extent: float) -> tuple[float, float]:
    """The dataset's `near`/`far` when it gives them, else a range scaled to the scene: from a
    thousandth of its size to a hundred times it (Blender's 0.1 to 1000 for a scene without size)."""
    near, far = _number(frame.source, frame.camera, "near"), _number(frame.source, frame.camera, "far")
    start, end = (max(extent * 1e-3, MIN_CLIP), extent * 1e2) if extent > 1e-6 else (0.1, 1000.0)
    if near is not None and near > 0:
        start = near
    if far is not None and far > start:
        end = far
    return start, max(end, start * 10)


def _split_files(root: Path) -> list[tuple[str, Path]]:
    if (root / SPLIT_FILES[0]).is_file():
        return [(name[len("transforms_"):-len(".json")], root / name) for name in SPLIT_FILES
                if (root / name).is_file()]
    if (root / SINGLE_FILE).is_file():
        return [("", root / SINGLE_FILE)]
    raise DatasetCameraError(f"{root}: no transforms_train.json or transforms.json")


def _most_common(values: list[Any], key: Any = None) -> Any:
    """The most common value (compared by `key`); among equally common ones the first seen."""
    keys = [key(v) if key else v for v in values]
    counts = Counter(keys)
    best = max(counts.values())
    return next(v for v, k in zip(values, keys) if counts[k] == best)


def read_dataset_cameras(root: Path | str, sensor_width: float = SENSOR_WIDTH_MM) -> DatasetCameras:
    """Every frame of the dataset at `root` as a Blender camera; raises DatasetCameraError (one line
    naming the file) before anything is returned when a file is missing or malformed."""
    root = Path(root)
    if not root.is_dir():
        raise DatasetCameraError(f"{root}: no such dataset folder")
    files = _split_files(root)
    frames: list[_Frame] = []
    metas: list[dict[str, Any]] = []
    for split, path in files:
        metas.append(_read_json(path))
        frames.extend(_parse_frames(path, split, metas[-1], root))
    if not frames:
        raise DatasetCameraError(f"{files[0][1]}: lists no frames")
    pairs = list(zip(frames, _sizes(frames, files[0][1])))
    extent = _scene_extent(frames, metas)
    names = _unique_names([_camera_name(f) for f in frames])
    cameras = []
    for (frame, (w, h)), name in zip(pairs, names):
        fl_x = _focal(frame.source, frame.camera, "fl_x", "camera_angle_x", w)
        if fl_x is None:
            raise DatasetCameraError(f"{frame.source}: no focal length (needs 'camera_angle_x' or 'fl_x')")
        fl_y = _focal(frame.source, frame.camera, "fl_y", "camera_angle_y", h) or fl_x
        cx, cy = _number(frame.source, frame.camera, "cx"), _number(frame.source, frame.camera, "cy")
        cx = 0.5 * w if cx is None else cx
        cy = 0.5 * h if cy is None else cy
        try:
            lens = blender_lens(fl_x, fl_y, cx, cy, w, h, sensor_width)
            matrix = camera_to_world(frame.c2w)
        except ValueError as e:
            raise DatasetCameraError(f"{frame.source}: {e}") from None
        start, end = _clip_range(frame, extent)
        cameras.append(DatasetCamera(name=name, source=frame.source, file_path=frame.file_path,
                                     matrix_world=matrix, fl_x=fl_x, fl_y=fl_y, cx=cx, cy=cy, lens=lens,
                                     clip_start=start, clip_end=end, distortion=_distortion(frame)))
    result = DatasetCameras(root=root, name=root.resolve().name or str(root), cameras=cameras,
                            resolution=_most_common([c.lens.resolution for c in cameras]),
                            pixel_aspect=_most_common([c.lens.pixel_aspect for c in cameras], key=_aspect_key),
                            # Blender's default 1 suits a scene a few units across; COLMAP scenes come in any scale
                            display_size=float(np.clip(0.05 * extent, *DISPLAY_SIZE_RANGE)) if extent > 1e-6
                            else 1.0)
    result.notes.extend(_notes(result))
    return result


def _notes(result: DatasetCameras) -> list[str]:
    notes = []
    distorted = [c for c in result.cameras if c.distortion]
    if distorted:
        keys = sorted({k for c in distorted for k in c.distortion}, key=_distortion_order)
        notes.append(
            f"warning: {result.root}: lens distortion ({', '.join(keys)}) on {len(distorted)} of "
            f"{len(result.cameras)} cameras cannot be expressed by a Blender perspective camera; imported "
            "the pinhole part (the coefficients are kept in each camera's custom properties)")
    sizes = Counter(c.lens.resolution for c in result.cameras)
    if len(sizes) > 1:
        listed = ", ".join(f"{w}x{h} ({n})" for (w, h), n in sizes.most_common())
        w, h = result.resolution
        notes.append(f"warning: {result.root}: the cameras differ in image size ({listed}); the scene renders "
                     f"{w}x{h}, the most common, so the others frame their view exactly only at their own size "
                     "(each camera's custom property 'plenox_resolution')")
    aspects = Counter(_aspect_key(c.lens.pixel_aspect) for c in result.cameras)
    if len(aspects) > 1:
        notes.append(f"warning: {result.root}: the cameras differ in pixel aspect (fl_x/fl_y); the scene uses "
                     f"{result.pixel_aspect[0]:.4g}:{result.pixel_aspect[1]:.4g}, the most common")
    return notes


def _distortion_order(key: str) -> tuple[int, str]:
    order = (*DISTORTION_KEYS, *LENS_MODEL_KEYS)
    return (order.index(key) if key in order else len(order), key)
