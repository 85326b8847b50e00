"""Dataset loader (contract 1): NeRF-synthetic transforms files + images -> tensors, and camera rays.

Accepts transforms_{train,test[,val]}.json or a single transforms.json (every 8th frame held out for
testing), as written by NeRF-synthetic, this project's capture, BlenderNeRF, instant-ngp's colmap2nerf
and nerfstudio: `camera_angle_x` or `fl_x/fl_y/cx/cy/w/h` (file-level, overridden per frame), OpenCV
lens distortion (`k1..k4 p1 p2`, `is_fisheye` / `camera_model`), `aabb` or `aabb_scale` for the scene
box (trainer.io.scene_box), RGBA composited on a background, and an integer downscale by area averaging.

Frames whose image is missing are skipped with one warning per file; a test (or val) file none of
whose images exist is treated as absent (BlenderNeRF writes test poses without images), and the test
views are then held out from the training frames. Only a train split with no image left is an error.
"""

from __future__ import annotations

import json
import math
import os
import warnings
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import imageio.v3 as iio
import numpy as np
import torch

from trainer.engine.colour import to_display, to_light
from trainer.io.lens import (
    LENS_COLUMNS,
    MODEL_FISHEYE,
    MODEL_RADIAL_TANGENTIAL,
    PINHOLE_COLUMNS,
    pixel_directions,
)
from trainer.io.scene_box import NGP_OFFSET, NGP_SCALE, SceneBox, ngp_scene_box

HOLDOUT_EVERY = 8                    # a single transforms.json: frames 0, 8, 16, ... form the test split
LENS_KEYS = ("k1", "k2", "k3", "k4", "p1", "p2")
INTRINSIC_KEYS = ("camera_angle_x", "camera_angle_y", "fl_x", "fl_y", "cx", "cy", "w", "h",
                  *LENS_KEYS, "k5", "k6", "is_fisheye", "camera_model")
# `camera_model` values (COLMAP's names, as nerfstudio writes them): perspective ones use the
# radial-tangential model with whatever k/p the file gives (all zero: a pinhole); fisheye ones the
# equidistant model.
PERSPECTIVE_MODELS = ("SIMPLE_PINHOLE", "PINHOLE", "SIMPLE_RADIAL", "RADIAL", "OPENCV")
FISHEYE_MODELS = ("OPENCV_FISHEYE", "SIMPLE_RADIAL_FISHEYE", "RADIAL_FISHEYE")
# An image named without its extension (NeRF-synthetic's "./train/r_0") is looked for with these.
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".PNG", ".JPG", ".JPEG")


class DatasetError(ValueError):
    """str(e) is one line: 'PATH: problem'."""


@dataclass
class Split:
    images: torch.Tensor      # float32 [V, H, W, 3] in [0, 1], composited on the background, CPU
    c2w: torch.Tensor         # float32 [V, 4, 4] camera-to-world, OpenGL axes (camera looks down -z)
    # float32 [V, 4] = fx, fy, cx, cy in pixels (after downscale); [V, 11] when any view has a lens
    # model: fx, fy, cx, cy, k1, k2, k3, k4, p1, p2, model (trainer.io.lens: 0 radial-tangential, 1 fisheye)
    intrinsics: torch.Tensor
    width: int
    height: int
    paths: list[Path]
    # uint8 [V, H, W] (0-255), when every image had an alpha channel: the pixels it leaves empty show the
    # background colour, which is then known; without one, what lies behind the scene is in the images
    # and must be learnt (trainer.engine.background)
    alpha: torch.Tensor | None = None

    @property
    def has_alpha(self) -> bool:
        return self.alpha is not None


@dataclass
class Dataset:
    root: Path
    train: Split
    test: Split
    aabb: torch.Tensor | None             # float32 [2, 3] from the transforms file, if any
    background: tuple[float, float, float]
    ngp_box: SceneBox | None = None       # instant-ngp's box for the file's `aabb_scale`, if any
    notes: list[str] = field(default_factory=list)   # one-line warnings and notes for the user


@dataclass
class _Frame:
    source: str                # "PATH: frames[i]", for error messages
    listed: Path               # where the frame says its image is (for messages when it is missing)
    image: Path | None         # the image found there, None when missing
    c2w: np.ndarray            # float64 [4, 4]
    camera: dict[str, Any]     # file-level intrinsic keys overridden by the frame's own


def _read_json(path: Path) -> dict[str, Any]:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise DatasetError(f"{path}: no such file") from None
    except (OSError, UnicodeDecodeError) as e:
        raise DatasetError(f"{path}: unreadable ({e})") from None
    try:
        meta = json.loads(text)
    except json.JSONDecodeError as e:
        raise DatasetError(f"{path}: malformed JSON (line {e.lineno}: {e.msg})") from None
    if not isinstance(meta, dict):
        raise DatasetError(f"{path}: expected a JSON object, found {type(meta).__name__}")
    return meta


def _image_path(root: Path, file_path: str) -> tuple[Path, Path | None]:
    """(where the frame points, the image file found there or None). Backslashes are separators:
    BlenderNeRF on Windows writes "train\\0001.png" (os.path.join), as instant-ngp also accepts."""
    p = root / file_path.replace("\\", "/")
    if p.is_file():
        return p, p
    for suffix in IMAGE_SUFFIXES:
        candidate = Path(str(p) + suffix)
        if candidate.is_file():
            return p, candidate
    return p, None


def _parse_frames(path: Path, meta: dict[str, Any], root: Path) -> list[_Frame]:
    frames = meta.get("frames")
    if not isinstance(frames, list):
        raise DatasetError(f"{path}: no 'frames' list")
    shared = {k: meta[k] for k in INTRINSIC_KEYS if k in meta}
    out = []
    for i, f in enumerate(frames):
        where = f"{path}: frames[{i}]"
        if not isinstance(f, dict) or not isinstance(f.get("file_path"), str):
            raise DatasetError(f"{where}: missing 'file_path'")
        try:
            c2w = np.asarray(f["transform_matrix"], dtype=np.float64)
        except (KeyError, ValueError, TypeError):
            raise DatasetError(f"{where}: missing or non-numeric 'transform_matrix'") from None
        if c2w.shape != (4, 4) or not np.isfinite(c2w).all():
            raise DatasetError(f"{where}: 'transform_matrix' must be 4x4 finite numbers")
        listed, image = _image_path(root, f["file_path"])
        camera = {**shared, **{k: f[k] for k in INTRINSIC_KEYS if k in f}}
        out.append(_Frame(where, listed, image, c2w, camera))
    return out


def _present(path: Path, frames: list[_Frame], notes: list[str]) -> list[_Frame]:
    """The frames whose image exists; one warning for the others (their count and the first)."""
    kept = [f for f in frames if f.image is not None]
    missing = [f for f in frames if f.image is None]
    if missing and kept:
        notes.append(f"warning: {path}: {len(missing)} of {len(frames)} listed images are missing; their frames "
                     f"are skipped (first: {missing[0].listed})")
    return kept


def _number(where: str, camera: dict[str, Any], key: str) -> float | None:
    if key not in camera:
        return None
    value = camera[key]
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise DatasetError(f"{where}: '{key}' must be a finite number, got {value!r}")
    return float(value)


def _focal(where: str, camera: dict[str, Any], fl_key: str, angle_key: str, size: int) -> float | None:
    focal = _number(where, camera, fl_key)
    if focal is None:
        angle = _number(where, camera, angle_key)
        if angle is None:
            return None
        if not 0 < angle < math.pi:
            raise DatasetError(f"{where}: '{angle_key}' must be in (0, pi) radians, got {angle}")
        focal = 0.5 * size / math.tan(0.5 * angle)
    if focal <= 0:
        raise DatasetError(f"{where}: focal length '{fl_key}' must be positive, got {focal}")
    return focal


def _lens(frame: _Frame) -> tuple[float, ...] | None:
    """k1, k2, k3, k4, p1, p2, model code; None for a pinhole (no model and every coefficient 0).

    A fisheye (`is_fisheye` true, or a fisheye `camera_model`) stays one with all coefficients 0: the
    pure equidistant projection, as COLMAP and nerfstudio read it (instant-ngp would take a pinhole).
    """
    cam, where = frame.camera, frame.source
    model = cam.get("camera_model")
    if model is not None and model not in PERSPECTIVE_MODELS + FISHEYE_MODELS:
        raise DatasetError(f"{where}: unsupported camera_model {model!r} (supported: "
                           f"{', '.join(PERSPECTIVE_MODELS + FISHEYE_MODELS)})")
    flag = cam.get("is_fisheye", False)
    if not isinstance(flag, bool):
        raise DatasetError(f"{where}: 'is_fisheye' must be true or false, got {flag!r}")
    for key in ("k5", "k6"):
        if _number(where, cam, key):
            raise DatasetError(f"{where}: '{key}' (FULL_OPENCV's rational distortion) is not supported")
    coeffs = [_number(where, cam, key) or 0.0 for key in LENS_KEYS]
    fisheye = flag or model in FISHEYE_MODELS
    if fisheye:
        if coeffs[4] or coeffs[5]:
            raise DatasetError(f"{where}: 'p1'/'p2' have no meaning for the fisheye model (it takes k1..k4)")
        return (*coeffs, MODEL_FISHEYE)
    if not any(coeffs):
        return None
    return (*coeffs, MODEL_RADIAL_TANGENTIAL)


def _intrinsics(frame: _Frame, width: int, height: int) -> tuple[float, ...]:
    """fx, fy, cx, cy, then the lens (see _lens) when the frame has one."""
    cam, where = frame.camera, frame.source
    for key, actual in (("w", width), ("h", height)):
        declared = _number(where, cam, key)
        if declared is not None and int(declared) != actual:
            raise DatasetError(f"{frame.image}: image is {width}x{height} but {where} says {key}={cam[key]}")
    fx = _focal(where, cam, "fl_x", "camera_angle_x", width)
    if fx is None:
        raise DatasetError(f"{where}: no focal length (needs 'camera_angle_x' or 'fl_x')")
    fy = _focal(where, cam, "fl_y", "camera_angle_y", height) or fx
    cx = _number(where, cam, "cx")
    cy = _number(where, cam, "cy")
    pinhole = (fx, fy, width / 2 if cx is None else cx, height / 2 if cy is None else cy)
    lens = _lens(frame)
    return pinhole if lens is None else pinhole + lens


def _decode(img: np.ndarray, color_space: str) -> np.ndarray:
    return to_light(torch.from_numpy(img), color_space).numpy()


def _encode(img: np.ndarray, color_space: str) -> np.ndarray:
    return to_display(torch.from_numpy(img), color_space).clamp(0.0, 1.0).numpy()


def _read_image(path: Path, background: np.ndarray, color_space: str) -> tuple[np.ndarray, np.ndarray | None]:
    """float32 [H, W, 3] in [0, 1], alpha composited over `background` (straight, not premultiplied) in
    the light `color_space` names (as Blender composites a film over a world, in "linear"), and the alpha
    [H, W, 1] when the image has one."""
    try:
        with warnings.catch_warnings():  # imageio tries every plugin on a bad file; their deprecation noise
            warnings.simplefilter("ignore", DeprecationWarning)
            raw = iio.imread(path)
    except Exception as e:  # noqa: BLE001 -- imageio raises many plugin-specific errors for bad files
        raise DatasetError(f"{path}: unreadable image ({type(e).__name__}: {e})".splitlines()[0]) from None
    if raw.dtype == np.uint8:
        img = raw.astype(np.float32) / 255.0
    elif raw.dtype == np.uint16:
        img = raw.astype(np.float32) / 65535.0
    elif raw.dtype.kind == "f":
        img = raw.astype(np.float32)
    else:
        raise DatasetError(f"{path}: unsupported pixel type {raw.dtype}")
    if img.ndim == 2:
        img = img[:, :, None]
    if img.ndim != 3 or img.shape[2] not in (1, 2, 3, 4):
        raise DatasetError(f"{path}: expected a grey, grey+alpha, RGB or RGBA image, got shape {list(raw.shape)}")
    channels = img.shape[2]
    colour = img[:, :, :3] if channels >= 3 else np.repeat(img[:, :, :1], 3, axis=2)
    alpha = None
    if channels in (2, 4):
        alpha = img[:, :, -1:]
        mixed = _decode(colour, color_space) * alpha + _decode(background, color_space) * (1.0 - alpha)
        colour = _encode(mixed.astype(np.float32), color_space)
    return np.ascontiguousarray(colour, dtype=np.float32), alpha


def _area_downscale(img: np.ndarray, factor: int) -> np.ndarray:
    """Averages factor x factor blocks; a remainder strip on the right/bottom is dropped, which leaves
    the principal point (measured from the top-left) unchanged before the division by `factor`."""
    if factor == 1:
        return img
    h, w = img.shape[0] // factor, img.shape[1] // factor
    blocks = img[: h * factor, : w * factor].reshape(h, factor, w, factor, img.shape[2])
    return blocks.mean(axis=(1, 3), dtype=np.float32)


def _load_split(name: str, frames: list[_Frame], downscale: int, background: np.ndarray, color_space: str) -> Split:
    def load(frame: _Frame) -> tuple[np.ndarray, tuple[int, int], tuple[float, ...], np.ndarray | None]:
        assert frame.image is not None  # missing images were filtered out before
        img, alpha = _read_image(frame.image, background, color_space)
        h, w = img.shape[:2]
        if alpha is not None:  # 1 byte a pixel: the training loop only needs it to about 1/255
            alpha = np.round(_area_downscale(alpha, downscale)[:, :, 0] * 255).astype(np.uint8)
        if downscale > 1:  # a pixel's light is the mean of its parts' light (a camera's, Blender's filter)
            img = _encode(_area_downscale(_decode(img, color_space), downscale), color_space)
        return img, (w, h), _intrinsics(frame, w, h), alpha

    workers = min(8, os.cpu_count() or 1, len(frames))
    with ThreadPoolExecutor(max_workers=workers) as pool:
        loaded = list(pool.map(load, frames))
    first_size = loaded[0][1]
    for frame, (_, size, _, _) in zip(frames, loaded):
        if size != first_size:
            raise DatasetError(
                f"{frame.image}: image is {size[0]}x{size[1]}, the {name} split's first image "
                f"({frames[0].listed.name}) is {first_size[0]}x{first_size[1]}")
    if first_size[0] // downscale < 1 or first_size[1] // downscale < 1:
        raise DatasetError(f"{frames[0].image}: {first_size[0]}x{first_size[1]} is too small for downscale {downscale}")
    images = torch.from_numpy(np.stack([img for img, _, _, _ in loaded]))
    # A pinhole row padded with zero coefficients is the same camera in the radial-tangential model.
    columns = LENS_COLUMNS if any(len(k) > PINHOLE_COLUMNS for _, _, k, _ in loaded) else PINHOLE_COLUMNS
    rows = np.zeros((len(loaded), columns), dtype=np.float64)
    for row, (_, _, k, _) in zip(rows, loaded):
        row[: len(k)] = k
    # Downscaling by N maps pixel positions p to p / N: focal lengths and principal point scale, the
    # distortion coefficients (on normalised coordinates) and the model code do not.
    rows[:, :PINHOLE_COLUMNS] /= downscale
    c2w = torch.from_numpy(np.stack([f.c2w for f in frames]))
    return Split(images=images, c2w=c2w.float(), intrinsics=torch.from_numpy(rows.astype(np.float32)),
                 width=images.shape[2], height=images.shape[1], paths=[f.image for f in frames if f.image],
                 alpha=(torch.from_numpy(np.stack([a for _, _, _, a in loaded]))  # type: ignore[misc]
                        if all(a is not None for _, _, _, a in loaded) else None))


def _parse_aabb(path: Path, meta: dict[str, Any]) -> torch.Tensor | None:
    if "aabb" not in meta:
        return None
    try:
        box = np.asarray(meta["aabb"], dtype=np.float64)
    except (ValueError, TypeError):
        box = np.zeros(0)
    if box.shape != (2, 3) or not np.isfinite(box).all() or (box[1] <= box[0]).any():
        raise DatasetError(f"{path}: 'aabb' must be [[xmin,ymin,zmin],[xmax,ymax,zmax]] with max > min")
    return torch.from_numpy(box).float()


def _parse_ngp_box(path: Path, meta: dict[str, Any]) -> SceneBox | None:
    """instant-ngp's box (trainer.io.scene_box.ngp_box) for the file's `aabb_scale`, with its `scale`
    and `offset` keys when present."""
    if "aabb_scale" not in meta:
        return None
    where = str(path)
    aabb_scale = _number(where, meta, "aabb_scale")
    if aabb_scale is None or aabb_scale <= 0:
        raise DatasetError(f"{path}: 'aabb_scale' must be a positive number, got {meta['aabb_scale']!r}")
    scale = _number(where, meta, "scale")
    if scale is not None and scale <= 0:
        raise DatasetError(f"{path}: 'scale' must be positive, got {scale}")
    offset = meta.get("offset", list(NGP_OFFSET))
    try:
        off = np.broadcast_to(np.asarray(offset, dtype=np.float64), (3,))
    except (ValueError, TypeError):
        off = np.full(3, np.nan)
    if not np.isfinite(off).all():
        raise DatasetError(f"{path}: 'offset' must be a number or 3 numbers, got {offset!r}")
    return ngp_scene_box(aabb_scale, NGP_SCALE if scale is None else scale,
                         (float(off[0]), float(off[1]), float(off[2])))


def _hold_out(frames: list[_Frame]) -> tuple[list[_Frame], list[_Frame]]:
    """(train, test): frames 0, 8, 16, ... are the test views."""
    return [f for i, f in enumerate(frames) if i % HOLDOUT_EVERY], frames[::HOLDOUT_EVERY]


def _test_frames(root: Path, notes: list[str]) -> tuple[Path | None, dict[str, Any], list[_Frame], list[str]]:
    """The first of transforms_test.json, transforms_val.json that has frames with images, with its
    metadata and those frames; otherwise (None, {}, [], why each file there was passed over)."""
    passed_over = []
    for path in (root / "transforms_test.json", root / "transforms_val.json"):
        if not path.is_file():
            continue
        meta = _read_json(path)
        frames = _parse_frames(path, meta, root)
        present = _present(path, frames, notes)
        if present:
            return path, meta, present, []
        passed_over.append(f"{path}: has no frames" if not frames else
                           f"{path}: none of its {len(frames)} images exist (first: {frames[0].listed})")
    return None, {}, [], passed_over


def load_dataset(root: Path, downscale: int = 1,
                 background: tuple[float, float, float] = (1.0, 1.0, 1.0), color_space: str = "linear") -> Dataset:
    """`color_space`: the light images with alpha are composited on `background` in and `downscale`
    averages in (trainer/engine/colour.py); the images are kept encoded either way."""
    root = Path(root)
    if not root.is_dir():
        raise DatasetError(f"{root}: no such dataset directory")
    if not isinstance(downscale, int) or downscale < 1:
        raise DatasetError(f"{root}: downscale must be a positive integer, got {downscale!r}")
    notes: list[str] = []
    train_file, single_file = root / "transforms_train.json", root / "transforms.json"
    if train_file.is_file():
        metas = [_read_json(train_file)]
        listed = _parse_frames(train_file, metas[0], root)
    elif single_file.is_file():
        train_file = single_file
        metas = [_read_json(single_file)]
        listed = _parse_frames(single_file, metas[0], root)
    else:
        raise DatasetError(f"{root}: no transforms_train.json or transforms.json")
    frames = _present(train_file, listed, notes)
    if listed and not frames:
        raise DatasetError(f"{train_file}: none of its {len(listed)} images exist (first: {listed[0].listed})")
    test_file: Path | None = None
    test_frames: list[_Frame] = []
    if train_file != single_file:
        test_file, test_meta, test_frames, passed_over = _test_frames(root, notes)
        if test_file is not None:
            metas.append(test_meta)
        elif passed_over:
            # one line for the user: why there are no test images, and what is done instead
            notes.append(f"note: {'; '.join(passed_over)}; so every {HOLDOUT_EVERY}th training view is held out "
                         "for testing instead")
    if test_file is None:
        if train_file == single_file and len(frames) < 2:
            raise DatasetError(f"{train_file}: needs at least 2 frames with images (every {HOLDOUT_EVERY}th is held "
                               "out for testing)")
        frames, test_frames = _hold_out(frames)
        test_file = train_file
    if not frames:
        raise DatasetError(f"{train_file}: the train split is empty")
    if not test_frames:
        raise DatasetError(f"{test_file}: the test split is empty")
    # the box keys: the training file's first, then the test file's
    aabb = next((b for b in (_parse_aabb(p, m) for p, m in zip((train_file, test_file), metas)) if b is not None),
                None)
    ngp = next((b for b in (_parse_ngp_box(p, m) for p, m in zip((train_file, test_file), metas)) if b is not None),
               None)
    bg = np.asarray(background, dtype=np.float32).reshape(3)
    return Dataset(root=root, train=_load_split("train", frames, downscale, bg, color_space),
                   test=_load_split("test", test_frames, downscale, bg, color_space), aabb=aabb,
                   background=(float(bg[0]), float(bg[1]), float(bg[2])), ngp_box=ngp, notes=notes)


def camera_rays(c2w: torch.Tensor, intrinsics: torch.Tensor, width: int, height: int,
                device: torch.device | str = "cpu", offset: tuple[float, float] = (0.5, 0.5),
                ) -> tuple[torch.Tensor, torch.Tensor]:
    """Origins and unit directions [V*H*W, 3] each, row-major per view (index = (view*H + v)*W + u).

    Pixel (u, v) spans [u, u + 1] x [v, v + 1]; its ray goes through (u + offset[0], v + offset[1]), by
    default its centre. Without a lens model the camera-space direction is then
    ((u + 0.5 - cx)/fx, -(v + 0.5 - cy)/fy, -1) (OpenGL axes: +y up, looking down -z). With one
    (intrinsics [V, 11], see Split), the direction is the lens's exact inverse (trainer.io.lens), solved
    once per distinct camera, since views from one camera share their pixel directions.
    """
    c2w = c2w.to(device=device, dtype=torch.float32)
    k = intrinsics.to(device=device, dtype=torch.float32)
    views = c2w.shape[0]
    v, u = torch.meshgrid(torch.arange(height, device=device, dtype=torch.float32) + offset[1],
                          torch.arange(width, device=device, dtype=torch.float32) + offset[0], indexing="ij")
    if k.shape[1] == PINHOLE_COLUMNS:
        fx, fy, cx, cy = (k[:, i].view(views, 1, 1) for i in range(4))
        x = (u - cx) / fx
        y = -(v - cy) / fy
        d_cam = torch.stack([x, y, -torch.ones_like(x)], dim=-1)          # [V, H, W, 3]
    else:
        cameras, which = torch.unique(intrinsics.detach().float().cpu(), dim=0, return_inverse=True)
        per_camera = torch.stack([pixel_directions(cam.to(device), u, v) for cam in cameras])
        d_cam = per_camera[which.to(device)]
    d_world = torch.einsum("vij,vhwj->vhwi", c2w[:, :3, :3], d_cam)
    dirs = torch.nn.functional.normalize(d_world, dim=-1).reshape(-1, 3)
    origins = c2w[:, None, None, :3, 3].expand(views, height, width, 3).reshape(-1, 3)
    return origins.contiguous(), dirs.contiguous()
