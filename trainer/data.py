"""Dataset loader (contract 1): NeRF-synthetic transforms files + images -> tensors, and camera rays.

Accepts transforms_{train,test[,val]}.json or a single transforms.json (every 8th frame held out for
testing), `camera_angle_x` or `fl_x/fl_y/cx/cy/w/h` (file-level, overridden per frame), an optional
`aabb` (without one the trainer uses the config's `scene_box`, +-1.5 by default), RGBA composited
on a background, and an integer downscale by area averaging.
"""

from __future__ import annotations

import json
import math
import os
import warnings
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import imageio.v3 as iio
import numpy as np
import torch

HOLDOUT_EVERY = 8                    # a single transforms.json: frames 0, 8, 16, ... form the test split
INTRINSIC_KEYS = ("camera_angle_x", "camera_angle_y", "fl_x", "fl_y", "cx", "cy", "w", "h")


class DatasetError(ValueError):
    """str(e) is one line: 'PATH: problem'."""


@dataclass
class Split:
    images: torch.Tensor      # float32 [V, H, W, 3] in [0, 1], composited on the background, CPU
    c2w: torch.Tensor         # float32 [V, 4, 4] camera-to-world, OpenGL axes (camera looks down -z)
    intrinsics: torch.Tensor  # float32 [V, 4] = fx, fy, cx, cy in pixels (after downscale)
    width: int
    height: int
    paths: list[Path]


@dataclass
class Dataset:
    root: Path
    train: Split
    test: Split
    aabb: torch.Tensor | None             # float32 [2, 3] from the transforms file, if any
    background: tuple[float, float, float]


@dataclass
class _Frame:
    source: str                # "PATH frames[i]", for error messages
    image: Path
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


def _image_path(root: Path, file_path: str) -> Path | None:
    p = root / file_path
    if p.is_file():
        return p
    with_png = Path(str(p) + ".png")
    return with_png if with_png.is_file() else None


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
        image = _image_path(root, f["file_path"])
        if image is None:
            raise DatasetError(f"{root / f['file_path']}: missing image (listed in {path} frames[{i}])")
        camera = {**shared, **{k: f[k] for k in INTRINSIC_KEYS if k in f}}
        out.append(_Frame(where, image, c2w, camera))
    return out


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


def _intrinsics(frame: _Frame, width: int, height: int) -> tuple[float, float, float, float]:
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
    return fx, fy, width / 2 if cx is None else cx, height / 2 if cy is None else cy


def _read_image(path: Path, background: np.ndarray) -> np.ndarray:
    """float32 [H, W, 3] in [0, 1], alpha composited over `background` (straight, not premultiplied)."""
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
    if channels in (2, 4):
        alpha = img[:, :, -1:]
        colour = colour * alpha + background * (1.0 - alpha)
    return np.ascontiguousarray(colour, dtype=np.float32)


def _area_downscale(img: np.ndarray, factor: int) -> np.ndarray:
    """Averages factor x factor blocks; a remainder strip on the right/bottom is dropped, which leaves
    the principal point (measured from the top-left) unchanged before the division by `factor`."""
    if factor == 1:
        return img
    h, w = img.shape[0] // factor, img.shape[1] // factor
    blocks = img[: h * factor, : w * factor].reshape(h, factor, w, factor, 3)
    return blocks.mean(axis=(1, 3), dtype=np.float32)


def _load_split(name: str, frames: list[_Frame], downscale: int, background: np.ndarray) -> Split:
    def load(frame: _Frame) -> tuple[np.ndarray, tuple[int, int], tuple[float, float, float, float]]:
        img = _read_image(frame.image, background)
        h, w = img.shape[:2]
        return _area_downscale(img, downscale), (w, h), _intrinsics(frame, w, h)

    workers = min(8, os.cpu_count() or 1, len(frames))
    with ThreadPoolExecutor(max_workers=workers) as pool:
        loaded = list(pool.map(load, frames))
    first_size = loaded[0][1]
    for frame, (_, size, _) in zip(frames, loaded):
        if size != first_size:
            raise DatasetError(
                f"{frame.image}: image is {size[0]}x{size[1]}, the {name} split's first image "
                f"({frames[0].image.name}) is {first_size[0]}x{first_size[1]}")
    if first_size[0] // downscale < 1 or first_size[1] // downscale < 1:
        raise DatasetError(f"{frames[0].image}: {first_size[0]}x{first_size[1]} is too small for downscale {downscale}")
    images = torch.from_numpy(np.stack([img for img, _, _ in loaded]))
    intrinsics = torch.tensor([k for _, _, k in loaded], dtype=torch.float64) / downscale
    c2w = torch.from_numpy(np.stack([f.c2w for f in frames]))
    return Split(images=images, c2w=c2w.float(), intrinsics=intrinsics.float(),
                 width=images.shape[2], height=images.shape[1], paths=[f.image for f in frames])


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


def load_dataset(root: Path, downscale: int = 1,
                 background: tuple[float, float, float] = (1.0, 1.0, 1.0)) -> Dataset:
    root = Path(root)
    if not root.is_dir():
        raise DatasetError(f"{root}: no such dataset directory")
    if not isinstance(downscale, int) or downscale < 1:
        raise DatasetError(f"{root}: downscale must be a positive integer, got {downscale!r}")
    train_file, single_file = root / "transforms_train.json", root / "transforms.json"
    if train_file.is_file():
        train_meta = _read_json(train_file)
        train_frames = _parse_frames(train_file, train_meta, root)
        # A missing test file falls back to val, then to holding out every 8th training frame.
        test_file = next((p for p in (root / "transforms_test.json", root / "transforms_val.json") if p.is_file()),
                         None)
        if test_file is not None:
            test_meta = _read_json(test_file)
            test_frames = _parse_frames(test_file, test_meta, root)
        else:
            test_meta, test_file = {}, train_file
            test_frames = train_frames[::HOLDOUT_EVERY]
            train_frames = [f for i, f in enumerate(train_frames) if i % HOLDOUT_EVERY]
        aabb = _parse_aabb(train_file, train_meta)
        if aabb is None:
            aabb = _parse_aabb(test_file, test_meta)
    elif single_file.is_file():
        meta = _read_json(single_file)
        frames = _parse_frames(single_file, meta, root)
        if len(frames) < 2:
            raise DatasetError(f"{single_file}: needs at least 2 frames (every {HOLDOUT_EVERY}th is held out for testing)")
        train_file = test_file = single_file
        test_frames = frames[::HOLDOUT_EVERY]
        train_frames = [f for i, f in enumerate(frames) if i % HOLDOUT_EVERY]
        aabb = _parse_aabb(single_file, meta)
    else:
        raise DatasetError(f"{root}: no transforms_train.json or transforms.json")
    if not train_frames:
        raise DatasetError(f"{train_file}: the train split is empty")
    if not test_frames:
        raise DatasetError(f"{test_file}: the test split is empty")
    bg = np.asarray(background, dtype=np.float32).reshape(3)
    return Dataset(root=root, train=_load_split("train", train_frames, downscale, bg),
                   test=_load_split("test", test_frames, downscale, bg), aabb=aabb,
                   background=(float(bg[0]), float(bg[1]), float(bg[2])))


def camera_rays(c2w: torch.Tensor, intrinsics: torch.Tensor, width: int, height: int,
                device: torch.device | str = "cpu") -> tuple[torch.Tensor, torch.Tensor]:
    """Origins and unit directions [V*H*W, 3] each, row-major per view (index = (view*H + v)*W + u).

    Pixel (u, v) has its centre at (u + 0.5, v + 0.5); its camera-space direction is
    ((u + 0.5 - cx)/fx, -(v + 0.5 - cy)/fy, -1) (OpenGL axes: +y up, looking down -z).
    """
    c2w = c2w.to(device=device, dtype=torch.float32)
    k = intrinsics.to(device=device, dtype=torch.float32)
    views = c2w.shape[0]
    v, u = torch.meshgrid(torch.arange(height, device=device, dtype=torch.float32) + 0.5,
                          torch.arange(width, device=device, dtype=torch.float32) + 0.5, indexing="ij")
    fx, fy, cx, cy = (k[:, i].view(views, 1, 1) for i in range(4))
    x = (u - cx) / fx
    y = -(v - cy) / fy
    d_cam = torch.stack([x, y, -torch.ones_like(x)], dim=-1)          # [V, H, W, 3]
    d_world = torch.einsum("vij,vhwj->vhwi", c2w[:, :3, :3], d_cam)
    dirs = torch.nn.functional.normalize(d_world, dim=-1).reshape(-1, 3)
    origins = c2w[:, None, None, :3, 3].expand(views, height, width, 3).reshape(-1, 3)
    return origins.contiguous(), dirs.contiguous()
